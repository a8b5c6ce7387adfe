"""Speed of featbench's stages next to their peers, measured in the same run.

Prints one line per figure: featbench's rate or time, its peer's (the loop a user
would write, or featbench's previous path), and the ratio, with the machine (CPU
model, cores this process may use, AVX-512 / bf16 / AMX flags) and the load average
before and after, so a figure from a busy machine can be told apart.

    python benchmarks/speed.py [--data-dir ../shared/data] [--n 20000] [--skip-cnn]

Figures (CIFAR-10 JPEG copy when present, random 32x32 images otherwise):

* ``hog``, ``color-hist``: images/s against a per-image ``skimage.feature.hog`` loop
  and a per-image ``rgb2hsv`` + ``np.histogram`` loop;
* classifier fits on HOG features of the training split (tuning split of seed 0):
  the grid of ``logreg`` fitted as a warm-started float32 path
  (:mod:`featbench.classifiers.path`) against scikit-learn's ``LogisticRegression``
  cold-started at every value (featbench's CPU default until 0.3), with the
  objective reached at each value;
* ``cnn:efficientnet-lite0`` at 224 px, fp32: the OpenVINO backend and eager torch
  against a plain eager loop over pre-decoded tensors (``--skip-cnn`` leaves it out).
"""

from __future__ import annotations

import argparse
import os
import platform
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


def fits(data_dir: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from featbench import load_dataset
    from featbench.classifiers import get_classifier
    from featbench.classifiers.path import PathFitter
    from featbench.classifiers.torch_logreg import logistic_objective
    from featbench.extraction import extract_features
    from featbench.splits import tuning_split
    from featbench.store import FeatureStore

    ds = load_dataset("cifar10", data_dir=data_dir)
    res = extract_features("hog", ds, {}, FeatureStore())
    split = tuning_split(ds, 0)
    y_all = np.asarray(ds.train.labels)
    X, y = res.train[split.fit], y_all[split.fit]
    grid = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    t0 = time.perf_counter()
    fitter = PathFitter(get_classifier("logreg", solver="torch", device="cpu"), X, y, X[:10])
    path = {C: fitter.fit(C) for C in grid}
    ours = time.perf_counter() - t0
    Xs = StandardScaler().fit_transform(X)
    t0 = time.perf_counter()
    cold = {C: LogisticRegression(C=C, max_iter=5000).fit(Xs, y) for C in grid}
    peer = time.perf_counter() - t0
    line(f"logreg grid on HOG ({len(y):,} x {X.shape[1]})", ours,
         "LogisticRegression cold at each C", peer, "s", higher_is_better=False)
    for C in grid:
        a = logistic_objective(path[C].coef_, path[C].intercept_, Xs, y, C)
        b = logistic_objective(cold[C].coef_, cold[C].intercept_, Xs, y, C)
        print(f"    C={C:g}: objective {a:.6g} (path, {int(path[C].n_iter_[0])} iterations) vs "
              f"{b:.6g} (cold, {int(cold[C].n_iter_[0])}); relative {(a - b) / b:+.1e}")


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
    args = parser.parse_args()
    from bench_extractors import load_images

    from featbench.parallel import load_average, set_options

    set_options(progress=False)
    print(machine())
    print(f"load average before: {load_average()}", flush=True)
    X, what = load_images(args.n, args.data_dir)
    print(what)
    extractors(X, args.n_peer)
    if (args.data_dir / "cifar10-jpeg").is_dir():
        fits(args.data_dir)
    if not args.skip_cnn:
        cnn(X)
    print(f"load average after: {load_average()} (pid {os.getpid()})")


if __name__ == "__main__":
    main()
