"""Speed of featbench's stages next to their peers, measured in the same run.

Prints one line per figure: featbench's rate or time, its peer's (the loop a user
would write, or featbench's previous path), and the ratio, with the machine (CPU
model, cores this process may use, AVX-512 / bf16 / AMX flags) and the load average
before and after, so a figure from a busy machine can be told apart.

    python benchmarks/speed.py [--data-dir ../shared/data] [--n 20000] [--skip-cnn]

Figures (CIFAR-10 JPEG copy when present, random 32x32 images otherwise):

* ``hog``, ``color-hist``: images/s against a per-image ``skimage.feature.hog`` loop
  and a per-image ``rgb2hsv`` + ``np.histogram`` loop;
* ``kmeans-patches`` (K = 1,600, fp32): images/s against featbench 0.2's encoding, and
  the rate of its matrix product alone (the bound the encoding approaches);
* classifier fits on the full training split (tuning split of seed 0), grid search +
  refit as ``featbench run`` does them (``tune_and_fit``): ``logreg`` and
  ``linear-svm`` on HOG against featbench 0.2's CPU path (``solver=sklearn`` /
  ``liblinear``: scikit-learn's ``LogisticRegression`` / ``LinearSVC`` cold at each
  value, liblinear's values in threads), with the objective each refit reaches;
  ``mlp`` on HOG + hue against one fit of scikit-learn's ``MLPClassifier``; with
  ``--big``, ``logreg`` on raw pixels against one cold ``LogisticRegression`` fit at the
  value featbench chooses; with ``--only kmeans-fits``, the study's k-means rows (K =
  1,600, 6,400 numbers per image, from the store) against one cold fit without the
  Gram preconditioner;
* robustness: a fit and an extraction on a quiet machine and beside two CPU-bound
  processes (the ratio; the goal is at most 2.5x);
* start-up: ``featbench list`` and ``featbench describe hog`` against ``import torch``;
* whole runs: the CS231n row (``hog+color-hist``, ``-p hog.block_norm=none``,
  ``linear-svm``) from the JPEG files with an empty store (goal: 40 s);
* ``cnn:efficientnet-lite0`` at 224 px, fp32: the OpenVINO backend and eager torch
  against a plain eager loop over pre-decoded tensors (``--skip-cnn`` leaves it out).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    from featbench.parallel import available_cores

    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}; {available_cores()} cores for this process; {' '.join(shown) or '-'}"


def line(what: str, ours: float, peer_name: str, peer: float, unit: str,
         higher_is_better: bool = True) -> None:
    ratio = ours / peer if higher_is_better else peer / ours
    print(f"{what:<34}{ours:>12,.1f} {unit:<6}  {peer_name:<40}{peer:>12,.1f} {unit:<6}"
          f"{ratio:>7.1f}x", flush=True)


def extractors(X: np.ndarray, n_peer: int) -> None:
    from bench_extractors import numpy_hue_loop, rate, skimage_hog_loop

    from featbench.features import HOG, ColorHistogram

    ColorHistogram().fit_transform(X[:2048])  # the color table: built (or loaded) once
    line("hog", rate(lambda x: HOG().fit_transform(x), X, 3), "skimage.feature.hog per image",
         rate(skimage_hog_loop, X[:n_peer]), "img/s")
    line("color-hist", rate(lambda x: ColorHistogram().fit_transform(x), X, 3),
         "rgb2hsv + np.histogram per image", rate(numpy_hue_loop, X[:n_peer]), "img/s")


def target(what: str, ours: float, goal: float, unit: str = "s") -> None:
    """A figure with its goal instead of a peer (lower is better)."""
    print(f"{what:<34}{ours:>12,.1f} {unit:<6}  {'goal':<40}{goal:>12,.1f} {unit:<6}"
          f"{'met' if ours <= goal else 'MISSED':>8}", flush=True)


def previous_kmeans_encoding(images, mean, whiten, centroids, p=6, eps=10.0):
    """featbench 0.2's k-means triangle encoding (4 images per call), the peer."""
    import torch
    import torch.nn.functional as F

    from featbench.features.kmeans_patches import normalize_patches

    mean_t, whiten_t, C = (torch.from_numpy(a) for a in (mean, whiten, centroids))
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), 4):
            x = torch.tensor(images[s:s + 4]).permute(0, 3, 1, 2).float()
            b, _, h, w = x.shape
            rows, cols = h - p + 1, w - p + 1
            Z = (normalize_patches(F.unfold(x, p).transpose(1, 2), eps) - mean_t) @ whiten_t
            z = torch.matmul(Z, C.T).mul_(-2.0)
            z.add_((Z * Z).sum(-1, keepdim=True)).add_((C * C).sum(-1))
            z.clamp_(min=0.0).sqrt_()
            A = z.sub_(z.mean(-1, keepdim=True)).neg_().relu_().reshape(b, rows, cols, -1)
            hr, hc = (rows + 1) // 2, (cols + 1) // 2
            quads = [A[:, :hr, :hc], A[:, :hr, hc:], A[:, hr:, :hc], A[:, hr:, hc:]]
            out.append(torch.cat([q.sum(dim=(1, 2)) for q in quads], dim=1))
    return torch.cat(out).numpy()


