"""Images/s of ``featbench extract`` in N shard processes and on Ray Data, against one process.

Every configuration extracts the same images into its own empty feature store (a
fresh ``--cache-dir``), so nothing is reused between them, and is timed from the
start of its first process to the end of its last, process start-up (Python,
torch, the dataset listing) included, as a SLURM array or ``xargs -P`` would see it:

- ``plain``: ``featbench extract`` (one process, ``-j`` = every core);
- ``shards N``: N processes ``featbench extract --shard I/N`` started together on one
  store, each with ``-j max(1, cores // N)`` threads (a process per core and no
  more threads than cores, as a cluster job would be sized);
- ``ray``: ``featbench extract --engine ray`` (a local Ray instance started by the
  command, with as many CPUs as the machine; skipped when ``import ray`` fails).

A first ``plain`` run, not reported, warms the page cache (the files are read from
memory by every configuration). It prints one row per configuration with wall seconds,
images/s and the ratio to ``plain`` measured in the same run, and checks that each
configuration stored the same features as ``plain`` (the shards compared byte for byte).

    python benchmarks/shard_scaling.py                       # hog, 10,000 CIFAR-10 JPEGs
    python benchmarks/shard_scaling.py -f cnn:efficientnet-lite0 --train-size 2000 \\
        -p cnn:efficientnet-lite0.size=64 --shards 1,2

On one machine N shard processes can at most use the cores one process already
uses (``-j`` threads decode and extract in parallel), so expect no more than
``cores``x and usually less: what the rows show is the overhead of each engine
(process start-up, one probe image per process, Ray's start and scheduling).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _extract_cmd(args, cache: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "featbench", "extract", "-q", "-d", args.dataset,
           "-f", args.features, "--cache-dir", str(cache), "--shard-size",
           str(args.shard_size), "--seed", "0"]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.train_size:
        cmd += ["--train-size", str(args.train_size)]
    if args.test_size:
        cmd += ["--test-size", str(args.test_size)]
    for p in args.param:
        cmd += ["-p", p]
    return cmd + extra


def _run_together(cmds: list[list[str]]) -> tuple[float, list[str]]:
    """Start every command at once; wall seconds until the last one ends."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for c in cmds]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    for p, out in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"command failed ({p.returncode}): {' '.join(p.args)}\n{out}")
    return wall, outs


def _store_digest(cache: Path) -> tuple[int, str]:
    """Number of shards stored and one hash of their bytes (in key and shard order)."""
    h = hashlib.sha256()
    files = sorted((cache / "store" / "features").glob("*/shard-*.npy"),
                   key=lambda p: (p.parent.name.rsplit("-s", 1)[0], p.name))
    for f in files:
        h.update(f.read_bytes())
    return len(files), h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--dataset", default="cifar10")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("-f", "--features", default="hog")
    ap.add_argument("-p", "--param", action="append", default=[])
    ap.add_argument("--train-size", type=int, default=8000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--shards", default="1,2,4", help="process counts to try")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    n_images = args.train_size + args.test_size
    root = Path(tempfile.mkdtemp(prefix="fb-shards-"))
    rows = []

    def measure(name: str, cmds: list[list[str]], cache: Path) -> None:
        wall, _ = _run_together(cmds)
        n, digest = _store_digest(cache)
        rows.append({"config": name, "processes": len(cmds), "wall_s": wall,
                     "images_per_s": n_images / wall, "shards": n, "digest": digest})
        print(f"  {name:<12} {wall:7.1f} s", flush=True)

    print(f"{args.features} on {n_images} images of {args.dataset} ({cores} cores), "
          f"shard size {args.shard_size}:", flush=True)
    try:
        # warm-up, not reported: the first run reads the files from disk, later ones from
        # the page cache (without it, "plain" paid ~5 s more than the same work in "shards 1")
        _run_together([_extract_cmd(args, root / "warm-up", [])])
        cache = root / "plain"
        measure("plain", [_extract_cmd(args, cache, [])], cache)
        for n in (int(v) for v in args.shards.split(",")):
            cache = root / f"shards{n}"
            jobs = str(max(1, cores // n))
            measure(f"shards {n}", [_extract_cmd(args, cache, ["--shard", f"{i}/{n}", "-j",
                                                               jobs])
                                    for i in range(1, n + 1)], cache)
        if not args.no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                print("  ray: skipped (import ray failed)")
            else:
                cache = root / "ray"
                measure("ray", [_extract_cmd(args, cache, ["--engine", "ray"])], cache)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = rows[0]
    print(f"\n{'config':<12} {'procs':>5} {'wall s':>8} {'img/s':>8} {'vs plain':>9}  "
          f"same features")
    for r in rows:
        same = r["digest"] == base["digest"] and r["shards"] == base["shards"]
        r["vs_plain"] = r["images_per_s"] / base["images_per_s"]
        r["same_features"] = same
        print(f"{r['config']:<12} {r['processes']:>5} {r['wall_s']:>8.1f} "
              f"{r['images_per_s']:>8.1f} {r['vs_plain']:>8.2f}x  {'yes' if same else 'NO'}")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "cores": cores, "rows": rows}, indent=1))
    if not all(r["same_features"] for r in rows):
        raise SystemExit("some configuration stored different features")


if __name__ == "__main__":
    main()
