"""Run a study (:mod:`featbench.studies`) row by row, resumably, into one folder.

Each finished row is a run record in ``<out>/runs/`` carrying the row's label,
family and reference; a row whose record is already there (same row, dataset,
parameters and seed, no error) is skipped, so an interrupted study resumes where it
stopped and cached features are reused. Tables, plots and the HTML report are then
drawn from the records alone (:mod:`featbench.report`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache import make_key
from .classifiers import large_fit_placement
from .classifiers.tuning import BOUNDS, MAX_EXTENSIONS
from .datasets import Dataset
from .extraction import plan
from .features import split_spec
from .plan import classifier_setup
from .provenance import canonical, package_versions
from .results import load_records, tuning_note
from .runner import run_benchmark
from .splits import tuning_split
from .store import FeatureStore
from .studies import Row, Study

#: parameters that say where a row runs, not what it computes: not part of its key
PLACEMENT = ("device", "batch_size")


def row_key(row: Row, ds: Dataset, params: dict[str, Any], seed: int, quick: bool,
            extend_grid: bool = True) -> str:
    """Everything that determines a row's number, hashed.

    The row, the mode, the seed and, for each extractor, the key of its stored
    features less the split's data (class, resolved parameters and precision,
    featbench version and the extractor's code, library versions, the view of the
    images, the data the codebook was fitted on, and for torch extractors the
    precision and device type resolved here), plus the data's fingerprint and, for
    the classifier, its resolved parameters and grid, the solver and device type a
    large fit takes on this machine (:func:`~featbench.classifiers.large_fit_placement`:
    ``solver="auto"`` is scikit-learn on a CPU, torch on CUDA), the tuning rules and the
    code of :mod:`featbench.classifiers`. Other placement (device index, batch size)
    stays out.
    """
    params = {name: {k: v for k, v in values.items() if k not in PLACEMENT}
              for name, values in params.items()}
    parts = {}
    split = tuning_split(ds, seed)
    for name in split_spec(row.features):
        p = plan(name, ds, params.get(name, {}), seed, split)
        base = {k: v for k, v in p.base.items() if k != "params"}
        base["params"] = {k: v for k, v in p.params.items() if k not in PLACEMENT}
        parts[name] = make_key(**base, fit=p.fit_key)
    pipe, grid = classifier_setup(row.classifier, params.get(row.classifier, {}), seed)
    clf = canonical({k: v for k, v in pipe.named_steps["clf"].get_params(deep=False).items()
                     if k not in PLACEMENT})
    # solver "auto" is scikit-learn on one machine and torch on CUDA on another
    placement = large_fit_placement(pipe.named_steps["clf"])
    blob = json.dumps({"row": row.id, "features": row.features, "parts": parts,
                       "classifier": row.classifier, "clf_params": clf, "grid": grid,
                       **({"placement": placement} if placement else {}),
                       "extend_grid": extend_grid, "max_extensions": MAX_EXTENSIONS,
                       "bounds": BOUNDS, "tuning_code": classifier_code_hash(),
                       "versions": package_versions(), "data": ds.fingerprint, "seed": seed,
                       "quick": quick}, sort_keys=True, default=repr)
    return hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()


def classifier_code_hash() -> str:
    """Hash of the tuning protocol and the classifiers (featbench.classifiers, runner)."""
    import importlib

    h = hashlib.sha256()
    for name in ("classifiers", "classifiers.linear_svm", "classifiers.torch_logreg",
                 "classifiers.tuning", "runner"):
        module = importlib.import_module(f"featbench.{name}")
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def finished_keys(out_dir: Path) -> set[str]:
    """Keys of the rows with an error-free record in ``out_dir/runs``."""
    runs = Path(out_dir) / "runs"
    if not runs.is_dir() or not any(runs.glob("*.json")):
        return set()
    return {r["study"]["key"] for r in load_records([runs])
            if r.get("study", {}).get("key") and not r.get("error")}


def unavailable(row: Row) -> str | None:
    """Why a row cannot run here (weights it may only use when present), else None."""
    if not row.only_if_present or not row.features.startswith("cnn:"):
        return None
    from .features.cnn import LITE_MODELS, weights_file

    model = row.features.split(":", 1)[1]
    if model in LITE_MODELS:
        return None
    from torchvision.models import get_model_weights

    params = row.params.get(row.features, {})
    if params.get("weights_path"):
        return None if Path(params["weights_path"]).is_file() else \
            f"weights file {params['weights_path']} not found"
    name = params.get("weights", "DEFAULT")
    try:
        enum = get_model_weights(model)
        w = enum.DEFAULT if str(name).upper() == "DEFAULT" else enum[str(name)]
    except (KeyError, ValueError):
        return f"no weights {name!r} for {model}"
    target = weights_file(w)
    return None if target.is_file() else f"{w} not present at {target}"


def run_study(study: Study, ds: Dataset, out_dir: str | Path, *, quick: bool = False,
              rows: list[Row] | None = None, seed: int = 0, store: FeatureStore | None = None,
              n_jobs: int | None = None, echo: Callable[[str], None] = print,
              extend_grid: bool = True) -> tuple[list[dict], set[str]]:
    """Run the rows of ``study`` not finished yet in ``out_dir``.

    Returns the new records and the keys of every row of the study for this
    dataset, seed and mode (also the rows ``rows`` leaves out), which select the
    records a report of this plan shows.
    """
    out_dir = Path(out_dir)
    done = finished_keys(out_dir)
    records = []
    todo = rows if rows is not None else list(study.rows)
    by_id = {r.id: r for r in study.rows} | {r.id: r for r in todo}  # todo's own params
    keys = {i: row_key(r, ds, r.params_for(quick), seed, quick, extend_grid)
            for i, r in by_id.items()}
    planned = set(keys.values())
    ids = [r.id for r in study.rows]
    same_data = ds.name == study.dataset
    if not same_data:
        echo(f"note: {ds.name} is not the study's dataset ({study.dataset}): "
             f"its published references are left out")
    for i, row in enumerate(todo, 1):
        params = row.params_for(quick)
        key = keys[row.id]
        tag = f"[{i}/{len(todo)}] {row.id}"
        if key in done:
            echo(f"{tag}: done earlier, skipped")
            continue
        why = unavailable(row)
        if why:
            echo(f"{tag}: skipped ({why})")
            continue
        echo(f"{tag}: running")
        order = ids.index(row.id) if row.id in ids else len(ids) + i
        reference = row.reference.to_dict() if row.reference and same_data else None
        annotate = {"study": {"name": study.name, "key": key, "row": row.id,
                              "label": row.label_for(quick), "order": order,
                              "family": row.family, "quick": quick, "reference": reference}}
        recs = run_benchmark(ds, [row.features], [row.classifier], params=params, seed=seed,
                             store=store or FeatureStore(), results_dir=out_dir, n_jobs=n_jobs,
                             annotate=annotate, extend_grid=extend_grid)
        for rec in recs:
            acc = rec.get("test_acc")
            flags = tuning_note(rec.get("classifier", {}))
            echo(f"{tag}: " + (f"error: {rec['error']}" if rec.get("error")
                               else f"test {acc:.4f}, extract {rec['timings']['extract_s']:.0f} s,"
                                    f" fit {rec['timings']['fit_s']:.0f} s"
                                    + (f" (tuning: {flags})" if flags else "")))
        records += recs
    return records, planned
