"""Re-key run records made before folder fingerprints hashed file contents.

Until featbench 0.2.0's content fingerprint, a folder dataset was fingerprinted by
its listing (relative path, size and mtime of every file). A re-provisioned copy of
the same files (new mtimes) then got a new fingerprint, so records of one study made
in different sittings fell into different plans although they were computed from the
same bytes. This script

1. checks the data folder against its ``sha256sum`` manifest when one lies beside it
   (``<folder>.sha256``, as in ``../shared/data``): every file, byte for byte;
2. computes today's content fingerprint of the dataset with featbench;
3. rewrites ``dataset.fingerprint`` of every record in ``RUNS`` whose
   ``dataset.source`` is that folder, keeping the old value in
   ``dataset.fingerprint_listing`` (nothing else in a record changes).

Usage::

    python tools/refingerprint_records.py results/studies/cifar10/runs \
        --dataset cifar10 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def verify_manifest(folder: Path) -> int:
    """Check every file listed in ``<folder>.sha256``; return how many were checked."""
    manifest = folder.with_name(folder.name + ".sha256")
    if not manifest.is_file():
        sys.exit(f"{manifest}: no sha256 manifest; cannot show the files are the same")
    base = manifest.parent
    n = 0
    for line in manifest.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        name = name.lstrip("*")
        if hashlib.sha256((base / name).read_bytes()).hexdigest() != digest:
            sys.exit(f"{base / name}: sha256 differs from {manifest}")
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", type=Path, required=True)
    args = ap.parse_args()

    from featbench import load_dataset

    ds = load_dataset(args.dataset, data_dir=args.data_dir)
    source = Path(ds.source).resolve()
    n = verify_manifest(source)
    print(f"{source}: {n} files match {source.name}.sha256")
    new = ds.fingerprint
    changed = 0
    for path in sorted(args.runs.glob("*.json")):
        rec = json.loads(path.read_text())
        d = rec.get("dataset", {})
        if Path(d.get("source", "")).resolve() != source or d.get("fingerprint") == new:
            continue
        d["fingerprint_listing"] = d["fingerprint"]
        d["fingerprint"] = new
        path.write_text(json.dumps(rec, indent=2) + "\n")
        changed += 1
    print(f"{changed} records re-keyed to content fingerprint {new}")


if __name__ == "__main__":
    main()
