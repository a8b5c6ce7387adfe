"""The ``featbench`` command line (click).

Library errors become one-line messages here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import click

from . import __version__
from .errors import FeatbenchError, OutputError, UnknownNameError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@contextlib.contextmanager
def _boundary(interrupted: Callable[[], str]):
    """featbench's own errors as one-line messages; Ctrl-C says what was kept and exits 130.

    Only :class:`FeatbenchError` (bad input, unwritable outputs) becomes a message:
    any other exception is a bug, here or in a library, and keeps its traceback.
    """
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: {interrupted()}", err=True)
        sys.exit(130)
    except FeatbenchError as exc:
        raise _fail(exc) from None


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (made if missing), or None.

    Tried for real: a temporary file is created and removed.
    """
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create folder {folder} ({exc.strerror or exc})"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".featbench-write-test-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return f"cannot create files in {folder} ({exc.strerror or exc})"
    return None


def _check_folder(folder: Path, what: str) -> None:
    """An :class:`OutputError` naming ``folder`` unless files can be written in it."""
    reason = _unwritable(folder)
    if reason is not None:
        raise OutputError(f"cannot write {what} to {folder}: {reason}")


def _check_file(path: Path, what: str = "the table") -> None:
    """An :class:`OutputError` naming ``path`` unless it can be written."""
    reason = _unwritable(path.parent)
    if reason is None and path.exists() and not os.access(path, os.W_OK):
        reason = f"{path} is read-only"
    if reason is not None:
        raise OutputError(f"cannot write {what} to {path}: {reason}")


class _ValSize(click.ParamType):
    """``--val-size``: a count (an integer >= 1, written as one) or a fraction in (0, 1).

    ``1.0`` or ``2.5`` is neither: refused, not read as a count.
    """

    name = "count|fraction"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            try:
                number = int(text)
            except ValueError:
                try:
                    number = float(text)
                except ValueError:
                    number = None
        if isinstance(number, float) and 0 < number < 1:
            return number
        if isinstance(number, int) and number >= 1:
            return number
        self.fail(f"must be a count (integer >= 1) or a fraction in (0, 1); got {value}",
                  param, ctx)


#: ``--seed``: what scikit-learn's random_state takes
SEED = click.IntRange(min=0, max=2**32 - 1)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line, without the file, line and source line Python adds."""
    text = str(message).splitlines()[0] if str(message) else category.__name__
    name = category.__name__
    prefix = "" if name in ("UserWarning",) or name.endswith(("StoreWarning", "ImageWarning")) \
        else f"{name}: "
    return f"warning: {prefix}{text}\n"


def _pair_notes(rec: dict) -> list[str]:
    """One line per thing a user should know about a finished pair: an edge, a solver
    at its iteration limit, each distinct warning recorded while fitting."""
    clf = rec.get("classifier", {})
    out = []
    if clf.get("edge"):
        out.append(f"chosen {_chosen(clf)} is the {clf['edge']}")
    if clf.get("hit_iteration_limit"):
        out.append(f"the solver stopped at its iteration limit at {_chosen(clf)} "
                   f"(raise -p {clf.get('name')}.max_iter)")
    out += [w for w in rec.get("warnings", []) if not w.startswith("ConvergenceWarning")
            or not clf.get("hit_iteration_limit")]
    return out


def _chosen(clf: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted((clf.get("chosen") or {}).items())) or "-"


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="featbench")
def main() -> None:
    """Benchmark hand-crafted image features against ConvNet embeddings.

    Extract features (raw pixels, color histograms, HOG, ...) from an image
    dataset, fit linear classifiers tuned on a validation split, and tabulate
    accuracy and timings. Start with: featbench run --features hog --clf linear-svm
    """
    import warnings

    warnings.formatwarning = _format_warning  # (recording with catch_warnings still works)


def _split_multi(values: tuple[str, ...], hint: str | None = None,
                 example: str = "") -> list[str]:
    """Names of a repeatable, comma-separated option; none at all is a usage error
    naming the option (``hint``), e.g. ``-f ""``."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if not names and hint is not None:
        raise click.BadParameter(f"names nothing; give at least one, e.g. {example}",
                                 param_hint=hint)
    return names


