"""Run a study (:mod:`featbench.studies`) row by row, resumably, into one folder.

Each finished row is a run record in ``<out>/runs/`` carrying the row's label,
family and reference; a row whose record is already there (same row, dataset,
parameters and seed, no error) is skipped, so an interrupted study resumes where it
stopped and cached features are reused. Tables, plots and the HTML report are then
drawn from the records alone (:mod:`featbench.report`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .datasets import Dataset
from .keys import classifier_code_hash, pair_key  # noqa: F401 - re-exported
from .results import load_records, tuning_note
from .runner import run_benchmark
from .store import FeatureStore
from .studies import Row, Study


def row_key(row: Row, ds: Dataset, params: dict[str, Any], seed: int, quick: bool,
            extend_grid: bool = True) -> str:
    """Everything that determines a study row's number, hashed: :func:`featbench.keys.pair_key`
    of its features and classifier, with the row's id, the mode (``quick``) and its
    protocol (few-shot K and draws)."""
    proto = row.protocol()
    return pair_key(ds, row.features, row.classifier, params, seed, extend_grid=extend_grid,
                    extra={"row": row.id, "quick": quick, **({"protocol": proto} if proto
                                                             else {})})


def finished_keys(out_dir: Path) -> set[str]:
    """Keys of the rows with an error-free record in ``out_dir/runs``."""
    runs = Path(out_dir) / "runs"
    if not runs.is_dir() or not any(runs.glob("*.json")):
        return set()
    return {r["study"]["key"] for r in load_records([runs])
            if r.get("study", {}).get("key") and not r.get("error")}


def unavailable(row: Row) -> str | None:
    """Why a row cannot run here (weights it may only use when present), else None."""
    from .features import split_spec

    if not row.only_if_present:
        return None
    from .errors import FeatbenchError
    from .models import missing_weights, parse
    from .models.registry import FAMILIES

    for name in split_spec(row.features):
        family, _, arg = name.partition(":")
        if family not in FAMILIES:
            continue
        try:
            model, implied = parse(family, arg)
            p = {**implied, **row.params.get(name, {})}
            why = missing_weights(model, p.get("weights", "DEFAULT"), p.get("weights_path"),
                                  p.get("arch"))
        except FeatbenchError as exc:
            why = str(exc)
        if why:
            return why
    return None


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
                             annotate=annotate, extend_grid=extend_grid,
                             shots=[row.shots] if row.shots else None,
                             n_shot_seeds=row.shot_seeds)
        for rec in recs:
            acc = rec.get("test_acc")
            flags = tuning_note(rec.get("classifier", {}))
            echo(f"{tag}: " + (f"error: {rec['error']}" if rec.get("error")
                               else f"test {acc:.4f}, extract {rec['timings']['extract_s']:.0f} s,"
                                    f" fit {rec['timings']['fit_s']:.0f} s"
                                    + (f" (tuning: {flags})" if flags else "")))
        records += recs
    return records, planned


def draw_pictures(study: Study, ds: Dataset, out_dir: str | Path, *, quick: bool = False,
                  seed: int = 0, store: FeatureStore | None = None,
                  echo: Callable[[str], None] = print, extend_grid: bool = True) -> list[Path]:
    """Draw the study's pictures (:attr:`Study.pictures`) into ``out_dir/pictures``.

    A picture is drawn once every row it shows is finished in ``out_dir``: its features
    and fitted extractors are then in the store (nothing is extracted again while the
    store holds them); others are skipped with a line naming the rows still missing.
    """
    from .show import render_show
    from .studies import picture_params

    done = finished_keys(Path(out_dir))
    by_id = {r.id: r for r in study.rows}
    store = store or FeatureStore()
    written: list[Path] = []
    for pic in study.pictures:
        rows = [by_id[i] for i in pic.rows]
        missing = [r.id for r in rows if row_key(r, ds, r.params_for(quick), seed, quick,
                                                 extend_grid) not in done]
        if missing:
            echo(f"picture {pic.figure}: skipped (rows not finished: {', '.join(missing)})")
            continue
        specs = list(dict.fromkeys(r.features for r in rows))
        if pic.figure == "confusion":  # one matrix per row, with the row's classifier
            for r in rows:
                written += render_show(ds, ["confusion"], [r.features], r.params_for(quick),
                                       store, Path(out_dir) / "pictures", seed=seed,
                                       echo=echo, classifier=r.classifier)
        else:
            written += render_show(ds, [pic.figure], specs, picture_params(study, pic, quick),
                                   store, Path(out_dir) / "pictures", seed=seed, echo=echo)
    return written
