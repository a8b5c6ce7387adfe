"""The Ray Data engine against the local one on one folder: images/s and feature difference.

Extracts ``--features`` from an image folder into two empty stores, once with the local
engine and once with ``--engine ray`` (a local Ray instance; actors with one GPU each on
CUDA), and prints each engine's wall time and images/s (Ray's start-up included) and the
largest absolute difference of their features. Prints ``ray: skipped`` and exits 0 when
``import ray`` fails.

    python benchmarks/ray_check.py --data .gpu_data/cifar -f cnn:efficientnet-lite0 \\
        -p cnn:efficientnet-lite0.precision=fp32 --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="image folder (train/ + test/)")
    ap.add_argument("-f", "--features", default="hog")
    ap.add_argument("-p", "--param", action="append", default=[])
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray: skipped (import ray failed)")
        return
    import numpy as np

    from featbench.datasets import load_dataset
    from featbench.engines import get_engine
    from featbench.engines.ray_data import shutdown
    from featbench.extraction import extract_features
    from featbench.features import split_spec
    from featbench.params import parse_params
    from featbench.store import FeatureStore

    params = parse_params(args.param)
    if args.device:
        for name in split_spec(args.features):
            if name.startswith(("cnn:", "kmeans-patches")):
                params.setdefault(name, {})["device"] = args.device
    ds = load_dataset(f"folder:{args.data}")
    n = sum(len(s) for s in ds.splits().values())
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("local", "ray"):
            t0 = time.perf_counter()
            res = extract_features(args.features, ds, params, FeatureStore(Path(tmp) / engine),
                                   engine=get_engine(engine))
            wall = time.perf_counter() - t0
            out[engine] = res
            print(f"{engine:>5}: {wall:6.1f} s, {n / wall:7.1f} images/s ({n} images, "
                  f"{args.features})", flush=True)
    shutdown()
    diff = max(float(np.abs(out["local"].splits[s] - out["ray"].splits[s]).max())
               for s in out["local"].splits)
    print(f"ray vs local: max |difference| = {diff:.3g}")


if __name__ == "__main__":
    main()