def _parse_params(items: tuple[str, ...]) -> dict:
    """``-p`` options parsed; one ``NAME.PARAM`` given twice with two values is an error
    naming both (the last one would silently win)."""
    from .params import parse_params

    seen: dict[tuple[str, str], tuple[str, object]] = {}
    for item in items:
        for name, values in parse_params([item]).items():
            for key, value in values.items():
                first = seen.setdefault((name, key), (item, value))
                if first[1] != value:
                    raise click.BadParameter(
                        f"{name}.{key} is given twice, {first[0]!r} and {item!r}; give it "
                        f"once (a comma list is a grid: {name}.{key}=a,b)",
                        param_hint="'-p' / '--param'")
    return parse_params(items)


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
        click.option("--seed", type=SEED, default=0, show_default=True,
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


def _load(opts: dict, parsed: dict, feature_specs: list[str], classifiers: list[str],
          check_outputs: Callable[[], None] = lambda: None, val_size=None):
    """Check the whole plan and the outputs, then list the dataset; echo its first line
    and a note for each option that does not apply to this run."""
    from .datasets import load_dataset
    from .plan import check_plan_data, validate_plan

    if opts["device"] is not None:
        _set_device(parsed, feature_specs, opts["device"])
    validate_plan(feature_specs, classifiers, parsed)
    check_outputs()
    ds = load_dataset(opts["dataset"], data_dir=opts["data_dir"], download=opts["download"],
                      image_size=opts["image_size"], test_fraction=opts["test_fraction"],
                      train_size=opts["train_size"], test_size=opts["test_size"],
                      seed=opts["seed"], skip_bad_images=opts["skip_bad_images"])
    check_plan_data(feature_specs, parsed, ds, opts["seed"], val_size)
    line, own_views = _first_line(ds, feature_specs, parsed)
    click.echo(line, err=True)
    if opts["image_size"] is not None and own_views and all(own_views.values()):
        click.echo(f"--image-size: ignored; every extractor of this run "
                   f"({', '.join(own_views)}) sees its own input resolution", err=True)
    else:
        ds.check_memory(opts["shard_size"], opts["jobs"])
    if _given("test_fraction") and "test_fraction" not in ds.notes:
        click.echo(f"--test-fraction: ignored; {ds.name} [{ds.layout}] has its own test split",
                   err=True)
    return ds


def _given(option: str) -> bool:
    """Whether the user set ``option`` (command line or environment), not its default."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(option)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _first_line(ds, feature_specs: list[str], parsed: dict) -> tuple[str, dict[str, bool]]:
    """Layout, images per split and the resolution each extractor sees; and for each
    extractor, whether it takes its own view of the images (a CNN) or the working one."""
    from .extraction import view_for
    from .features import build_extractor, set_params_checked, split_spec

    views, own = {}, {}
    for spec in feature_specs:
        for name in split_spec(spec):
            est = set_params_checked(build_extractor(name), parsed.get(name, {}), name)
            hook = getattr(est, "input_view", None)
            own[name] = hook is not None and hook(ds) is not None
            text = view_for(est, ds).text(ds.image_scan()["shared_size"])
            views.setdefault(text, []).append(name)
    seen = "; ".join(f"{', '.join(names)}: {text}" for text, names in views.items())
    return f"{ds.describe()}; {seen}", own


def _store(cache_dir: Path | None):
    from .store import FeatureStore

    return FeatureStore(None if cache_dir is None else Path(cache_dir) / "store")


def _shots(text: str | None) -> list[int] | None:
    """``--shots 1,5,10`` as integers (each at least 1)."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give integers, e.g. --shots 1,5,10",
                                 param_hint="--shots") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: each K must be at least 1",
                                 param_hint="--shots")
    return sorted(set(values))


@main.command(context_settings=CONTEXT)
@dataset_options
@click.option("-c", "--clf", multiple=True, default=("linear-svm",), show_default=True,
              help="Classifier; repeat or comma-separate for several.")
@click.option("--val-size", type=_ValSize(),
              help="Validation images held out of train when the dataset has no val/ split: "
                   "a count (an integer) or a fraction in (0, 1); at least one image per "
                   "class, and fewer than 5 per class warns [default: min(1000, 10% of "
                   "train)].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table here (.csv, .md or .json).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True,
              help="Run records go to RESULTS_DIR/runs/.")
@click.option("--no-cache", is_flag=True,
              help="Recompute features in a temporary store; reuse and keep nothing.")