def kmeans(X: np.ndarray) -> None:
    import torch
    from bench_extractors import rate

    from featbench.features import KMeansPatches

    images = X[:2048]
    est = KMeansPatches(n_patches=100_000, kmeans_iter=5).fit(X[:5000])
    ours = rate(est.transform, images, 2)
    peer = rate(lambda x: previous_kmeans_encoding(x, est.mean_, est.whiten_, est.centroids_),
                images, 2)
    line("kmeans-patches K=1600 fp32", ours, "featbench 0.2 encoding", peer, "img/s")
    Z = torch.randn(4 * 729, 108)
    CT = torch.from_numpy(est.centroids_).T.contiguous()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 3:
        torch.matmul(Z, CT)
        n += 4
    line("kmeans-patches K=1600 fp32", ours, "its matrix product alone (bound)",
         n / (time.perf_counter() - t0), "img/s")


def _data(data_dir: Path, features: str, params: dict | None = None):
    from featbench import load_dataset
    from featbench.extraction import extract_features
    from featbench.splits import tuning_split
    from featbench.store import FeatureStore

    ds = load_dataset("cifar10", data_dir=data_dir)
    res = extract_features(features, ds, params or {}, FeatureStore())
    split = tuning_split(ds, 0)
    y = np.asarray(ds.train.labels)
    mask = np.zeros(len(y), bool)
    mask[split.val] = True
    return np.asarray(res.train), y, mask


def _objective(name: str, pipe, X: np.ndarray, y: np.ndarray, C: float) -> float:
    """The classifier's objective at C on ``X`` standardized by ``pipe``'s scaler (the
    same scaling for both fits compared: the mean and scale of the same rows)."""
    from featbench.classifiers.linear_svm import squared_hinge_objective
    from featbench.classifiers.torch_logreg import logistic_objective

    est = pipe.named_steps["clf"]
    Xs = pipe.named_steps["scale"].transform(X)
    y_index = np.searchsorted(est.classes_, y)
    if name == "logreg":
        return logistic_objective(est.coef_, est.intercept_, Xs, y_index, C)
    Y = np.where(y_index[:, None] == np.arange(len(est.classes_))[None], 1.0, -1.0)
    return squared_hinge_objective(est.coef_, est.intercept_, Xs, Y, C)


#: featbench 0.2's solvers on the CPU, the peers
OLD_SOLVER = {"logreg": "sklearn", "linear-svm": "liblinear"}


def linear_fits(data_dir: Path, features: str, params: dict | None, names: tuple[str, ...],
                grids: dict[str, list[float]], peer_all: bool = True) -> None:
    """Grid search + refit by featbench (warm-started float32 path) against featbench 0.2's
    own tuning: scikit-learn's solver cold at each value, grid values in threads where
    the solver is single-threaded (liblinear), the same grid extension."""
    from featbench.classifiers import get_classifier
    from featbench.classifiers.tuning import tune_and_fit
    from featbench.parallel import get_n_jobs

    X, y, mask = _data(data_dir, features, params)
    for name in names:
        grid = {"C": list(grids[name])}
        t0 = time.perf_counter()
        res = tune_and_fit(get_classifier(name), grid, X, y, mask, extend=True)
        ours = time.perf_counter() - t0
        chosen = res.best_params["C"]
        old = get_classifier(name, solver=OLD_SOLVER[name])
        t0 = time.perf_counter()
        if peer_all:
            peer_res = tune_and_fit(old, grid, X, y, mask, n_jobs=get_n_jobs(), extend=True)
            peer_name = f"{OLD_SOLVER[name]}, cold at each C, grid + refit"
            peer_est = peer_res.estimator
        else:  # one cold fit at the value featbench chose, on all rows
            peer_est = old.set_params(clf__C=chosen).fit(X, y)
            peer_name = f"{OLD_SOLVER[name]}, one cold fit at C={chosen:g}"
        peer = time.perf_counter() - t0
        line(f"{name} on {features} ({len(y):,} x {X.shape[1]})", ours, peer_name, peer, "s",
             higher_is_better=False)
        iters = [s["n_iter"] for s in res.val_scores]
        print(f"    featbench chose C={chosen:g} (val {res.val_acc:.4f}; values tried "
              f"{[s['params']['C'] for s in res.val_scores]}, iterations {iters}, converged: "
              f"{not res.hit_limit})" + (f"; the peer chose C={peer_res.best_params['C']:g} "
                                         f"(val {peer_res.val_acc:.4f})" if peer_all else ""))
        if not peer_all or peer_res.best_params["C"] == chosen:
            a = _objective(name, res.estimator, X, y, chosen)
            b = _objective(name, peer_est, X, y, chosen)
            print(f"    refit at C={chosen:g}: objective {a:.6g} (featbench) vs {b:.6g} "
                  f"(peer); relative {(a - b) / b:+.1e}", flush=True)


