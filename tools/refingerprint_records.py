"""Re-key run records made before folder fingerprints hashed file contents.

A folder dataset's fingerprint was a hash of the decoded pixels (featbench 0.1.0),
then of the listing (relative path, size and mtime of every file; early 0.2.0), and is
now a hash of every file's bytes. Under the listing scheme a re-provisioned copy of
the same files (new mtimes) got a new fingerprint, so records of one study made in
different sittings fell into different plans although they were computed from the
same bytes. This script

1. checks the data folder against its ``sha256sum`` manifest (``<folder>.sha256``
   beside it, as in ``../shared/data``): the manifest must list exactly the dataset's
   files, and every file must match, byte for byte;
2. computes today's content fingerprint of the dataset with featbench;
3. rewrites ``dataset.fingerprint`` of every record in ``RUNS`` made on that folder at
   the same sizes (``n_train``, ``n_test``; not subsets or ``--quick`` runs), keeping
   the old value in ``dataset.fingerprint_before``. Nothing else in a record changes:
   a study row's ``study.key`` still holds the old fingerprint (and the code that
   made it), so ``featbench reproduce`` reruns such a row unless ``--only`` leaves it
   out; ``featbench plot`` groups records by fingerprint and shows them together.

Run it from the folder the records' relative ``dataset.source`` paths start from
(the repository root for the committed studies). Usage::

    python tools/refingerprint_records.py results/studies/cifar10/runs \
        --dataset cifar10 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def verify_manifest(folder: Path, files: set[Path]) -> int:
    """Check ``files`` against ``<folder>.sha256``: the same set, every digest equal.

    Returns how many files were checked; exits with a message naming the file otherwise.
    """
    manifest = folder.with_name(folder.name + ".sha256")
    if not manifest.is_file():
        sys.exit(f"{manifest}: no sha256 manifest; cannot show the files are the same")
    base = manifest.parent
    listed = {}
    for k, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        path = (base / name.strip().lstrip("*")).resolve()
        if len(digest) != 64 or not name.strip():
            sys.exit(f"{manifest}, line {k}: not a sha256sum line")
        if path.is_relative_to(folder):
            listed[path] = digest
    if set(listed) != files:
        extra, missing = sorted(files - set(listed)), sorted(set(listed) - files)
        sys.exit(f"{manifest} does not list the dataset's files: {len(extra)} not in it "
                 f"(e.g. {extra[:1]}), {len(missing)} listed but not in the dataset "
                 f"(e.g. {missing[:1]})")
    for path, digest in listed.items():
        try:
            data = path.read_bytes()
        except OSError as exc:
            sys.exit(f"{path}: {exc}")
        if hashlib.sha256(data).hexdigest() != digest:
            sys.exit(f"{path}: sha256 differs from {manifest}")
    return len(listed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", type=Path, required=True)
    args = ap.parse_args()

    from featbench import load_dataset

    ds = load_dataset(args.dataset, data_dir=args.data_dir)
    source = Path(ds.source).resolve()
    files = {(src.root / p).resolve() for src in ds.splits().values() for p in src.paths}
    n = verify_manifest(source, files)
    print(f"{source}: {n} files match {source.name}.sha256")
    new = ds.fingerprint
    summary = ds.summary()
    changed = 0
    for path in sorted(args.runs.glob("*.json")):
        rec = json.loads(path.read_text())
        d = rec.get("dataset", {})
        if Path(d.get("source", "")).resolve() != source or d.get("fingerprint") == new \
                or any(d.get(k) != summary[k] for k in ("n_train", "n_test", "classes")):
            continue
        d["fingerprint_before"] = d.pop("fingerprint_listing", d["fingerprint"])
        d["fingerprint"] = new
        path.write_text(json.dumps(rec, indent=2) + "\n")
        changed += 1
    print(f"{changed} records re-keyed to content fingerprint {new}")


if __name__ == "__main__":
    main()