@click.option("--no-extend-grid", is_flag=True,
              help="Keep the tuning grid as given, even when the best value is on its edge "
                   "[default: extend it past that edge; see docs/classifiers.md].")
@click.option("--rerun", is_flag=True,
              help="Fit every pair again, also those RESULTS_DIR/runs/ holds a finished "
                   "record of (same data, features, parameters, code) [default: reuse "
                   "those records].")
@click.option("--shots", type=str, default=None, metavar="K[,K...]",
              help="Few-shot probes: K training images per class (e.g. 1,5,10,25), drawn "
                   "outside the validation split; one record per K, the mean over "
                   "--shot-seeds draws.")
@click.option("--shot-seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Draws of the K-shot images (seeds: --seed, --seed + 1, ...).")
def run(clf, val_size, output, results_dir, no_cache, no_extend_grid, rerun, shots,
        shot_seeds, **opts) -> None:
    """Run every feature x classifier pair on a dataset and print the table.

    Each pair is written as one JSON record under RESULTS_DIR/runs/ as soon as it
    finishes; features go to the feature store, so a second identical run (or one
    after `featbench extract`) does not recompute them.
    """
    from .parallel import set_options
    from .results import format_table, make_table, write_table
    from .runner import run_benchmark

    set_options(n_jobs=opts["jobs"], progress=False if opts["quiet"] else None)
    shot_list = _shots(shots)
    feature_specs = _split_multi(opts["features"], "'-f' / '--features'", "-f hog")
    classifiers = _split_multi(clf, "'-c' / '--clf'", "-c linear-svm")
    if output is not None and output.suffix.lower() not in (".csv", ".md", ".json"):
        raise click.BadParameter("use a .csv, .md or .json file name", param_hint="--output")
    runs = results_dir / "runs"
    done: list[dict] = []
    reused: list[dict] = []
    def kept() -> str:
        return (f"{len(done)} finished pair(s) kept in {runs}; finished feature "
                f"shards are kept in the store")

    with _boundary(kept):
        parsed = _parse_params(opts["params"])
        store = None if no_cache else _store(opts["cache_dir"])

        def check_outputs() -> None:
            _check_folder(runs, "run records")
            # (no check of the store: it is a cache, an unwritable one warns and is bypassed)
            if output is not None:
                _check_file(output)

        ds = _load(opts, parsed, feature_specs, classifiers, check_outputs, val_size)
        run_benchmark(ds, feature_specs, classifiers, params=parsed, seed=opts["seed"],
                      val_size=val_size, store=store,
                      results_dir=results_dir, n_jobs=opts["jobs"], on_record=done.append,
                      shard_size=opts["shard_size"], skip_bad=opts["skip_bad_images"],
                      dtype=opts["feature_dtype"], extend_grid=not no_extend_grid,
                      rerun=rerun, on_reuse=reused.append, shots=shot_list,
                      n_shot_seeds=shot_seeds)
    if reused:
        click.echo(f"{len(reused)} pair(s) finished earlier with the same key: their records "
                   f"in {runs} are reused (--rerun fits them again)", err=True)
    table = make_table(done)
    click.echo(format_table(table))
    if done and results_dir is not None:
        click.echo(f"{len(done)} record(s) in {runs}", err=True)
    bad = sorted({f for rec in done for f in rec.get("bad_images", [])})
    if bad:
        click.echo(f"skipped {len(bad)} image(s) that could not be decoded:", err=True)
        for line in bad:
            click.echo(f"  {line}", err=True)
    for rec in done:
        pair = f"{rec['features']['spec']} + {rec['classifier']['name']}"
        for line in _pair_notes(rec):
            click.echo(f"note: {pair}: {line}", err=True)
        if rec.get("error"):
            click.echo(f"error in {pair}: {rec['error']}", err=True)
    if output is not None:
        try:
            write_table(table, output)
        except OutputError as exc:  # e.g. the disk filled up during the run
            raise click.ClickException(f"{exc}; the run records are in {runs}") from None
        click.echo(f"table written to {output}", err=True)
    failed = [r for r in done if r.get("error")]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(done)} pair(s) failed (see the error column)")


@main.command(context_settings=CONTEXT)
@dataset_options
@click.option("--shard", "shard", metavar="I/N",
              help="Compute only shards j with j mod N = I-1 of every split: one of N "
                   "processes (a SLURM array, xargs -P) filling a shared --cache-dir.")
