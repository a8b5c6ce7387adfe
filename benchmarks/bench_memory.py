"""Peak memory and speed of ``featbench extract`` on photo folders of growing size.

Builds a synthetic folder of 256 x 256 JPEGs (N and 4N images, 10 classes),
then, each in a fresh process so that peak RSS is its own:

- ``featbench extract`` (streaming: source -> batches -> extractor -> store) for
  ``hog`` and ``cnn:efficientnet-lite0`` at N and at 4N images;
- the in-memory peer at N images, the data path featbench had before its
  feature store: decode the whole folder into one uint8 array at the
  extractor's resolution (``read_image``), then ``transform`` it in one call.

Prints peak RSS (MB), images/s and the 4N / N RSS ratio (goal: at most 1.2).

    python benchmarks/bench_memory.py --n 1024          # default shard size
    python benchmarks/bench_memory.py --n 300 --shard-size 128
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PEER = """
import sys, time
import numpy as np
from pathlib import Path
from featbench.datasets.imageio import read_image
from featbench.features import get_extractor
from featbench.params import parse_params
folder, spec, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
params = parse_params(sys.argv[4:]).get(spec, {})
paths = sorted(folder.rglob("*.jpg"))
t0 = time.perf_counter()
X = np.stack([read_image(p, size) for p in paths])  # the whole folder in one array
est = get_extractor(spec, **params).fit(X[:1])
F = est.transform(X)
print(time.perf_counter() - t0)
"""


def make_folder(root: Path, n: int, size: int = 256, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / f"class{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC)
        img.save(d / f"{i:06d}.jpg", quality=90)
    return root


def measure(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the child, and its stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return wall, _peak_mb(out, err), out


def _peak_mb(out: str, err: str) -> float:
    for line in (out + err).splitlines()[::-1]:
        if line.startswith("PEAK_RSS_KB="):
            return int(line.split("=")[1]) / 1024
    return float("nan")


WRAP = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    if sys.argv[0] == "-c":
        src = sys.argv[1]
        sys.argv = ["-c", *sys.argv[2:]]
        exec(compile(src, "<peer>", "exec"), {"__name__": "__main__"})
    else:
        from featbench.cli import main
        main(args=sys.argv, prog_name="featbench", standalone_mode=False)
except SystemExit as exc:
    code = exc.code or 0
print(f"PEAK_RSS_KB={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="N (the big folder has 4N images)")
    ap.add_argument("--features", default="hog,cnn:efficientnet-lite0")
    ap.add_argument("--shard-size", type=int, default=1024,
                    help="featbench's --shard-size (memory is bounded by about two shards "
                         "of decoded images, so N should be at least this)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="featbench-mem-"))
    folders = {n: make_folder(work / f"data{n}", n) for n in (args.n, 4 * args.n)}
    env = {**os.environ, "FEATBENCH_CACHE": str(work / "cache")}
    rows = []
    print(f"synthetic 256x256 JPEG folders of N = {args.n} and 4N = {4 * args.n} images "
          f"(75 % train); --shard-size {args.shard_size}; {os.cpu_count()} CPU cores; each "
          f"run in a fresh process", flush=True)
    for spec in args.features.split(","):
        size = 224 if spec.startswith("cnn:") else 128
        for n, folder in folders.items():
            cmd = [sys.executable, "-c", WRAP, "extract", "-q", "-d", f"folder:{folder}",
                   "-f", spec, "--shard-size", str(args.shard_size),
                   "--cache-dir", str(work / f"cache-{n}-{spec.replace(':', '_')}")]
            wall, mb, _ = measure(cmd, env)
            rows.append((spec, "featbench extract", n, mb, n / wall))
            print(f"{spec:<24} featbench extract  N={n:<6} peak RSS {mb:8.0f} MB  "
                  f"{n / wall:7.1f} img/s", flush=True)
        n = args.n
        cmd = [sys.executable, "-c", WRAP, "-c", PEER, str(folders[n]), spec, str(size)]
        wall, mb, _ = measure(cmd, env)
        rows.append((spec, "in-memory peer", n, mb, n / wall))
        print(f"{spec:<24} in-memory peer     N={n:<6} peak RSS {mb:8.0f} MB  "
              f"{n / wall:7.1f} img/s  (whole folder decoded at {size} px, then transform)",
              flush=True)
    print()
    print("| features | path | images | peak RSS MB | images/s |")
    print("|---|---|---|---|---|")
    for spec, path, n, mb, ips in rows:
        print(f"| `{spec}` | {path} | {n} | {mb:.0f} | {ips:.1f} |")
    for spec in args.features.split(","):
        mbs = {n: mb for s, p, n, mb, _ in rows if s == spec and p == "featbench extract"}
        print(f"{spec}: RSS ratio 4N / N = {mbs[4 * args.n] / mbs[args.n]:.2f} "
              f"(goal <= 1.2)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
