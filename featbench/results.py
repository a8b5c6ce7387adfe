"""Run records (one JSON file per feature x classifier pair), their common fields, and
tables built from them.

A record is the source of truth; CSV, Markdown and JSON tables are views of a set
of records with one fixed column order (:data:`COLUMNS`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import re
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, OutputError

#: Table columns, in order.
COLUMNS = [
    "dataset", "features", "feature_params", "precision", "classifier", "protocol",
    "feature_dim",
    "n_train", "n_val",
    "n_test", "val_acc", "test_acc", "val_mean_class_acc", "test_mean_class_acc",
    "test_acc_std", "test_top5_acc", "extract_s", "fit_s", "predict_s", "load", "hyperparams",
    "tuning", "seed", "error",
]
#: Parameters that say where an extractor runs, not what it computes.
PLACEMENT = ("device", "batch_size")
#: Columns printed in the terminal.
SHORT_COLUMNS = ["features", "feature_params", "precision", "classifier", "protocol",
                 "feature_dim", "val_acc", "test_acc", "test_acc_std", "test_mean_class_acc",
                 "extract_s", "fit_s", "load", "hyperparams", "tuning", "error"]


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")[:80] or "x"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename.

    A file system error (disk full, read-only folder) is an :class:`OutputError`
    naming ``path``.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=repr)
            f.write("\n")
        # mkstemp makes 0600; records are shared like tables: the mode open() would give
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def load_records(paths: Iterable[str | Path]) -> list[dict]:
    """Run records from JSON files and folders (searched recursively), sorted by time.

    A file that cannot be read (not UTF-8, not JSON, unreadable) is skipped with a
    one-line warning naming it (a :class:`DataError` naming it when nothing else is
    left); JSON files that are not run records are skipped.
    """
    paths = list(paths)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"no run records at {p} (expected a .json file or a folder)")
    records, unreadable = [], []
    for f in files:
        try:
            rec = json.loads(f.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            unreadable.append(f"cannot read run record {f}: not UTF-8 text (byte "
                              f"{exc.object[exc.start]:#04x} at offset {exc.start})")
            continue
        except json.JSONDecodeError as exc:
            unreadable.append(f"cannot read run record {f}: not JSON ({exc})")
            continue
        except OSError as exc:
            unreadable.append(f"cannot read run record {f}: {exc.strerror or exc}")
            continue
        if isinstance(rec, dict) and "features" in rec and "classifier" in rec:
            records.append(rec)
    if not records:
        if unreadable:
            raise DataError(unreadable[0] + (f" (and {len(unreadable) - 1} more)"
                                             if len(unreadable) > 1 else ""))
        raise DataError(f"no run records found in {', '.join(map(str, paths))}")
    import warnings

    for message in unreadable:
        warnings.warn(f"{message}; skipped", UserWarning, stacklevel=2)
    return sorted(records, key=lambda r: r.get("created", ""))


def newest_per_key(records: list[dict]) -> list[dict]:
    """The newest record of each pair key (records without one are all kept), in time
    order: a rerun's records replace those of the same pair."""
    newest: dict[str, dict] = {}
    for rec in sorted(records, key=lambda r: r.get("created", "")):
        newest[rec.get("pair_key") or rec.get("run_id") or str(id(rec))] = rec
    return sorted(newest.values(), key=lambda r: r.get("created", ""))


@functools.cache
def _extractor_class(name: str) -> type | None:
    """The class of extractor ``name`` (None for a name this version does not know)."""
    from .features import build_extractor

    try:
        return type(build_extractor(name))
    except Exception:  # noqa: BLE001 - an extractor this version does not know
        return None


def changed_params(params: dict[str, dict[str, Any]],
                   defaults: dict[str, dict[str, Any]] | None = None) -> str:
    """``name.param=value`` for every extractor parameter that differs from its default.

    ``defaults`` are the defaults stored in the record (those of the version that
    made it); records written before they were stored are compared with this
    version's defaults, and their parameters are marked with ``?`` where that
    comparison may have drifted.
    """
    legacy = defaults is None
    if legacy:
        from .features import build_extractor

        defaults = {}
        for name in params:
            try:
                defaults[name] = build_extractor(name).get_params(deep=False)
            except Exception:  # an extractor this version does not know
                defaults[name] = {}
    out = []
    for name, values in params.items():
        own = defaults.get(name, {})
        for key, value in sorted(values.items()):
            if key in PLACEMENT and key in getattr(_extractor_class(name), "_cache_exclude",
                                                   PLACEMENT):
                continue  # where it ran, not what it computed (see the record's device)
            default = own.get(key)
            if isinstance(default, tuple):
                default = list(default)
            if key not in own or value != default:
                shown = ",".join(map(str, value)) if isinstance(value, list) else value
                out.append(f"{name}.{key}={shown}")
    return " ".join(out) + (" (?)" if legacy and out else "")