@click.option("--fit-only", is_flag=True,
              help="Only fit the codebooks of learned extractors (bovw, vlad, fisher, "
                   "kmeans-patches) into the store; run it once before sharded extracts.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="local: this process; ray: a Ray Data pipeline (pip install -e "
                   "\".[ray]\"), actors with one GPU each when CUDA is there.")
@click.option("--ray-address", metavar="ADDRESS",
              help="Ray cluster to connect to (e.g. auto, ray://head:10001) [default: "
                   "start a local Ray instance]. Only with --engine ray.")
@click.option("--val-size", type=_ValSize(),
              help="As in `run`: learned extractors fit on train minus these validation "
                   "images, so use the value `run` will use [default: as in run].")
def extract(**opts) -> None:
    """Compute and store the features of a dataset, without fitting any classifier.

    What to run once on a large dataset before sweeping classifiers: `run` and
    `reproduce` with the same dataset and parameters reuse what it stored. Shards
    already in the store are skipped, so an interrupted extract resumes.

    \b
    On several machines sharing a file system (see docs/store.md):
      featbench extract -d folder:/data/photos -f bovw --fit-only --cache-dir /shared/c
      featbench extract -d folder:/data/photos -f bovw --shard $I/$N --cache-dir /shared/c
    or one Ray Data pipeline: featbench extract ... --engine ray --ray-address auto
    """
    import time

    from .parallel import set_options
    from .params import parse_shard

    set_options(n_jobs=opts["jobs"], progress=False if opts["quiet"] else None)
    feature_specs = _split_multi(opts["features"], "'-f' / '--features'", "-f hog")
    store = _store(opts["cache_dir"])
    shard = None
    if opts["shard"] is not None:
        try:
            shard = parse_shard(opts["shard"])
        except FeatbenchError as exc:
            raise click.BadParameter(str(exc).removeprefix("--shard "),
                                     param_hint="--shard") from None
    if opts["ray_address"] is not None and opts["engine"] != "ray":
        raise click.BadParameter("only with --engine ray", param_hint="--ray-address")
    if opts["fit_only"] and shard is not None:
        raise click.BadParameter("--fit-only fits the codebooks once; run it without --shard",
                                 param_hint="--fit-only")
    with _boundary(lambda: "finished shards are kept; run the same command to resume"):
        from .engines import get_engine
        from .extraction import extract_features

        engine = get_engine(opts["engine"], address=opts["ray_address"])
        parsed = _parse_params(opts["params"])
        from .classifiers import CLASSIFIERS

        # a run's command line works here too: its classifier parameters are not used
        parsed = {k: v for k, v in parsed.items() if k not in CLASSIFIERS}
        ds = _load(opts, parsed, feature_specs, [],
                   lambda: _check_folder(store.root, "features"), opts["val_size"])
        for spec in feature_specs:
            t0 = time.perf_counter()
            res = extract_features(spec, ds, parsed, store, seed=opts["seed"],
                                   shard_size=opts["shard_size"],
                                   skip_bad=opts["skip_bad_images"],
                                   dtype=opts["feature_dtype"], n_workers=opts["jobs"],
                                   load=False, shard=shard, fit_only=opts["fit_only"],
                                   engine=engine, val_size=opts["val_size"])
            wall = time.perf_counter() - t0
            n_img = sum(len(src) for src in ds.splits().values())
            for part in res.parts:
                click.echo(_extract_line(part, n_img, shard, opts["fit_only"]), err=True)
            click.echo(f"{spec}: {wall:.1f} s wall", err=True)
            if res.bad_files:
                click.echo(f"skipped {len(res.bad_files)} image(s) that could not be decoded:",
                           err=True)
                for line in res.bad_files:
                    click.echo(f"  {line}", err=True)
        click.echo(f"features stored in {store.root}", err=True)


def _extract_line(part: dict, n_img: int, shard: tuple[int, int] | None,
                  fit_only: bool) -> str:
    """One line per extractor: what ``extract`` computed and what is still missing."""
    name = part["name"]
    if fit_only:
        if "codebook" not in part:
            return f"{name}: nothing to fit (not a learned extractor)"
        return f"{name}: codebook {part['codebook'][:12]} in the store"
    resolved = f"; {part['precision']} on {part.get('device_type', 'cpu')}" \
        if part.get("precision") else ""  # as resolved on this machine (in the store key)
    return _shards_line(part, n_img, shard) + resolved


def _shards_line(part: dict, n_img: int, shard: tuple[int, int] | None) -> str:
    """What ``extract`` computed of an extractor's shards and what is still missing."""
    name = part["name"]
    sh = part["shards"]
    computed = sum(v["computed"] for v in sh.values())
    total = sum(v["n"] for v in sh.values())
    missing = sum(v.get("missing", 0) for v in sh.values())
    if shard is None:
        return (f"{name}: {computed} of {total} shard(s) computed, "
                f"{total - computed} already stored; {n_img} images")
    i, n = shard
    line = f"{name} [shard {i}/{n}]: {computed} shard(s) computed of {total}; "
    return line + (f"{missing} still missing (other shard processes)" if missing
                   else "all stored")


def _device_users(feature_specs: list[str]) -> list[str]:
    """The extractors of these specs that have a ``device`` parameter."""
    from .features import build_extractor, split_spec

    return [name for spec in feature_specs for name in split_spec(spec)
            if "device" in build_extractor(name).get_params(deep=False)]


def _check_device(feature_specs: list[str], device: str) -> bool:
    """Whether ``--device`` applies: checked up front when an extractor uses it, else a
    note that it is ignored."""
    from .runtime import check_device

    if not _device_users(feature_specs):
        click.echo("--device: no extractor of this run uses a device; ignored", err=True)
        return False
    check_device(device)  # a device this machine does not have is an error up front
    return True


def _set_device(parsed: dict, feature_specs: list[str], device: str,
                checked: bool = False) -> None:
    """``--device`` for every extractor with a ``device`` parameter not set with -p."""
    if not checked and not _check_device(feature_specs, device):
        return
    for name in _device_users(feature_specs):
        parsed.setdefault(name, {}).setdefault("device", device)


def _show(value) -> str:
    """A parameter value as ``-p`` takes it: none, true/false, a,b for tuples."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(_show, value))
    return str(value)


def _param_docs(cls) -> dict[str, str]:
    """The first sentence of each parameter's text in a numpydoc "Parameters" section
    of a class's docstring (``cls``: the class, or its docstring cleaned as
    :func:`inspect.getdoc` does)."""
    import inspect
    import re

    doc = cls if isinstance(cls, str) else inspect.getdoc(cls)
    lines = (doc or "").splitlines()
    heading = next((i for i in range(len(lines) - 1) if lines[i].strip() == "Parameters"
                    and set(lines[i + 1].strip()) == {"-"}), None)
    if heading is None:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []
    kind = ""

    def flush() -> None:
        para = " ".join(text[:text.index("")] if "" in text else text)
        para = re.sub(r":\w+:`(~?)([^`<]+?)\s*(<[^>]*>)?`",  # :class:`~a.B` -> B
                      lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2], para)
        para = para.replace("``", "").replace("`", "")
        sentence = re.split(r"(?<=\.)\s+(?=[A-Z])", para, maxsplit=1)[0]  # not at "e.g."
        if sentence.endswith(":"):  # it introduces a list: name the list's items
            items = [m[1] for m in (re.match(r"- ('[^']+'|\S+?)[:,\s]", t + " ")
                                    for t in text) if m]
            sentence += " " + (", ".join(items) if items else kind) + "."
        for name in names:
            out[name] = sentence

    for i in range(heading + 2, len(lines)):
        line = lines[i]
        if (line.strip() and not line[0].isspace() and i + 1 < len(lines)
                and lines[i + 1].strip() and set(lines[i + 1].strip()) == {"-"}):
            break  # the next section
        if line.strip() and not line[0].isspace():  # "name : type" or "a, b : type"
            flush()
            names = [n.strip().lstrip("*") for n in line.split(" :")[0].split(",")]
            kind = line.split(" :", 1)[1].strip() if " :" in line else ""
            text = []
        elif names and (line.strip() or text):
            text.append(line.strip())
    flush()
    return out


def _component(name: str):
    """``("feature" | "classifier", spec, description)`` for a name, where spec is the
    :class:`~featbench.registry.ClassSpec` of a fresh estimator (read from the source
    when it can be: no torch or scikit-learn import)."""
    from .classifiers import CLASSIFIERS
    from .features import EXTRACTORS, build_extractor, extractor_entry

    if name in CLASSIFIERS:
        entry = CLASSIFIERS.get(name)
        return "classifier", entry.spec(), entry.description
    if name in EXTRACTORS or ":" in name:
        from .features import FAMILY_ENTRIES

        prefix, _, arg = name.partition(":")
        family, param = FAMILY_ENTRIES.get(prefix, (f"{prefix}:<model>", "model")) \
            if ":" in name else (name, "")
        description = EXTRACTORS.get(family).description if family in EXTRACTORS else ""
        if ":" not in name:
            return "feature", EXTRACTORS.get(name).spec(), description
        from .features.convnet_recipes import ARCHS

        if family not in EXTRACTORS or param == "arch" and arg not in ARCHS:
            build_extractor(name)  # an unknown family or model raises with close matches
        if param == "arch":
            return "feature", extractor_entry(name).spec(arch=arg), description
        from .models import parse

        model, implied = parse(prefix, arg)  # an unknown model raises with close matches
        return "feature", extractor_entry(name).spec(model=model, **implied), description
    import difflib

    valid = [*EXTRACTORS.names(), *CLASSIFIERS.names()]
    close = difflib.get_close_matches(name, valid, n=3) or [
        n for n in valid if name and name.lower() in n.lower()][:3]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"unknown feature or classifier {name!r}.{hint} Valid features: "
        f"{', '.join(EXTRACTORS.names())}; classifiers: {', '.join(CLASSIFIERS.names())}.")


def _is_component(name: str) -> bool:
    try:
        _component(name)
    except FeatbenchError:
        return False
    return True


class _ListWhat(click.Choice):
    """``list``'s argument; an extractor or classifier name points to ``describe``."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            if not _is_component(value):
                raise
            self.fail(f"{value!r} is not one of {', '.join(map(repr, self.choices))}. For "
                      f"its parameters: featbench describe {value}", param, ctx)


