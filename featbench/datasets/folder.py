"""Image-folder and list-file datasets, listed lazily (no image is decoded here).

Layouts of ``folder:PATH``, looked for in this order:

- ``train/`` + ``val/`` + ``test/``: val is the validation split used for tuning
  (not carved out of train), test the evaluation split;
- ``train/`` + ``test/``;
- ``train/`` + ``val/`` (also ``valid/``, ``validation/``): the held-out split is
  the evaluation split (the ImageNet / PyTorch-tutorial layout);
- ``<class>/`` folders: one pool, split by seed (stratified, ``test_fraction``).

Inside a split, every sub-folder is a class and every image below it, at any
depth, belongs to that class (as torchvision's ``ImageFolder``; hidden files
skipped, extensions matched case-insensitively). Links to files are followed, and
links to folders outside the dataset's split folders are walked once; a link that
loops (to its own folder or one enclosing it) or points into the dataset's split
folders (its images would be listed twice, or under another class) is refused,
naming the link. A file is listed once per split, and a file reached under two
classes (through links or hard links) is refused.

``list:FILE`` reads a CSV or TSV with a path column and a label column (paths
relative to the file's folder), and an optional ``split`` column
(train/val/test); without it the pool is split by seed.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Dataset, stratified_indices
from .imageio import IMAGE_EXTENSIONS
from .source import FileSource

VAL_NAMES = ("val", "valid", "validation")
PATH_COLUMNS = ("path", "file", "filename", "filepath", "image", "img")
LABEL_COLUMNS = ("label", "class", "target", "category", "y")


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _within(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or lies below it."""
    return os.path.commonpath([path, folder]) == folder


def _follow(link: str, parent: str, chain: list[tuple[int, int]], listed: tuple[str, ...]
            ) -> str:
    """The real target of ``link``, a link to a folder found in the real folder ``parent``
    (``chain``: device and inode of every folder walked down to it); :class:`DataError`
    naming the link when following it would loop or list the dataset's images again."""
    target = os.path.realpath(link)
    st = os.stat(link)
    if (st.st_dev, st.st_ino) in chain or _within(parent, target):
        raise DataError(f"link {link} -> {os.readlink(link)} makes a loop (its target "
                        f"{target} holds the link); remove the link")
    inside = next((d for d in listed if _within(target, d)), None)
    if inside is not None:
        raise DataError(f"link {link} -> {os.readlink(link)} points into {inside}, which the "
                        f"dataset lists already (its images would be listed twice, or under "
                        f"another class); remove the link")
    return target