def protocol(rec: dict) -> str:
    """How the record's classifier was trained and scored: ``few-shot K=5 (3 seeds)``,
    ``k-NN``, ``end to end`` (a ConvNet's own head), or ``""`` for a classifier tuned
    and fitted on the whole training split (the usual linear probe)."""
    if rec.get("few_shot"):
        return rec["few_shot"].get("label", "few-shot")
    name = (rec.get("classifier") or {}).get("name")
    return {"knn": "k-NN", "own-head": "end to end"}.get(name, "")


def tuning_note(clf: dict) -> str:
    """Short flags of how the chosen value was found: ``edge`` when it is still on an
    edge of the values tried, ``iter-limit`` when its solver stopped at the iteration
    limit, ``+N`` for N values added by extending the grid."""
    flags = []
    added = sum(1 for s in clf.get("val_scores", []) if s.get("extended"))
    if added:
        flags.append(f"+{added}")
    if clf.get("edge"):
        flags.append("edge")
    if clf.get("hit_iteration_limit"):
        flags.append("iter-limit")
    return ",".join(flags)


def precision(rec: dict) -> str:
    """The arithmetic the record's features were computed in, as resolved on the machine
    that made them: ``fp32``, ``bf16 (cuda)``, ... (distinct values of the spec's torch
    extractors joined with ``+``; ``""`` when none of them is a torch extractor).

    Records written before the features' parts held it: the runtime of the stored
    shards (``device.precision``), without the device type.
    """
    parts = rec.get("features", {}).get("parts") or []
    seen = []
    for part in parts:
        if part.get("precision"):
            device = part.get("device_type")
            text = part["precision"] + (f" ({device})" if device and device != "cpu" else "")
            if text not in seen:
                seen.append(text)
    if seen:
        return "+".join(seen)
    return str(rec.get("device", {}).get("precision") or "")


def solver_note(clf: dict) -> str:
    """``solver=torch`` when the solver a classifier fitted with differs from the one
    ``solver="auto"`` picks on the CPU (stored in the record's placement), else ``""``."""
    place = clf.get("placement") or {}
    solver, default = place.get("solver"), place.get("default_solver")
    return f"solver={solver}" if solver and default and solver != default else ""


def hyperparams(clf: dict) -> str:
    """The chosen grid values, then the classifier parameters the run set away from the
    registered classifier's defaults (stored in the record), e.g. ``C=0.01 max_iter=100``,
    then the solver where it is not the CPU's default (:func:`solver_note`)."""
    chosen = clf.get("chosen") or {}
    out = [f"{k}={v}" for k, v in sorted(chosen.items())]
    defaults = clf.get("defaults")
    if defaults is not None:
        for key, value in sorted((clf.get("params") or {}).items()):
            if key in chosen or key == "device" or key not in defaults:
                continue
            default = defaults[key]
            if isinstance(default, tuple):
                default = list(default)
            if value != default:
                out.append(f"{key}={value}")
    note = solver_note(clf)
    if note and not any(o.startswith("solver=") for o in out):
        out.append(note)
    return " ".join(out)


def under_load(rec: dict) -> str:
    """``"5.3 on 2 cores"`` when the machine's 1-minute load average at the start or end of
    the pair's fit exceeded the cores featbench could use by more than half a core (its
    timings then measure a busy machine as much as the method), else ``""``."""
    load = rec.get("load") or {}
    cores = load.get("cores")
    peaks = [a[0] for a in (load.get("fit_start"), load.get("fit_end")) if a]
    if not cores or not peaks or max(peaks) <= cores + 0.5:
        return ""
    return f"{max(peaks):.1f} on {cores} cores"


def record_to_row(rec: dict) -> dict:
    """One table row (the :data:`COLUMNS`) from a run record."""
    ds = rec.get("dataset", {})
    clf = rec.get("classifier", {})
    t = rec.get("timings", {})
    feats = rec.get("features", {})
    return {
        "dataset": ds.get("name"),
        "features": feats.get("spec"),
        "feature_params": changed_params(feats.get("params", {}), feats.get("defaults")),
        "precision": precision(rec),
        "classifier": clf.get("name"),
        "protocol": protocol(rec),
        "feature_dim": rec.get("feature_dim"),
        "n_train": ds.get("n_train_fit"),
        "n_val": ds.get("n_val"),
        "n_test": ds.get("n_test"),
        "val_acc": rec.get("val_acc"),
        "test_acc": rec.get("test_acc"),
        "val_mean_class_acc": rec.get("val_mean_class_acc"),
        "test_mean_class_acc": rec.get("test_mean_class_acc"),
        "test_acc_std": (rec.get("few_shot") or {}).get("test_acc_std"),
        "test_top5_acc": rec.get("test_top5_acc"),
        "extract_s": t.get("extract_s"),
        "fit_s": t.get("fit_s"),
        "predict_s": t.get("predict_s"),
        "load": under_load(rec),
        "hyperparams": hyperparams(clf),
        "tuning": tuning_note(clf),
        "seed": rec.get("seed"),
        "error": rec.get("error") or "",
    }