@main.command("list", context_settings=CONTEXT)
@click.argument("what", required=False,
                type=_ListWhat(["datasets", "features", "classifiers", "studies"]))
@click.option("--params", "show_params", is_flag=True,
              help="Also print each extractor's and classifier's parameters with their "
                   "defaults.")
def list_(what, show_params) -> None:
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
            if show_params and name in ("features", "classifiers"):
                params = entry.spec().params  # cnn:<model>: the family's default model
                shown = ", ".join(f"{k}={_show(v)}" for k, v in sorted(params.items()))
                click.echo(f"  {'':<14} {shown}")
        if name == "features":
            from .features import list_models

            models = textwrap.fill(", ".join(list_models()), width=96,
                                   initial_indent="    ", subsequent_indent="    ")
            click.echo("  other backbones (docs/backbones.md):\n"
                       "    timm:<architecture>             any of timm's models ([timm])\n"
                       "    open_clip:<architecture>/<tag>  an OpenCLIP image tower ([clip])\n"
                       "    hf:<repo id or folder>          a Hugging Face vision model ([hf])\n"
                       "    file:<path>                     a TorchScript file, or a state dict "
                       "with -p file:<path>.arch=<model>")
            click.echo(f"  cnn:<model> (= torchvision:<model>) takes one of these models:\n"
                       f"{models}")


