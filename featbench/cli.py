"""The ``featbench`` command line (click).

Library errors become one-line messages here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import click

from . import __version__
from .errors import FeatbenchError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@contextlib.contextmanager
def _boundary(interrupted: Callable[[], str]):
    """Library errors as one-line messages; Ctrl-C says what was kept and exits 130."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: {interrupted()}", err=True)
        sys.exit(130)
    except (FeatbenchError, ValueError, TypeError, OSError) as exc:
        raise _fail(exc) from None


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="featbench")
def main() -> None:
    """Benchmark hand-crafted image features against ConvNet embeddings.

    Extract features (raw pixels, color histograms, HOG, ...) from an image
    dataset, fit linear classifiers tuned on a validation split, and tabulate
    accuracy and timings. Start with: featbench run --features hog --clf linear-svm
    """


def _split_multi(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def dataset_options(fn):
    """The dataset, subset, parameter and device options ``run`` and ``extract`` share."""
    options = [
        click.option("-d", "--dataset", default="digits", show_default=True,
                     help="digits, cifar10, folder:PATH or list:FILE (see `featbench list "
                          "datasets`)."),
        click.option("-f", "--features", multiple=True, default=("hog",), show_default=True,
                     help="Feature spec; repeat or comma-separate for several; join with + "
                          "to concatenate (hog+color-hist)."),
        click.option("-p", "--param", "params", multiple=True, metavar="NAME.PARAM=VALUE",
                     help="Set a parameter of a feature or classifier, e.g. -p "
                          "hog.block_norm=none -p linear-svm.C=0.01 (a comma list becomes "
                          "the tuning grid)."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Data root for cifar10 [default: $FEATBENCH_DATA or the cache "
                          "folder]."),
        click.option("--download", is_flag=True, help="Download CIFAR-10 when it is not found."),
        click.option("--image-size", type=click.IntRange(min=8),
                     help="Side the hand-crafted extractors see (whole image resized) "
                          "[default: the images' own size when they share one up to 128 px, "
                          "else 128]. CNNs always see their own resolution."),
        click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True,
                                                              max_open=True),
                     default=0.25, show_default=True,
                     help="Test share for datasets without a test split (digits, flat "
                          "folders, list files)."),
        click.option("--train-size", type=click.IntRange(min=1),
                     help="Seeded, stratified subset of the training images."),
        click.option("--test-size", type=click.IntRange(min=1),
                     help="Seeded, stratified subset of the test images."),
        click.option("--seed", default=0, show_default=True,
                     help="Seed of every random choice."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Cache folder; features are stored in CACHE_DIR/store "
                          "[default: $FEATBENCH_CACHE or ~/.cache/featbench]."),
        click.option("--shard-size", type=click.IntRange(min=1), default=1024,
                     show_default=True,
                     help="Images per stored feature shard (the unit of resuming)."),
        click.option("--feature-dtype", type=click.Choice(["float32", "float16"]),
                     default="float32", show_default=True, help="Stored feature precision."),
        click.option("--skip-bad-images", is_flag=True,
                     help="Leave out images that cannot be decoded (listed in the record) "
                          "instead of stopping at the first one."),
        click.option("--device", default=None, metavar="auto|cpu|cuda[:N]|mps",
                     help="Torch device of the extractors that use one (cnn:*, "
                          "kmeans-patches) [default: auto = CUDA, then MPS, then CPU]."),
        click.option("-j", "--jobs", type=click.IntRange(min=1),
                     help="Worker threads (decoding, extraction, fits) [default: all cores]."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _load(opts: dict, parsed: dict, feature_specs: list[str], classifiers: list[str]):
    """Check the whole plan, then list the dataset; echo its first line."""
    from .datasets import load_dataset
    from .plan import validate_plan

    if opts["device"] is not None:
        _set_device(parsed, feature_specs, opts["device"])
    validate_plan(feature_specs, classifiers, parsed)
    ds = load_dataset(opts["dataset"], data_dir=opts["data_dir"], download=opts["download"],
                      image_size=opts["image_size"], test_fraction=opts["test_fraction"],
                      train_size=opts["train_size"], test_size=opts["test_size"],
                      seed=opts["seed"])
    click.echo(_first_line(ds, feature_specs, parsed), err=True)
    return ds


def _first_line(ds, feature_specs: list[str], parsed: dict) -> str:
    """Layout, images per split and the resolution each extractor sees."""
    from .extraction import view_for
    from .features import build_extractor, set_params_checked, split_spec

    views = {}
    for spec in feature_specs:
        for name in split_spec(spec):
            est = set_params_checked(build_extractor(name), parsed.get(name, {}), name)
            text = view_for(est, ds).text(ds.image_scan()["shared_size"])
            views.setdefault(text, []).append(name)
    seen = "; ".join(f"{', '.join(names)}: {text}" for text, names in views.items())
    return f"{ds.describe()}; {seen}"


def _store(cache_dir: Path | None):
    from .store import FeatureStore

    return FeatureStore(None if cache_dir is None else Path(cache_dir) / "store")


@main.command(context_settings=CONTEXT)
@dataset_options
@click.option("-c", "--clf", multiple=True, default=("linear-svm",), show_default=True,
              help="Classifier; repeat or comma-separate for several.")
@click.option("--val-size", type=float,
              help="Validation images held out of train when the dataset has no val/ split "
                   "(count, or fraction < 1) [default: min(1000, 10% of train)].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table here (.csv, .md or .json).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True,
              help="Run records go to RESULTS_DIR/runs/.")
@click.option("--no-cache", is_flag=True,
              help="Recompute features in a temporary store; reuse and keep nothing.")
def run(clf, val_size, output, results_dir, no_cache, **opts) -> None:
    """Run every feature x classifier pair on a dataset and print the table.

    Each pair is written as one JSON record under RESULTS_DIR/runs/ as soon as it
    finishes; features go to the feature store, so a second identical run (or one
    after `featbench extract`) does not recompute them.
    """
    from .parallel import set_options
    from .params import parse_params
    from .results import format_table, make_table, write_table
    from .runner import run_benchmark

    set_options(n_jobs=opts["jobs"], progress=False if opts["quiet"] else None)
    feature_specs, classifiers = _split_multi(opts["features"]), _split_multi(clf)
    if val_size is not None and val_size >= 1:
        if val_size != int(val_size):
            raise click.BadParameter("a count (integer >= 1) or a fraction < 1",
                                     param_hint="--val-size")
        val_size = int(val_size)
    if output is not None and output.suffix.lower() not in (".csv", ".md", ".json"):
        raise click.BadParameter("use a .csv, .md or .json file name", param_hint="--output")
    done: list[dict] = []
    def kept() -> str:
        return (f"{len(done)} finished pair(s) kept in {results_dir}/runs; finished feature "
                f"shards are kept in the store")

    with _boundary(kept):
        parsed = parse_params(opts["params"])
        ds = _load(opts, parsed, feature_specs, classifiers)
        run_benchmark(ds, feature_specs, classifiers, params=parsed, seed=opts["seed"],
                      val_size=val_size, store=None if no_cache else _store(opts["cache_dir"]),
                      results_dir=results_dir, n_jobs=opts["jobs"], on_record=done.append,
                      shard_size=opts["shard_size"], skip_bad=opts["skip_bad_images"],
                      dtype=opts["feature_dtype"])
    table = make_table(done)
    click.echo(format_table(table))
    bad = sorted({f for rec in done for f in rec.get("bad_images", [])})
    if bad:
        click.echo(f"skipped {len(bad)} image(s) that could not be decoded:", err=True)
        for line in bad:
            click.echo(f"  {line}", err=True)
    for rec in done:
        if rec.get("error"):
            click.echo(f"error in {rec['features']['spec']} + {rec['classifier']['name']}: "
                       f"{rec['error']}", err=True)
    if output is not None:
        write_table(table, output)
        click.echo(f"table written to {output}", err=True)
    failed = [r for r in done if r.get("error")]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(done)} pair(s) failed (see the error column)")


@main.command(context_settings=CONTEXT)
@dataset_options
def extract(**opts) -> None:
    """Compute and store the features of a dataset, without fitting any classifier.

    What to run once on a large dataset before sweeping classifiers: `run` and
    `reproduce` with the same dataset and parameters reuse what it stored. Shards
    already in the store are skipped, so an interrupted extract resumes.
    """
    import time

    from .extraction import extract_features
    from .parallel import set_options
    from .params import parse_params

    set_options(n_jobs=opts["jobs"], progress=False if opts["quiet"] else None)
    feature_specs = _split_multi(opts["features"])
    store = _store(opts["cache_dir"])
    with _boundary(lambda: "finished shards are kept; run the same command to resume"):
        parsed = parse_params(opts["params"])
        from .classifiers import CLASSIFIERS

        # a run's command line works here too: its classifier parameters are not used
        parsed = {k: v for k, v in parsed.items() if k not in CLASSIFIERS}
        ds = _load(opts, parsed, feature_specs, [])
        for spec in feature_specs:
            t0 = time.perf_counter()
            res = extract_features(spec, ds, parsed, store, seed=opts["seed"],
                                   shard_size=opts["shard_size"],
                                   skip_bad=opts["skip_bad_images"],
                                   dtype=opts["feature_dtype"], n_workers=opts["jobs"],
                                   load=False)
            wall = time.perf_counter() - t0
            for part in res.parts:
                sh = part["shards"]
                computed = sum(v["computed"] for v in sh.values())
                total = sum(v["n"] for v in sh.values())
                n_img = sum(len(src) for src in ds.splits().values())
                click.echo(f"{part['name']}: {computed} of {total} shard(s) computed, "
                           f"{total - computed} already stored; {n_img} images",
                           err=True)
            click.echo(f"{spec}: {wall:.1f} s wall", err=True)
            if res.bad_files:
                click.echo(f"skipped {len(res.bad_files)} image(s) that could not be decoded:",
                           err=True)
                for line in res.bad_files:
                    click.echo(f"  {line}", err=True)
        click.echo(f"features stored in {store.root}", err=True)


def _set_device(parsed: dict, feature_specs: list[str], device: str) -> None:
    """``--device`` for every extractor with a ``device`` parameter not set with -p."""
    from .features import build_extractor, split_spec
    from .runtime import check_device

    check_device(device)  # a device this machine does not have is an error up front
    for spec in feature_specs:
        for name in split_spec(spec):
            if "device" in build_extractor(name).get_params(deep=False):
                parsed.setdefault(name, {}).setdefault("device", device)


@main.command("list", context_settings=CONTEXT)
@click.argument("what", required=False,
                type=click.Choice(["datasets", "features", "classifiers", "studies"]))
def list_(what) -> None:
    """List datasets, features, classifiers and studies with short descriptions."""
    from .classifiers import CLASSIFIERS
    from .datasets import DATASETS
    from .features import EXTRACTORS
    from .studies import STUDIES

    groups = {"datasets": DATASETS, "features": EXTRACTORS, "classifiers": CLASSIFIERS,
              "studies": STUDIES}
    for name, registry in groups.items():
        if what not in (None, name):
            continue
        click.echo(f"{name}:")
        for entry in registry:
            click.echo(f"  {entry.name:<14} {entry.description}")
        if name == "features":
            from .features import list_models

            models = textwrap.fill(", ".join(list_models()), width=96,
                                   initial_indent="    ", subsequent_indent="    ")
            click.echo(f"  cnn:<model> takes one of these models:\n{models}")


@main.command(context_settings=CONTEXT)
@click.argument("records", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the table here (.csv, .md or .json); else print it.")
def table(records, output) -> None:
    """Rebuild a table from run records (JSON files or folders of them)."""
    from .results import COLUMNS, format_table, load_records, make_table, write_table

    try:
        df = make_table(load_records(records))
        if output is None:
            click.echo(format_table(df, [c for c in COLUMNS if c != "seed"]))
        else:
            write_table(df, output)
            click.echo(f"{len(df)} row(s) written to {output}", err=True)
    except (FeatbenchError, OSError) as exc:
        raise _fail(exc) from None


@main.command(context_settings=CONTEXT)
@click.argument("study", default="cifar10")
@click.option("--quick", is_flag=True,
              help="Seeded subset (5,000 train / 1,000 test), small vocabularies, 64 px CNN "
                   "inputs: minutes instead of hours; labeled QUICK everywhere.")
@click.option("--only", multiple=True, metavar="PATTERN",
              help="Run only rows whose id (label/classifier) matches, e.g. 'HOG*' or "
                   "'*/logreg'; repeatable.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Study folder [default: results/studies/STUDY or STUDY-quick].")
@click.option("-d", "--dataset", help="Run the study's rows on another dataset "
                                      "(e.g. folder:PATH) [default: the study's].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Data root [default: $FEATBENCH_DATA or the cache folder].")
@click.option("--download", is_flag=True, help="Download CIFAR-10 when it is not found.")
@click.option("--train-size", type=click.IntRange(min=1), help="Override the training subset.")
@click.option("--test-size", type=click.IntRange(min=1), help="Override the test subset.")
@click.option("--seed", default=0, show_default=True, help="Seed of every random choice.")
@click.option("--device", default=None, metavar="auto|cpu|cuda[:N]|mps",
              help="Torch device of the extractors that use one [default: auto].")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Feature cache [default: $FEATBENCH_CACHE or ~/.cache/featbench].")
@click.option("--list", "list_rows", is_flag=True, help="List the study's rows and exit.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Worker threads/processes.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def reproduce(study, quick, only, out, dataset, data_dir, download, train_size, test_size, seed,
              device, cache_dir, list_rows, jobs, quiet) -> None:
    """Run a study (default: cifar10) with published references, then tables and plots.

    Rows already finished in the study folder are skipped, so an interrupted study
    resumes; features come from the cache. Writes table.csv/.md/.json, four PNG plots
    and report.html into the study folder (see `featbench plot` to redraw them).
    """
    from .datasets import load_dataset
    from .parallel import set_options
    from .report import render
    from .reproduce import finished_keys, run_study
    from .studies import get_study, validate_study

    set_options(n_jobs=jobs, progress=False if quiet else None)
    with _boundary(lambda: "finished rows are kept; run the same command to resume"):
        st = get_study(study)
        validate_study(st)
        rows = st.select(list(only))
        if list_rows:
            for row in rows:
                ref = f"  [ref {row.reference.text()} {row.reference.metric}]" \
                    if row.reference else ""
                click.echo(f"{row.id:<48} {row.features}{ref}")
            return
        if device is not None:
            rows = [_with_device(row, device) for row in rows]
        out = out or Path("results") / "studies" / (st.name + ("-quick" if quick else ""))
        sizes = dict(st.quick_sizes) if quick else {}
        if train_size:
            sizes["train_size"] = train_size
        if test_size:
            sizes["test_size"] = test_size
        ds = load_dataset(dataset or st.dataset, data_dir=data_dir, download=download,
                          seed=seed)
        if quick:  # the quick subset is at most the study's sizes
            sizes["train_size"] = min(sizes["train_size"], len(ds.y_train))
            sizes["test_size"] = min(sizes["test_size"], len(ds.y_test))
        if sizes:
            ds = ds.subset(sizes.get("train_size"), sizes.get("test_size"), seed=seed)
        click.echo(f"study {st.name}{' (QUICK)' if quick else ''}: {ds.describe()} -> {out}",
                   err=True)
        _, planned = run_study(st, ds, out, quick=quick, rows=rows, seed=seed,
                               store=_store(cache_dir),
                               n_jobs=jobs, echo=lambda m: click.echo(m, err=True))
        if not finished_keys(out) & planned:
            click.echo("no finished rows to report (every selected row was skipped)", err=True)
            return
        files = render(out, keys=planned)
    _echo_study_table(files["table.csv"])
    click.echo(f"written: {', '.join(str(p) for p in files.values())}", err=True)


def _echo_study_table(csv_path: Path) -> None:
    import pandas as pd
    from tabulate import tabulate

    df = pd.read_csv(csv_path)
    cols = ["row", "classifier", "val_acc", "test_acc", "reference", "ref_metric", "difference",
            "extract_s", "fit_s", "error"]
    view = df[cols].astype(object)
    view = view.where(view.notna(), None)  # "-" for missing cells
    if view["error"].isna().all():
        view = view.drop(columns="error")
    click.echo(tabulate(view, headers="keys", tablefmt="simple", showindex=False,
                        floatfmt=".4f", missingval="-"))


def _with_device(row, device: str):
    """The study row with ``--device`` set on its extractors (see :func:`_set_device`)."""
    import dataclasses

    params = {k: dict(v) for k, v in row.params.items()}
    _set_device(params, [row.features], device)
    return dataclasses.replace(row, params=params)


@main.command(context_settings=CONTEXT)
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--title", help="Title of the plots and report.")
def plot(study_dir, title) -> None:
    """Redraw a study's tables, plots and report.html from its run records."""
    from .report import render

    try:
        files = render(study_dir, title)
    except (FeatbenchError, OSError, ValueError) as exc:
        raise _fail(exc) from None
    click.echo(f"written: {', '.join(str(p) for p in files.values())}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