def kmeans_fits(data_dir: Path, n_centroids: int = 1600) -> None:
    """The study's k-means rows: grid search + refit with the Gram-preconditioned L-BFGS
    (the default) against one cold fit, at the value it chose, by the same L-BFGS without
    the preconditioner (featbench 0.3.0's solver; a whole grid by it took 1,002 s for the
    SVM, and scikit-learn's solvers take hours). Reads the features from the store
    (``$FEATBENCH_CACHE``): ``featbench reproduce cifar10 --only 'k-means*'`` puts them
    there."""
    from featbench.classifiers import get_classifier
    from featbench.classifiers.tuning import tune_and_fit
    from featbench.studies.cifar10 import KMEANS_C

    X, y, mask = _data(data_dir, "kmeans-patches",
                       {"kmeans-patches": {"n_centroids": n_centroids}})
    for name in ("linear-svm", "logreg"):
        grid = {"C": list(KMEANS_C[name]["C"])}
        t0 = time.perf_counter()
        res = tune_and_fit(get_classifier(name), grid, X, y, mask, extend=True)
        ours = time.perf_counter() - t0
        chosen = res.best_params["C"]
        plain = get_classifier(name, precondition="none", C=chosen)
        t0 = time.perf_counter()
        plain.fit(X, y)
        peer = time.perf_counter() - t0
        line(f"{name} on kmeans-patches K={n_centroids} ({len(y):,} x {X.shape[1]}), grid "
             f"+ refit", ours, f"one cold fit at C={chosen:g}, no preconditioner", peer, "s",
             higher_is_better=False)
        print(f"    chose C={chosen:g} (val {res.val_acc:.4f}); values "
              f"{[s['params']['C'] for s in res.val_scores]}, iterations "
              f"{[s['n_iter'] for s in res.val_scores]}, refit "
              f"{int(np.max(res.estimator.named_steps['clf'].n_iter_))}; the plain fit "
              f"{int(np.max(plain.named_steps['clf'].n_iter_))} iterations; converged: "
              f"{not res.hit_limit}")
        a = _objective(name, res.estimator, X, y, chosen)
        b = _objective(name, plain, X, y, chosen)
        print(f"    objective at C={chosen:g}: {a:.6g} (preconditioned) vs {b:.6g} (plain); "
              f"relative {(a - b) / b:+.1e}", flush=True)


def mlp_fit(data_dir: Path) -> None:
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    from featbench.classifiers import get_classifier

    X, y, mask = _data(data_dir, "hog+color-hist", {"hog": {"block_norm": None}})
    X, y = X[~mask], y[~mask]
    t0 = time.perf_counter()
    ours = get_classifier("mlp", alpha=1e-2).fit(X, y)
    t_ours = time.perf_counter() - t0
    Xs = StandardScaler().fit_transform(X)
    t0 = time.perf_counter()
    ref = MLPClassifier((500,), alpha=1e-2, early_stopping=True, max_iter=200,
                        random_state=0).fit(Xs, y)
    t_peer = time.perf_counter() - t0
    line(f"mlp alpha=0.01 on HOG+hue ({len(y):,})", t_ours, "MLPClassifier, one fit", t_peer,
         "s", higher_is_better=False)
    clf = ours.named_steps["clf"]
    print(f"    epochs {getattr(clf, 'n_iter_', '?')} vs {ref.n_iter_}; best validation score "
          f"{getattr(clf, 'best_validation_score_', float('nan')):.4f} vs "
          f"{ref.best_validation_score_:.4f}", flush=True)


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def under_load(data_dir: Path, X: np.ndarray) -> None:
    """The same work quiet and beside two CPU-bound processes."""
    from featbench.classifiers import get_classifier
    from featbench.classifiers.tuning import tune_and_fit
    from featbench.features import HOG, KMeansPatches

    F, y, mask = _data(data_dir, "hog")
    F, y, mask = F[:10000], y[:10000], mask[:10000]
    km = KMeansPatches(n_patches=50_000, kmeans_iter=3).fit(X[:2000])
    work = {
        "logreg grid on HOG, 10,000": lambda: tune_and_fit(
            get_classifier("logreg"), {"C": [1e-3, 1e-2, 1e-1]}, F, y, mask),
        "hog, 20,000 images": lambda: HOG().fit_transform(X[:20000]),
        "kmeans-patches, 1,000 images": lambda: km.transform(X[:1000]),
    }
    for what, fn in work.items():
        fn()
        t0 = time.perf_counter()
        fn()
        quiet = time.perf_counter() - t0
        procs = _busy(2)
        try:
            time.sleep(1.0)
            t0 = time.perf_counter()
            fn()
            loaded = time.perf_counter() - t0
        finally:
            for p in procs:
                p.kill()
        print(f"{what:<34}{loaded:>12,.1f} s       beside 2 busy processes; quiet "
              f"{quiet:,.1f} s: {loaded / quiet:.1f}x (goal: at most 2.5x)", flush=True)
        time.sleep(1.0)