@main.command(context_settings=CONTEXT)
@click.argument("name")
def describe(name) -> None:
    """Show an extractor's or classifier's parameters, defaults and tuning grid.

    NAME is a feature (hog, cnn:resnet18, ...) or a classifier (linear-svm, ...);
    set a parameter in a run with -p NAME.PARAM=VALUE.
    """
    with _boundary(lambda: "nothing was changed"):
        kind, spec, description = _component(name)
    click.echo(f"{name} ({kind}, {spec.path})")
    if description:
        click.echo(f"  {description}")
    params = spec.params
    docs = _param_docs(spec.doc)
    click.echo(f"parameters (-p {name}.PARAM=VALUE), with defaults:")
    width = max((len(f"{k}={_show(v)}") for k, v in params.items()), default=0)
    for key, value in sorted(params.items()):
        shown = f"  {key}={_show(value)}".ljust(width + 4)
        click.echo(textwrap.fill(docs.get(key, ""), width=CONTEXT["max_content_width"],
                                 initial_indent=shown, subsequent_indent=" " * len(shown))
                   or shown.rstrip())
    if kind == "classifier":
        from .classifiers import default_grid

        grid = default_grid(name)
        click.echo("tuning grid (on the validation split; -p with a comma list replaces it):")
        for key, values in grid.items():
            click.echo(f"  {key}: {', '.join(map(_show, values))}")
        if not grid:
            click.echo("  (none)")


