"""Extraction throughput: featbench's batched extractors vs a plain per-image loop.

Prints images/s for featbench's ``hog`` and ``color-hist`` on CIFAR-10-sized images
(32 x 32 RGB; the shared CIFAR-10 JPEG copy when present, random images otherwise),
next to a per-image ``skimage.feature.hog`` loop and a per-image ``np.histogram`` of
the hue, measured in the same run, and the ratio.

    python benchmarks/bench_extractors.py [--n 10000] [--data-dir ../shared/data] [--encoders]

With ``--encoders`` it also fits each bag-of-words encoder and Coates' k-means
features (at the configurations of the README table) on ``--n-fit`` training images
and prints their encoding throughput on ``--n`` images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from skimage.color import rgb2gray, rgb2hsv
from skimage.feature import hog as sk_hog

from featbench.features import HOG, ColorHistogram
from featbench.parallel import get_n_jobs, set_options


def load_images(n: int, data_dir: Path | None) -> tuple[np.ndarray, str]:
    if data_dir is not None and (data_dir / "cifar10-jpeg").is_dir():
        from featbench import load_dataset

        ds = load_dataset("cifar10", data_dir=data_dir)
        X = np.concatenate([ds.X_train, ds.X_test])[:n]
        return X, f"CIFAR-10 (JPEG copy), {len(X)} images"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), f"{n} random 32x32 images"


def rate(fn, X, repeat: int = 1) -> float:
    fn(X[:64])  # warm-up
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(X)
        best = min(best, time.perf_counter() - t0)
    return len(X) / best


def skimage_hog_loop(X):
    return np.stack([sk_hog(rgb2gray(im), 9, (8, 8), (2, 2), block_norm="L2-Hys") for im in X])


def numpy_hue_loop(X):
    return np.stack([np.histogram(rgb2hsv(im)[..., 0], bins=10, range=(0, 1))[0] / 1024
                     for im in X])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="images for featbench")
    parser.add_argument("--n-peer", type=int, default=2000, help="images for the per-image loops")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--encoders", action="store_true",
                        help="also time bovw, vlad, fisher and kmeans-patches")
    parser.add_argument("--n-fit", type=int, default=5000, help="images the encoders fit on")
    args = parser.parse_args()
    set_options(progress=False)
    X, what = load_images(max(args.n, args.n_peer), args.data_dir)
    print(f"{what}; {get_n_jobs()} worker threads")
    rows = [
        ("hog", rate(lambda x: HOG().fit_transform(x), X[:args.n], 3),
         "skimage.feature.hog per image", rate(skimage_hog_loop, X[:args.n_peer])),
        ("color-hist", rate(lambda x: ColorHistogram().fit_transform(x), X[:args.n], 3),
         "rgb2hsv + np.histogram per image", rate(numpy_hue_loop, X[:args.n_peer])),
    ]
    print(f"{'extractor':<12}{'featbench img/s':>18}  {'peer':<34}{'peer img/s':>12}{'ratio':>8}")
    for name, ours, peer_name, peer in rows:
        print(f"{name:<12}{ours:>18,.0f}  {peer_name:<34}{peer:>12,.0f}{ours / peer:>7.1f}x")
    if args.encoders:
        encoders(X, args.n, args.n_fit)


#: configurations timed with --encoders (those of the README's CIFAR-10 table)
ENCODERS = {
    "bovw": {"n_words": 1024, "step": 2, "pyramid_levels": 2},
    "vlad": {"n_words": 64, "step": 2},
    "fisher": {"n_components": 64, "pca_dim": 64, "step": 2},
    "kmeans-patches": {"n_centroids": 1600},
}


def encoders(X: np.ndarray, n: int, n_fit: int) -> None:
    from featbench import get_extractor

    print(f"\n{'encoder':<16}{'fit s':>8}{'encode img/s':>14}  parameters")
    for name, params in ENCODERS.items():
        est = get_extractor(name, **params)
        t0 = time.perf_counter()
        est.fit(X[:n_fit])
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        est.transform(X[:n])
        speed = n / (time.perf_counter() - t0)
        print(f"{name:<16}{fit_s:>8.1f}{speed:>14,.0f}  {params}")


if __name__ == "__main__":
    main()
