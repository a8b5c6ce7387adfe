"""Seconds per epoch and per fit of the ``mlp`` classifier: featbench's torch MLP
(float32) against scikit-learn's ``MLPClassifier`` (float64, as featbench fitted it
before), on a 49,000 x 154 ten-class problem (the size of HOG + hue on CIFAR-10's
tuning split), 500 ReLU units, early stopping, alpha = 1e-2, with the torch and BLAS
thread pools at ``--threads``.

    python benchmarks/mlp_speed.py [--threads 1] [--max-iter 200] [--skip-sklearn]

Prints the load average before and after: on a shared machine, OpenMP workers that
spin-wait (libgomp's default) make multi-threaded runs many times slower
(``OMP_WAIT_POLICY=PASSIVE`` avoids it).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()

    import featbench  # noqa: F401 - first: it sets OpenMP's wait policy before torch loads

    # isort: split
    import torch
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    from featbench.classifiers.torch_mlp import MLP

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    X, y = make_classification(49_000, 154, n_informative=60, n_classes=10, random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    kw = dict(hidden_layer_sizes=(500,), early_stopping=True, max_iter=args.max_iter,
              random_state=0, alpha=1e-2)
    print(f"threads {args.threads}, load {os.getloadavg()[0]:.2f}", flush=True)
    fits = [("featbench MLP float32", lambda: MLP(device="cpu", **kw))]
    if not args.skip_sklearn:
        fits.append(("sklearn MLPClassifier float64", lambda: MLPClassifier(**kw)))
    for name, make in fits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            est = make().fit(X, y)
            dt = time.perf_counter() - t0
        print(f"{name}: {dt:.1f} s per fit, {est.n_iter_} epochs, "
              f"{dt / est.n_iter_:.3f} s per epoch, best validation accuracy "
              f"{est.best_validation_score_:.4f}", flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