@main.command(context_settings=CONTEXT)
@click.argument("figures", nargs=-1,
                type=click.Choice(["hog", "color-hist", "filters", "neighbors", "map",
                                   "confusion"]))
@dataset_options
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results/show"), show_default=True,
              help="Folder the figures (PNG) and their numbers (CSV) go to.")
@click.option("--map-method", type=click.Choice(["pca", "tsne"]), default="pca",
              show_default=True, help="How `map` draws each feature space in 2-D.")
@click.option("-c", "--clf", "classifier", default="logreg", show_default=True,
              help="Classifier of `confusion`, tuned and refitted as `featbench run` does.")
def show(figures, out, map_method, classifier, **opts) -> None:
    """Draw pictures of features: HOG glyphs (hog), color histograms beside their
    images (color-hist), filters (filters: the k-means centroids of kmeans-patches, the
    first-layer filters of convnet:<arch> and of pretrained backbones, and bovw/vlad words
    as their nearest training patches), the nearest training images of a few
    test images in each feature space (neighbors), each feature space in 2-D, colored
    by class (map), and the confusion matrix of a classifier on each feature space with
    the most confused class pairs (confusion); all six without FIGURES.

    Features and fitted extractors come from the feature store (computed and stored
    there when missing).
    """
    from .parallel import set_options
    from .show import FIGURES, render_show

    set_options(n_jobs=opts["jobs"], progress=False if opts["quiet"] else None)
    feature_specs = _split_multi(opts["features"], "'-f' / '--features'", "-f hog")
    with _boundary(lambda: "figures already drawn are kept"):
        parsed = _parse_params(opts["params"])
        store = _store(opts["cache_dir"])
        figures = list(figures or FIGURES)
        ds = _load(opts, parsed, feature_specs,
                   [classifier] if "confusion" in figures else [],
                   lambda: _check_folder(out, "the figures"))
        render_show(ds, figures, feature_specs, parsed, store, out, seed=opts["seed"],
                    echo=lambda m: click.echo(m, err=True), map_method=map_method,
                    classifier=classifier)