def _file_id(path: str) -> tuple[int, int] | None:
    """Device and inode of the file ``path`` names (after links); None if unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # a broken link: listed, reported when decoded
    return (st.st_dev, st.st_ino)


def _walk_images(folder: Path, listed: tuple[str, ...]) -> list[tuple[Path, tuple | None]]:
    """Image files below ``folder`` and their (device, inode), sorted by path, each file
    once (see :func:`find_images`)."""
    found: list[tuple[bool, Path, tuple | None]] = []
    walked: set[tuple[int, int]] = set()

    def walk(path: str, real: str, chain: list[tuple[int, int]]) -> None:
        st = os.stat(path)
        ident = (st.st_dev, st.st_ino)
        if ident in walked:  # reached again through another link: listed once
            return
        walked.add(ident)
        chain = [*chain, ident]
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                walk(e.path, os.path.join(real, e.name), chain)
            elif e.is_symlink() and e.is_dir():
                walk(e.path, _follow(e.path, real, chain, listed), chain)
            elif _is_image(e.name):
                found.append((e.is_symlink(), Path(e.path), _file_id(e.path)))

    folder = Path(folder)
    if folder.is_symlink():
        real = _follow(str(folder), os.path.realpath(folder.parent), [], listed)
    else:
        real = os.path.realpath(folder)
    walk(str(folder), real, [])
    found.sort(key=lambda item: item[:2])  # files first, then links; each by path
    out, seen = [], set()
    for _, path, ident in found:
        if ident is None or ident not in seen:  # one file reached twice: listed once
            out.append((path, ident))
            seen.add(ident)
    return sorted(out, key=lambda item: item[0])


def find_images(folder: Path, listed: tuple[str | Path, ...] = ()) -> list[Path]:
    """Every image file below ``folder`` (recursive, sorted, hidden skipped).

    Links to files are followed, and links to folders outside ``listed`` (the real
    paths of the folders the dataset lists: its split folders, or its root) are
    walked once. A link to a folder that encloses it (a loop) or into ``listed``
    (its images would be listed twice, or under another class) is refused with a
    :class:`DataError` naming the link. A file reached twice (links, hard links) is
    listed once, under its first path (its own name before a link's); a broken link
    is listed (and reported as a bad image when decoded).
    """
    return [p for p, _ in _walk_images(folder, tuple(os.path.realpath(d) for d in listed))]


def list_class_folder(root: Path, classes: list[str] | None = None,
                      listed: tuple[str | Path, ...] | None = None) -> dict[str, list[Path]]:
    """Image files per class sub-folder of ``root`` (recursive within each class, see
    :func:`find_images`; ``listed`` defaults to ``root``).

    Raises
    ------
    DataError
        A class folder without images, a looping link or one into ``listed``, or a file
        reached under two classes (links, hard links), naming them.
    """
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    found = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root} has no class sub-folders (expected {root}/<class>/<image>)")
    listed = tuple(os.path.realpath(d) for d in (listed or (root,)))
    out, owner = {}, {}
    for folder in found:
        files = []
        for path, ident in _walk_images(folder, listed):
            if ident is not None and owner.setdefault(ident, (folder.name, path))[0] \
                    != folder.name:
                other, first = owner[ident]
                raise DataError(f"{first} and {path} are the same file (a link or a hard "
                                f"link) in two classes, {other} and {folder.name}; a file "
                                f"takes one class")
            files.append(path)
        if not files:
            raise DataError(
                f"class folder {folder} has no image files (extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
        out[folder.name] = files
    if classes is not None:
        unknown = sorted(set(out) - set(classes))
        if unknown:
            raise DataError(f"{root}: unexpected class folders {unknown}; expected {classes}")
        out = {c: out[c] for c in classes if c in out}
    return out


def _source(root: Path, per_class: dict[str, list[Path]], classes: list[str]) -> FileSource:
    paths, labels = [], []
    for name, files in per_class.items():
        paths += [f.relative_to(root).as_posix() for f in files]
        labels += [classes.index(name)] * len(files)
    return FileSource(root, paths, labels)


def detect_layout(root: Path) -> tuple[str, dict[str, Path]]:
    """The layout of ``root`` and its split folders (see the module docstring)."""
    sub = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    val = next((sub[n] for n in VAL_NAMES if n in sub), None)
    if "train" in sub and "test" in sub and val is not None:
        return (f"train/ + {val.name}/ + test/ ({val.name} is the tuning split)",
                {"train": sub["train"], "val": val, "test": sub["test"]})
    if "train" in sub and "test" in sub:
        return "train/ + test/", {"train": sub["train"], "test": sub["test"]}
    if "train" in sub and val is not None:
        return (f"train/ + {val.name}/ ({val.name} is the evaluation split)",
                {"train": sub["train"], "test": val})
    if "train" in sub or "test" in sub:
        found = ", ".join(sorted(f"{p.name}/" for p in sub.values()))
        raise DataError(
            f"{root} has {found} but no held-out split: expected train/ + test/, train/ + "
            f"val/ (or valid/, validation/), train/ + val/ + test/, or only <class>/ folders")
    return "class folders (split by seed)", {}


def load_image_folder(root: str | Path, **kwargs) -> Dataset:
    """List an image folder as a lazy :class:`Dataset` (see :func:`_load_image_folder`);
    a folder that cannot be listed (permissions, I/O) is reported naming it."""
    try:
        return _load_image_folder(root, **kwargs)
    except OSError as exc:
        where = f" {exc.filename}" if getattr(exc, "filename", None) else f" {root}"
        raise DataError(f"cannot list image folder{where}: {exc.strerror or exc}") from None


def _load_image_folder(
    root: str | Path,
    *,
    name: str | None = None,
    classes: list[str] | None = None,
    image_size: int | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    cache=None,
) -> Dataset:
    """List an image folder as a lazy :class:`Dataset` (see the module docstring).

    Parameters
    ----------
    root : path
        The dataset folder.
    name : str, optional
        Dataset name in records (default ``folder:<root>``).
    classes : list of str, optional
        Class order (default: sorted folder names).
    image_size : int, optional
        Side the hand-crafted extractors see (``--image-size``); None: the
        images' own size when they share one up to 128 px, else 128.
    test_fraction : float
        Test share of a flat ``<class>/`` pool.
    seed : int
        Seed of the split of a flat pool.
    cache : ignored
        Kept for callers of earlier versions: nothing is decoded here any more.
    """
    root = Path(root).expanduser()
    name = name or f"folder:{root}"
    root = root.resolve()
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; expected {root}/train/<class>/*, "
            f"{root}/test/<class>/* (or val/), or {root}/<class>/*"
        )
    layout, folders = detect_layout(root)
    if folders:
        listed = {s: list_class_folder(f, classes, tuple(folders.values()))
                  for s, f in folders.items()}
        for split in ("val", "test"):
            if split in listed:
                missing = sorted(set(listed[split]) - set(listed["train"]))
                if missing:
                    raise DataError(f"{root}: {folders[split].name} classes missing from "
                                    f"{folders['train'].name}: {', '.join(missing)}")
        names = classes or sorted(listed["train"])
        names = [c for c in names if c in listed["train"]]
        sources = {s: _source(root, per_class, names) for s, per_class in listed.items()}
        return Dataset(name, sources["train"], sources["test"], list(names),
                       val=sources.get("val"), source=str(root), layout=layout,
                       image_size=image_size)
    pool = list_class_folder(root, classes)
    names = list(pool) if classes is None else [c for c in classes if c in pool]
    src = _source(root, pool, names)
    idx_tr, idx_te = stratified_indices(src.labels, test_fraction, seed)
    return Dataset(name, src.take(idx_tr), src.take(idx_te), list(names), source=str(root),
                   layout=layout, image_size=image_size,
                   notes={"test_fraction": test_fraction, "split_seed": seed})


def load_list_file(
    path: str | Path,
    *,
    image_size: int | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    skip_bad: bool = False,
) -> Dataset:
    """A dataset from a CSV/TSV list of ``path,label`` rows (see the module docstring).

    Paths may be absolute or lead out of the list file's folder (``..``): they are
    used, and counted in ``notes["absolute_paths"]`` and
    ``notes["paths_outside_list_folder"]`` (records; the first line says the latter).
    A path listed with two labels is refused, naming both lines; a path that does not
    exist is refused unless ``skip_bad`` (then it is a bad image, left out when
    decoded with ``--skip-bad-images``).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"list file {path} does not exist (expected a CSV or TSV with a "
                        f"path column and a label column)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read list file {path}: {exc}") from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in text.split("\n", 1)[0] else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    numbered = [(reader.line_num, r) for r in reader]
    rows = [r for _, r in numbered if any(c.strip() for c in r)]
    line_of = [n for n, r in numbered if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"list file {path} is empty")
    header = [c.strip().lower() for c in rows[0]]
    p_col = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
    l_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    s_col = header.index("split") if "split" in header else None
    if p_col is not None and l_col is not None:
        rows, line_of = rows[1:], line_of[1:]
    elif p_col is None and l_col is None:
        # no header: path, label[, split]
        p_col, l_col = 0, 1
        third = {r[2].strip().lower() for r in rows if len(r) > 2}
        s_col = 2 if third and third <= {"train", "test", *VAL_NAMES} else None
    else:
        raise DataError(f"list file {path}: header {rows[0]} needs both a path column "
                        f"({'/'.join(PATH_COLUMNS)}) and a label column "
                        f"({'/'.join(LABEL_COLUMNS)})")
    root = path.parent
    entries, first_line, absolute, outside = [], {}, 0, 0
    for line, row in zip(line_of, rows, strict=True):
        if len(row) <= max(p_col, l_col, s_col or 0):
            raise DataError(f"list file {path}, line {line}: expected a path and a label; "
                            f"got {row}")
        file = Path(row[p_col].strip())
        rel = file if not file.is_absolute() else Path(os.path.relpath(file, root))
        split = row[s_col].strip().lower() if s_col is not None else ""
        if split in VAL_NAMES:
            split = "val"
        if split not in ("", "train", "val", "test"):
            raise DataError(f"list file {path}, line {line}: split must be train, val or "
                            f"test; got {row[s_col]!r}")
        label = row[l_col].strip()
        absolute += file.is_absolute()
        outside += os.path.normpath(rel).split(os.sep)[0] == ".."
        real = os.path.realpath(root / rel)
        seen_line, seen_label = first_line.setdefault(real, (line, label))
        if seen_label != label:
            raise DataError(f"list file {path}, line {line}: {row[p_col].strip()} is listed "
                            f"on line {seen_line} with label {seen_label!r} and here with "
                            f"{label!r}; a path takes one label")
        entries.append((rel.as_posix(), label, split))
    for rel, _, _ in entries:
        if not skip_bad and not (root / rel).is_file():
            raise DataError(f"list file {path}: image {root / rel} does not exist "
                            f"(--skip-bad-images leaves such images out)")
    names = {e[1] for e in entries}
    numeric = all(n.lstrip("-").isdigit() for n in names)
    classes = sorted(names, key=int) if numeric else sorted(names)
    labels = np.asarray([classes.index(e[1]) for e in entries], dtype=np.int64)
    src = FileSource(root, [e[0] for e in entries], labels)
    splits = np.asarray([e[2] for e in entries])
    name = f"list:{path}"
    notes = {k: v for k, v in (("absolute_paths", absolute),
                               ("paths_outside_list_folder", outside)) if v}
    if (splits == "").all():
        idx_tr, idx_te = stratified_indices(labels, test_fraction, seed)
        return Dataset(name, src.take(idx_tr), src.take(idx_te), classes, source=str(path),
                       layout="list file (split by seed)", image_size=image_size,
                       notes={"test_fraction": test_fraction, "split_seed": seed, **notes})
    if (splits == "").any():
        raise DataError(f"list file {path}: the split column is empty on some rows")
    parts = {s: src.take(np.flatnonzero(splits == s)) for s in ("train", "val", "test")
             if (splits == s).any()}
    if "train" not in parts or len(parts) < 2:
        raise DataError(f"list file {path}: the split column needs train rows and test "
                        f"(or val) rows")
    if "test" not in parts:
        parts["test"] = parts.pop("val")
        layout = "list file (train, val as the evaluation split)"
    else:
        layout = "list file (train, val, test)" if "val" in parts else "list file (train, test)"
    return Dataset(name, parts["train"], parts["test"], classes, val=parts.get("val"),
                   source=str(path), layout=layout, image_size=image_size, notes=notes)