def make_table(records: Iterable[dict], per_class: bool = False) -> pd.DataFrame:
    """A table with the :data:`COLUMNS`, one row per record; with ``per_class``, one
    more column per class (``acc:<class>``, each class's test accuracy, from the
    record's confusion matrix)."""
    records = list(records)
    df = pd.DataFrame([record_to_row(r) for r in records], columns=COLUMNS)
    if per_class:
        from .metrics import per_class_accuracy

        for i, rec in enumerate(records):
            classes = rec.get("dataset", {}).get("classes") or []
            accs = per_class_accuracy(rec["confusion"]) if rec.get("confusion") else []
            for k, acc in enumerate(accs):
                name = str(classes[k]) if k < len(classes) else str(k)
                df.loc[i, f"acc:{name}"] = acc
    return df


#: Columns of accuracies (or differences of accuracies) besides ``*_acc``: 4 decimals.
ACCURACY_COLUMNS = ("difference",)


def format_cell(column: str, value: Any) -> str:
    """One table cell as text, by what its column holds.

    Missing values (None, NaN, empty text) are ``-``; accuracies (``*_acc``,
    ``difference``) have 4 decimals; seconds (``*_s``) 2 decimals below 10 s, else
    1; rates (``*_per_s``) 1 decimal; whole numbers (counts, dimensions) none.
    """
    if value is None or isinstance(value, str) and value == "":
        return "-"
    if isinstance(value, str):
        return value
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "-"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return str(value)
    v = float(value)
    if column.endswith(("_acc", "_acc_std")) or column.startswith("acc:") or \
            column in ACCURACY_COLUMNS:
        return f"{v:.4f}"
    if column.endswith("_per_s"):
        return f"{v:.1f}"
    if column.endswith("_s"):
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    if v.is_integer():
        return str(int(v))
    return f"{v:g}"


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            and not np.isnan(value))


def format_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A plain-text table for the terminal: the one format of ``run``, ``table`` and
    ``reproduce`` (see :func:`format_cell`).

    ``columns`` defaults to :data:`SHORT_COLUMNS`; the ``precision``, ``load``,
    ``tuning`` and ``error`` columns are left out when no row has a torch extractor, a
    busy machine (:func:`under_load`), a flag or an error, and long messages are cut
    (the CLI prints them in full).
    """
    view = df[[c for c in (columns or SHORT_COLUMNS) if c in df.columns]].copy()
    # nothing to say
    for column in ("precision", "load", "tuning", "protocol", "test_acc_std"):
        if column in view and not view[column].fillna("").astype(str).astype(bool).any():
            view = view.drop(columns=column)
    if "error" in view:
        errors = view["error"].astype(object).where(view["error"].notna(), "").astype(str)
        if not errors.astype(bool).any():
            view = view.drop(columns="error")
        else:  # keep the table narrow
            view["error"] = [e if len(e) <= 50 else e[:47] + "..." for e in errors]
    return _tabulate(view, "simple")


def _tabulate(df: pd.DataFrame, tablefmt: str) -> str:
    """``df`` through :func:`format_cell`; numbers right-aligned, text left-aligned."""
    from tabulate import tabulate

    cells = [[format_cell(c, v) for c, v in zip(df.columns, row, strict=True)]
             for row in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) or df[c].map(_is_number).any()
               for c in df.columns]
    return tabulate(cells, headers=list(df.columns), tablefmt=tablefmt, disable_numparse=True,
                    colalign=["right" if n else "left" for n in numeric] or None)


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV, Markdown (``.md``, cells as :func:`format_table`'s) or JSON
    (``.json``) by extension.

    A file system error (disk full, read-only folder) is an :class:`OutputError`
    naming ``path``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".md", ".markdown", ".json"):
        raise DataError(f"cannot write a table to {path}: use a .csv, .md or .json file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            df.to_csv(path, index=False)
        elif suffix == ".json":
            path.write_text(df.to_json(orient="records", indent=2) + "\n")
        else:
            path.write_text(_tabulate(df, "pipe") + "\n")  # cells as in the terminal
    except OSError as exc:
        raise OutputError(f"cannot write the table to {path}: {exc.strerror or exc}") from exc
    return path


def device_info() -> dict[str, Any]:
    """Where the run happened (CPU only for the hand-crafted extractors)."""
    return {"device": "cpu", "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def confusion_matrix(y_true, y_pred, n_classes: int) -> list[list[int]]:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m.tolist()


def new_record(ds, spec: str, clf_name: str, seed: int) -> dict:
    """The fields every record has, before results are in."""
    from .provenance import package_versions

    now = _dt.datetime.now(_dt.timezone.utc)
    run_id = (f"{now:%Y%m%dT%H%M%S}-{slug(ds.name)}-{slug(spec)}-{slug(clf_name)}-"
              f"{uuid.uuid4().hex[:6]}")
    return {
        "schema": 1,
        "run_id": run_id,
        "created": now.isoformat(),
        "dataset": ds.summary(),
        "features": {"spec": spec},
        "classifier": {"name": clf_name},
        "seed": seed,
        "versions": dict(package_versions()),
        "device": device_info(),
        "error": None,
    }