@main.command(context_settings=CONTEXT)
@click.argument("records", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the table here (.csv, .md or .json); else print it.")
@click.option("--all-columns", is_flag=True,
              help="Print every column of the records' table, not only those `run` prints.")
@click.option("--per-class", is_flag=True,
              help="Add each class's test accuracy (acc:<class>), from the confusion matrix.")
@click.option("--all", "all_records", is_flag=True,
              help="Every record, also those a rerun of the same pair replaced [default: "
                   "the newest record of each pair].")
def table(records, output, all_columns, per_class, all_records) -> None:
    """Rebuild a table from run records (JSON files or folders of them)."""
    from .results import (
        COLUMNS,
        SHORT_COLUMNS,
        format_table,
        load_records,
        make_table,
        newest_per_key,
        write_table,
    )

    if output is not None and output.suffix.lower() not in (".csv", ".md", ".json"):
        raise click.BadParameter("use a .csv, .md or .json file name", param_hint="--output")
    with _boundary(lambda: "no table was written"):
        if output is not None:
            _check_file(output)
        found = load_records(records)
        df = make_table(found if all_records else newest_per_key(found), per_class=per_class)
        if output is None:
            extra = [c for c in df.columns if c.startswith("acc:")]
            # the dataset too: rows of several datasets look alike without it
            shown = COLUMNS if all_columns else ["dataset", *SHORT_COLUMNS]
            click.echo(format_table(df, shown + extra))
        else:
            write_table(df, output)
            click.echo(f"{len(df)} row(s) written to {output}", err=True)


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
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of every random choice.")
@click.option("--device", default=None, metavar="auto|cpu|cuda[:N]|mps",
              help="Torch device of the extractors that use one [default: auto].")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Feature cache [default: $FEATBENCH_CACHE or ~/.cache/featbench].")
@click.option("--list", "list_rows", is_flag=True, help="List the study's rows and exit.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Worker threads/processes.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("--no-extend-grid", is_flag=True,
              help="Keep every row's grid as given (a different plan: rows rerun).")
@click.option("--no-pictures", is_flag=True,
              help="Do not draw the study's pictures (featbench show figures).")
def reproduce(study, quick, only, out, dataset, data_dir, download, train_size, test_size, seed,
              device, cache_dir, list_rows, jobs, quiet, no_extend_grid, no_pictures) -> None:
    """Run a study (default: cifar10) with published references, then tables and plots.

    Rows already finished in the study folder are skipped, so an interrupted study
    resumes; features come from the cache. Writes table.csv/.md/.json, summary.md, four
    PNG plots, the study's pictures (pictures/, once the rows they show are finished)
    and report.html into the study folder (see `featbench plot` to redraw them).
    """
    from .datasets import load_dataset
    from .parallel import set_options
    from .report import render
    from .reproduce import draw_pictures, finished_keys, run_study
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
        if device is not None and _check_device([row.features for row in rows], device):
            rows = [_with_device(row, device) for row in rows]
        out = out or Path("results") / "studies" / (st.name + ("-quick" if quick else ""))
        store = _store(cache_dir)
        _check_folder(out / "runs", "the study")  # the store is a cache: never checked
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
                               store=store, n_jobs=jobs,
                               echo=lambda m: click.echo(m, err=True),
                               extend_grid=not no_extend_grid)
        if not finished_keys(out) & planned:
            click.echo("no finished rows to report (every selected row was skipped)", err=True)
            return
        if not no_pictures:
            draw_pictures(st, ds, out, quick=quick, seed=seed, store=store,
                          echo=lambda m: click.echo(m, err=True),
                          extend_grid=not no_extend_grid)
        files = render(out, keys=planned)
    _echo_study_table(files["table.csv"])
    click.echo(f"written: {', '.join(str(p) for p in files.values())}", err=True)


#: columns of the study table printed by ``reproduce``
STUDY_SHORT_COLUMNS = ["row", "classifier", "val_acc", "test_acc", "reference", "ref_metric",
                       "difference", "extract_s", "fit_s", "error"]


def _echo_study_table(csv_path: Path) -> None:
    import pandas as pd

    from .results import format_table

    click.echo(format_table(pd.read_csv(csv_path), STUDY_SHORT_COLUMNS))


def _with_device(row, device: str):
    """The study row with ``--device`` set on its extractors (see :func:`_set_device`)."""
    import dataclasses

    params = {k: dict(v) for k, v in row.params.items()}
    _set_device(params, [row.features], device, checked=True)
    return dataclasses.replace(row, params=params)


@main.command(context_settings=CONTEXT)
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--title", help="Title of the plots and report.")
@click.option("--all-plans", is_flag=True,
              help="Keep the records of every plan (dataset, sizes, seed, version) in one "
                   "table, labeled MIXED [default: the newest plan only].")
@click.option("--readme", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Also rewrite this file's copy of the summary table (the lines between "
                   "'<!-- study-table: STUDY_DIR -->' and '<!-- /study-table -->').")
def plot(study_dir, title, all_plans, readme) -> None:
    """Redraw a study's tables, plots and report.html from its run records.

    A table holds one plan: the newest one in the folder, unless --all-plans. The
    report shows the pictures in STUDY_DIR/pictures (drawn by `featbench reproduce`).
    """
    from .errors import DataError
    from .report import render, update_readme

    with _boundary(lambda: "files already written are kept; run it again to redraw them"):
        if study_dir.name == "runs" and not (study_dir / "runs").is_dir() and \
                any(study_dir.glob("*.json")):
            study_dir = study_dir.parent  # the records' folder itself: draw beside it
        if study_dir.is_dir():  # else: no records there, said by render
            _check_folder(study_dir, "the tables and plots")
        files = render(study_dir, title, all_plans=all_plans,
                       echo=lambda m: click.echo(m, err=True))
        if readme is not None:
            if not update_readme(readme, study_dir):
                raise DataError(f"{readme} has no '<!-- study-table: ... -->' block for "
                                f"{study_dir}")
            files["readme"] = readme
    click.echo(f"written: {', '.join(str(p) for p in files.values())}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
