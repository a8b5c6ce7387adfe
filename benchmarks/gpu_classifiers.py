"""GPU classifiers and k-means encoding against the CPU paths, on CIFAR-feature-sized data.

Classifiers, on synthetic standardized float32 features (default 50,000 x 2,000, 10
classes: class means plus a correlated low-rank part plus noise, like pooled CNN
features), at C = 1e-2 (the largest C the CIFAR-10 study chose; larger C, more iterations):

* ``logreg``: scikit-learn's ``LogisticRegression`` (lbfgs, the CPU path of
  featbench's ``logreg``) next to ``LogReg(solver="torch")`` on ``--device``;
* ``linear-svm``: ``LinearSVM(solver="lbfgs")`` on the CPU (featbench's CPU solver
  above 512 features, tested against ``LinearSVC``) next to the same on ``--device``;
  ``--liblinear`` adds ``LinearSVC`` itself (minutes at full size).

Each line gives fit seconds (data copy included), iterations, the objective in float64
and its relative gap to the CPU fit, and how many predictions agree. Then k-means
patch encoding (K = 1,600, 32 x 32 images) in images/s on ``--device`` and on the CPU,
and the largest relative difference of their features.

    python benchmarks/gpu_classifiers.py --device cuda
    python benchmarks/gpu_classifiers.py --device cpu --smoke   # a quick check anywhere
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch


def make_features(n: int, d: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized float32 features: class means + rank-64 correlated part + noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    means = rng.standard_normal((n_classes, d), dtype=np.float32) * 0.03
    mixing = rng.standard_normal((64, d), dtype=np.float32) / 8.0
    X = rng.standard_normal((n, d), dtype=np.float32)
    X += rng.standard_normal((n, 64), dtype=np.float32) @ mixing
    X += means[y]
    X -= X.mean(0)
    X /= X.std(0)
    return X, y


def timed(make, X, y):
    """Fit ``make()`` on X, y; return the estimator, the seconds and the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        est = make().fit(X, y)
        seconds = time.perf_counter() - t0
    limit = any("max_iter" in str(w.message) or "iterations" in str(w.message) for w in caught)
    return est, seconds, limit


def report(name, est, seconds, limit, objective, ref_obj=None, ref_pred=None, X=None):
    obj = objective(est)
    gap = "" if ref_obj is None else f"  gap {(obj - ref_obj) / abs(ref_obj):+.2e}"
    agree = "" if ref_pred is None else f"  agree {np.mean(est.predict(X) == ref_pred):.4f}"
    n_iter = int(np.max(est.n_iter_))
    flag = " (iteration limit)" if limit else ""
    print(f"  {name:<36} {seconds:7.2f} s  {n_iter:5d} it{flag}  objective {obj:.6e}{gap}{agree}",
          flush=True)
    return obj


def classifiers(args, device: torch.device) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    from featbench.classifiers.linear_svm import LinearSVM, squared_hinge_objective
    from featbench.classifiers.torch_logreg import LogReg, logistic_objective

    X, y = make_features(args.n, args.d, args.classes)
    C, max_iter = args.C, args.max_iter
    print(f"classifiers: {args.n} x {args.d} float32, {args.classes} classes, C = {C}, "
          f"device {device}", flush=True)
    # warm-up: CUDA context, cuBLAS handles, kernels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LogReg(solver="torch", device=str(device), max_iter=3).fit(X[:256, :64], y[:256])

    print(" logreg (multinomial)", flush=True)

    def obj_lr(est):
        return logistic_objective(est.coef_, est.intercept_, X, np.searchsorted(est.classes_, y),
                                  C)

    ref, s, lim = timed(lambda: LogisticRegression(C=C, max_iter=max_iter), X, y)
    ref_obj = report("scikit-learn lbfgs (CPU)", ref, s, lim, obj_lr)
    ref_pred = ref.predict(X)
    est, s, lim = timed(lambda: LogReg(C=C, solver="torch", device=str(device),
                                       max_iter=max_iter), X, y)
    report(f"torch L-BFGS ({est.device_})", est, s, lim, obj_lr, ref_obj, ref_pred, X)

    print(" linear-svm (one-vs-rest squared hinge)", flush=True)
    Y = np.where(y[:, None] == np.arange(args.classes)[None, :], 1.0, -1.0)

    def obj_svm(est):
        return squared_hinge_objective(est.coef_, est.intercept_, X, Y, C)

    if args.liblinear:
        lib, s, lim = timed(lambda: LinearSVC(C=C, dual=False, max_iter=max_iter), X, y)
        report("scikit-learn LinearSVC (CPU)", lib, s, lim, obj_svm)
    ref, s, lim = timed(lambda: LinearSVM(C=C, solver="lbfgs", device="cpu",
                                          max_iter=max_iter), X, y)
    ref_obj = report("torch L-BFGS (cpu, featbench's CPU)", ref, s, lim, obj_svm)
    ref_pred = ref.predict(X)
    est, s, lim = timed(lambda: LinearSVM(C=C, solver="lbfgs", device=str(device),
                                          max_iter=max_iter), X, y)
    report(f"torch L-BFGS ({est.device_})", est, s, lim, obj_svm, ref_obj, ref_pred, X)


def kmeans_encoding(args, device: torch.device) -> None:
    from featbench.features import KMeansPatches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.km_images, 32, 32, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    base = KMeansPatches(n_centroids=args.km_k, n_patches=args.km_patches, kmeans_iter=1,
                         device="cpu").fit(images[:500])
    print(f"k-means patches: K = {args.km_k} (fitted on {args.km_patches} patches in "
          f"{time.perf_counter() - t0:.1f} s), 32 x 32 images", flush=True)
    results = []
    for dev, n in ((device, args.km_images), (torch.device("cpu"), args.km_cpu_images)):
        est = base.set_params(device=str(dev))  # the device is no part of the fitted state
        est.transform(images[:16])  # warm-up
        t0 = time.perf_counter()
        F = est.transform(images[:n])
        seconds = time.perf_counter() - t0
        batch = est._batch_size(dev, images.shape[1:])
        print(f"  {str(dev):<8} {n / seconds:9.0f} images/s  ({n} images, batch {batch})",
              flush=True)
        results.append(F)
    F_dev, F_cpu = results[0][:args.km_cpu_images], results[1]
    rel = np.abs(F_dev - F_cpu).max() / np.abs(F_cpu).max()
    print(f"  largest difference {device} vs cpu: {rel:.2e} of the largest feature", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: a check of the script")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=2_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--C", type=float, default=1e-2)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--liblinear", action="store_true", help="also fit LinearSVC (slow)")
    ap.add_argument("--km-k", type=int, default=1600)
    ap.add_argument("--km-patches", type=int, default=20_000)
    ap.add_argument("--km-images", type=int, default=10_000, help="encoded on --device")
    ap.add_argument("--km-cpu-images", type=int, default=1_000, help="encoded on the CPU")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.d, args.max_iter = 2_000, 300, 300
        args.km_k, args.km_patches, args.km_images, args.km_cpu_images = 64, 2_000, 200, 100

    from featbench.runtime import check_device

    device = check_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} "
          f"CPU threads", flush=True)
    t0 = time.perf_counter()
    classifiers(args, device)
    kmeans_encoding(args, device)
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
