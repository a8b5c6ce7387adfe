"""Features of this checkout against those of an earlier commit, on every image.

Shows that a change to the data path leaves the numbers alone: the earlier
commit's in-memory loader (decode the whole dataset into one array, then
``transform``) runs in a ``git worktree``; this checkout runs its streaming
extraction through a fresh feature store. Prints the largest absolute
difference per extractor and split.

    python benchmarks/compare_features.py --ref 39694d4 --data-dir ../shared/data \
        --features raw,color-hist,hog,cnn:efficientnet-lite0 \
        -p cnn:efficientnet-lite0.size=128
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

OLD = textwrap.dedent("""
    import sys, time, numpy as np
    from featbench import load_dataset, get_extractor
    from featbench.params import parse_params
    name, out, data_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    params = parse_params(sys.argv[4:]).get(name, {})
    ds = load_dataset("cifar10", data_dir=data_dir)
    t0 = time.perf_counter()
    est = get_extractor(name, **params).fit(ds.X_train)
    np.save(out + "-train.npy", est.transform(ds.X_train).astype(np.float32))
    np.save(out + "-test.npy", est.transform(ds.X_test).astype(np.float32))
    print(f"{time.perf_counter() - t0:.1f}")
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="39694d4", help="earlier commit")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--features", default="raw,color-hist,hog")
    ap.add_argument("-p", "--param", action="append", default=[])
    args = ap.parse_args()

    from featbench import load_dataset
    from featbench.extraction import extract_features
    from featbench.params import parse_params
    from featbench.store import FeatureStore

    params = parse_params(args.param)
    work = Path(tempfile.mkdtemp(prefix="featbench-compare-"))
    tree = work / "ref"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(tree),
                    args.ref], check=True)
    try:
        ds = load_dataset("cifar10", data_dir=args.data_dir)
        print(f"CIFAR-10 (JPEG copy): {len(ds.train)} train + {len(ds.test)} test images; "
              f"reference {args.ref} vs this checkout", flush=True)
        env = {**os.environ, "PYTHONPATH": str(tree), "FEATBENCH_CACHE": str(work / "oldc")}
        for name in args.features.split(","):
            out = str(work / name.replace(":", "_"))
            t0 = time.perf_counter()
            old_s = subprocess.run([sys.executable, "-c", OLD, name, out, args.data_dir,
                                    *args.param], env=env, check=True, capture_output=True,
                                   text=True).stdout.strip().splitlines()[-1]
            old_wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            new = extract_features(name, ds, params, FeatureStore(work / "store"))
            new_wall = time.perf_counter() - t0
            for split in ("train", "test"):
                ref = np.load(f"{out}-{split}.npy")
                got = new.splits[split]
                diff = float(np.abs(ref - got).max()) if ref.shape == got.shape else float("nan")
                print(f"{name:<28} {split:<5} shape {str(got.shape):<14} max |old - new| = "
                      f"{diff:.3g}  ({'equal' if diff == 0 else 'differs'})", flush=True)
            print(f"{'':<28} old {old_wall:.0f} s wall (extract {old_s} s), new "
                  f"{new_wall:.0f} s wall", flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                       check=False)


if __name__ == "__main__":
    main()