def _wall(cmd: list[str], repeat: int = 1, env: dict | None = None) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        best = min(best, time.perf_counter() - t0)
    return best


def startup() -> None:
    fb = [sys.executable, "-m", "featbench"]
    torch_s = _wall([sys.executable, "-c", "import torch"], 3)
    for args in (["list"], ["describe", "hog"], ["--help"]):
        line(f"featbench {' '.join(args)}", _wall(fb + args, 3), "python -c 'import torch'",
             torch_s, "s", higher_is_better=False)


def whole_runs(data_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "featbench", "run", "-q", "-d", "cifar10", "--data-dir",
               str(data_dir), "-f", "hog+color-hist", "-p", "hog.block_norm=none", "-c",
               "linear-svm", "--cache-dir", f"{tmp}/cache", "--results-dir", f"{tmp}/runs"]
        target("CS231n row from JPEGs, empty store", _wall(cmd), 40.0)


def cnn(X: np.ndarray) -> None:
    import torch
    import torch.nn.functional as F

    from featbench.features.cnn import CNNEmbedding

    images = X[:256]
    est = CNNEmbedding("efficientnet-lite0", device="cpu", precision="fp32", backend="torch",
                       batch_size=32).fit(images[:1])
    loaded, net, _ = est._network()
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    tensors = [torch.from_numpy(images[s:s + 32]).permute(0, 3, 1, 2).float() / 255
               for s in range(0, len(images), 32)]
    tensors = [(F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False) - mean)
               / std for x in tensors]

    def plain() -> None:
        with torch.no_grad():
            for x in tensors:
                net(x)

    plain()
    t0 = time.perf_counter()
    plain()
    peer = len(images) / (time.perf_counter() - t0)
    for backend in ("torch", "openvino"):
        e = CNNEmbedding("efficientnet-lite0", device="cpu", precision="fp32",
                         backend=backend, batch_size=32).fit(images[:1])
        e.transform(images[:32])
        t0 = time.perf_counter()
        e.transform(images)
        ours = len(images) / (time.perf_counter() - t0)
        line(f"cnn:efficientnet-lite0 224px ({backend})", ours,
             "plain eager loop, pre-decoded tensors", peer, "img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=20000, help="images for the extractors")
    parser.add_argument("--n-peer", type=int, default=2000, help="images for per-image loops")
    parser.add_argument("--skip-cnn", action="store_true")
    parser.add_argument("--big", action="store_true",
                        help="also logreg on raw pixels (several minutes)")
    parser.add_argument("--only", default="extractors,kmeans,fits,mlp,load,startup,runs,cnn",
                        help="comma-separated parts to run (also: kmeans-fits, the study's "
                        "k-means rows from the store, about 10 minutes)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    from bench_extractors import load_images

    from featbench.parallel import load_average, set_options

    set_options(progress=False)
    print(machine())
    print(f"load average before: {load_average()}", flush=True)
    X, what = load_images(args.n, args.data_dir)
    print(what)
    cifar = (args.data_dir / "cifar10-jpeg").is_dir()
    if "extractors" in parts:
        extractors(X, args.n_peer)
    if "kmeans" in parts:
        kmeans(X)
    if cifar and "fits" in parts:
        linear_fits(args.data_dir, "hog", None, ("logreg", "linear-svm"),
                    {"logreg": [1e-3, 1e-2, 1e-1, 1.0, 10.0],
                     "linear-svm": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]})
        if args.big:
            linear_fits(args.data_dir, "raw", None, ("logreg",), {"logreg": [1e-4, 1e-3, 1e-2]},
                        peer_all=False)
    if cifar and "kmeans-fits" in parts:
        kmeans_fits(args.data_dir)
    if cifar and "mlp" in parts:
        mlp_fit(args.data_dir)
    if cifar and "load" in parts:
        under_load(args.data_dir, X)
    if "startup" in parts:
        startup()
    if cifar and "runs" in parts:
        whole_runs(args.data_dir)
    if "cnn" in parts and not args.skip_cnn:
        cnn(X)
    print(f"load average after: {load_average()} (pid {os.getpid()})")


if __name__ == "__main__":
    main()
