"""What the lossy JPEG copy of CIFAR-10 costs each feature family, on the same images.

``shared/data/cifar10-exact-4k`` holds the first 4,000 images of the official
``data_batch_1`` with their exact pixels (PNG); ``index.csv`` pairs each with its
twin in the JPEG copy (``cifar10-jpeg/train/``, mean absolute pixel difference
about 5.7 on 0-255). This script builds two featbench datasets from them with the
same labels, the same order and the same seeded, stratified train/test split
(default 3,000 / 1,000): one of the PNGs, one of their JPEG twins (each a
``list:`` file with a ``split`` column, loaded by
:func:`featbench.datasets.folder.load_list_file`). For every feature family it
extracts both through featbench's own extraction
(:func:`featbench.extraction.extract_features`, same ``--seed``, so a learned
codebook is fitted by the same protocol on its own twin's training images), tunes
the classifier on a seeded validation split of train and refits on all of train
(:func:`featbench.classifiers.tuning.tune_and_fit`, as ``featbench run`` does),
and predicts every test image. As both runs score the very same 1,000 images,
the difference is judged paired: a 95 % interval from a paired bootstrap over
the test images (per-image correctness of both runs resampled together), its
standard error, and McNemar's discordant counts (b: only the exact run right,
c: only the JPEG run right) with the exact two-sided binomial p-value.

Each family runs with the configuration of its row in the CIFAR-10 study
(``featbench/studies/cifar10.py``: the study's bag-of-words and Fisher settings and
their C grids, k-means K = 1600 with C in 1e-4..1e-2, HOG + hue with the CS231n
``hog.block_norm=none``; plain ``hog`` is Dalal-Triggs), with three changes for time
(:data:`FAST`, printed when used): the k-means codebook is fitted on 100,000 random
patches instead of 400,000, the CNN sees 128 px instead of its own 224 px, and raw
pixels' SVM is tuned on C in 1e-5..1e-3 instead of 1e-5..1.
``-p name.param=value`` overrides any of these as on the featbench command line
(``-p kmeans-patches.n_patches=400000 -p cnn:efficientnet-lite0.size=224`` is the
study's protocol; ``-p linear-svm.C=0.001`` fixes C for every family);
``--library-defaults`` drops the study's and this script's settings. BLAS runs one
thread during extraction (``--blas-threads``): on a shared 2-core machine
scikit-learn's k-means (OpenMP loops around OpenBLAS calls) ran 15x slower with
two.

    export FEATBENCH_CACHE=/tmp/fb-cache      # the feature store lives there
    python benchmarks/exact_vs_jpeg.py --out results/exact_vs_jpeg.json
    python benchmarks/exact_vs_jpeg.py -f kmeans-patches -p kmeans-patches.n_patches=400000

Measured once (seed 0, 3,000 / 1,000, linear SVM, on a 2-core CPU that other jobs
shared): the default run took 993 s (1-minute load average 3.2 at the start, 2.0 at
the end; ``CPU s`` in the table is the cost that does not depend on such load).
Exact minus JPEG, in points with 95 % paired-bootstrap intervals: raw, color-hist,
hog, HOG + hue and fisher within +-2 (every interval includes 0); bovw -3.9
[-6.8, -1.0] (the JPEG run chose another C); k-means +1.1 [-1.7, +3.8] with
100,000 patches (0.602 vs 0.591) and +3.4 [+0.8, +6.0] with the study's 400,000
(0.647 vs 0.613); EfficientNet-Lite0 +7.9 [+5.6, +10.3] at 128 px (0.807 vs
0.728) and +8.7 [+6.5, +11.0] at its own 224 px (0.857 vs 0.770; 536 s for that
family alone).

Features go to the featbench store (``$FEATBENCH_CACHE/store``), so a rerun only
refits classifiers (extraction times shown are then the stored encoding times,
without the codebook fit, marked ``*``); ``--no-cache`` computes everything in a
temporary store.

What ``shared/data/README.md`` already reports: one earlier measurement of this
kind (3,000 / 1,000, featbench, 2026-11-26) gave k-means patches (K = 1600) +
linear SVM 0.611 exact vs 0.584 JPEG, HOG + hue 0.462 vs 0.439 and raw pixels
0.346 vs 0.355, "about +-1.5 points of noise each, paired". This script
repeats that for every family, with the paired uncertainty computed rather
than estimated.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's featbench, even where another is installed
#: this benchmark's settings on top of the study's rows (feature spec -> ``-p`` style
#: parameters), for time on 2 cores: the k-means codebook fitted on 100,000 patches (the
#: study's 400,000 took ~500 s per twin), the CNN at 128 px (its own 224 px ran at ~8
#: images/s under load), and raw pixels' SVM tuned on C in 1e-5..1e-3 (it chose 1e-4;
#: the default grid's C = 0.01..1 hit L-BFGS's iteration limit, ~3 minutes per twin).
#: ``-p`` overrides any of them.
FAST = {
    "raw": {"linear-svm": {"C": (1e-5, 1e-4, 1e-3)}},
    "kmeans-patches": {"kmeans-patches": {"n_patches": 100_000}},
    "cnn:efficientnet-lite0": {"cnn:efficientnet-lite0": {"size": 128}},
}
DEFAULT_FEATURES = ("raw,color-hist,hog,hog+color-hist,bovw,fisher,kmeans-patches,"
                    "cnn:efficientnet-lite0")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"),
                    help="folder holding cifar10-exact-4k/ and cifar10-jpeg/")
    ap.add_argument("-f", "--features", default=DEFAULT_FEATURES,
                    help="comma-separated feature specs (default: %(default)s)")
    ap.add_argument("--clf", default="linear-svm", help="classifier (default: %(default)s)")
    ap.add_argument("-p", "--param", action="append", default=[],
                    help="NAME.PARAM=VALUE, as on the featbench command line (repeatable)")
    ap.add_argument("--library-defaults", action="store_true",
                    help="ignore the CIFAR-10 study's per-family configurations")
    ap.add_argument("--train-size", type=int, default=3000)
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--val-size", type=float, default=None,
                    help="validation images carved out of train (count, or fraction < 1; "
                         "default: featbench's, a tenth of train)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the train/test split, the validation split, the "
                         "codebook fit sample, the classifier and the bootstrap")
    ap.add_argument("--n-boot", type=int, default=10_000, help="paired bootstrap resamples")
    ap.add_argument("--no-cache", action="store_true",
                    help="extract into a temporary store instead of $FEATBENCH_CACHE/store")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads during extraction (0: leave as is). 1 by default: "
                         "the k-means codebook fit (scikit-learn's OpenMP loops around "
                         "OpenBLAS calls) ran 15x slower with 2 BLAS threads on a shared "
                         "2-core machine")
    ap.add_argument("--out", default=None, help="write the results as JSON to this path")
    return ap.parse_args(argv)


def cpu_seconds() -> float:
    """CPU time of this process, its live descendants (scikit-learn's worker processes)
    and its reaped children: the cost of a step whatever else the machine runs."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    try:
        tick = os.sysconf("SC_CLK_TCK")
        stats = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(d.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
        family, grew = {os.getpid()}, True
        while grew:
            new = {pid for pid, (ppid, _) in stats.items() if ppid in family} - family
            family |= new
            grew = bool(new)
        total += sum(stats[pid][1] for pid in family - {os.getpid()}) / tick
    except (OSError, ValueError, AttributeError):
        pass  # no /proc: this process and its reaped children only
    return total


def blas_limit(n: int):
    """Limit BLAS threads (``n`` > 0) for the block, else change nothing."""
    import contextlib

    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas") if n > 0 else contextlib.nullcontext()


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# -- data -----------------------------------------------------------------------------
def read_index(data_dir: Path) -> list[dict[str, str]]:
    index = data_dir / "cifar10-exact-4k" / "index.csv"
    if not index.is_file():
        sys.exit(f"{index} not found (see shared/data/README.md, section cifar10-exact-4k); "
                 f"pass --data-dir")
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for col in ("exact_png", "jpeg_copy"):
            if not (data_dir / r[col]).is_file():
                sys.exit(f"{index}: {data_dir / r[col]} does not exist")
    return rows


def split_rows(rows: list[dict[str, str]], n_train: int, n_test: int, seed: int
               ) -> np.ndarray:
    """``"train"`` / ``"test"`` / ``""`` (unused) per row: seeded and stratified by class."""
    from sklearn.model_selection import train_test_split

    if n_train + n_test > len(rows):
        sys.exit(f"--train-size + --test-size = {n_train + n_test} > {len(rows)} images")
    y = np.asarray([r["class"] for r in rows])
    idx = np.arange(len(rows))
    rest = len(rows) - n_train - n_test
    if rest:
        idx, _ = train_test_split(idx, test_size=rest, random_state=seed, stratify=y)
    tr, te = train_test_split(idx, train_size=n_train, test_size=n_test, random_state=seed,
                              stratify=y[idx])
    split = np.full(len(rows), "", dtype=object)
    split[tr], split[te] = "train", "test"
    return split


def write_lists(rows, split, data_dir: Path, folder: Path) -> dict[str, Path]:
    """One ``path,label,split`` list file per twin, rows in index order (absolute paths,
    which featbench stores relative to the list file's folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for twin, col in (("exact", "exact_png"), ("jpeg", "jpeg_copy")):
        path = folder / f"{twin}.csv"
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "split"])
            for r, s in zip(rows, split, strict=True):
                if s:
                    w.writerow([str((data_dir / r[col]).resolve()), r["class"], s])
        os.replace(tmp, path)  # unchanged content keeps the features' store keys
        out[twin] = path
    return out


# -- configuration --------------------------------------------------------------------
def study_params(spec: str, clf: str) -> dict:
    """``spec``'s parameters in the CIFAR-10 study: the extractors' of its first row,
    the classifier's of its first row with ``clf``."""
    from featbench.classifiers import CLASSIFIERS
    from featbench.studies.cifar10 import ROWS

    rows = [r for r in ROWS if r.features == spec]
    out = {k: dict(v) for k, v in (rows[0].params if rows else {}).items()
           if k not in CLASSIFIERS}
    for row in rows:
        if row.classifier == clf:
            out.update({k: dict(v) for k, v in row.params.items() if k == clf})
            break
    return out


def default_params(spec: str, clf: str) -> dict:
    """The study's row for ``spec``, then this benchmark's :data:`FAST` settings."""
    from featbench.classifiers import CLASSIFIERS

    fast = {n: v for n, v in FAST.get(spec, {}).items() if n == clf or n not in CLASSIFIERS}
    return merged(study_params(spec, clf), fast)


def fast_note(specs: list[str], clf: str, user: dict) -> str:
    """The :data:`FAST` settings this run uses (those no ``-p`` overrides), in words."""
    from featbench.classifiers import default_grid
    from featbench.features import build_extractor

    notes = []
    for spec in specs:
        for name, values in default_params(spec, clf).items():
            for key, value in values.items():
                if key in FAST.get(spec, {}).get(name, {}) and key not in user.get(name, {}):
                    own = (default_grid(name).get(key) if name == clf
                           else build_extractor(name).get_params()[key])
                    shown = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) \
                        else value
                    own = ",".join(f"{v:g}" for v in own) if isinstance(own, list) else own
                    own = "the model's own" if own is None else own
                    where = f" for {spec}" if name == clf else ""
                    notes.append(f"{name}.{key}={shown}{where} (default {own})")
    return ", ".join(notes)


def merged(base: dict, override: dict) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for name, values in override.items():
        out.setdefault(name, {}).update(values)
    return out


def shown_params(params: dict, spec: str, clf: str) -> str:
    from featbench.features import split_spec

    names = [*split_spec(spec), clf]
    parts = [f"{n}.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
             for n in names for k, v in sorted(params.get(n, {}).items())]
    return " ".join(parts) or "library defaults"


# -- evaluation -----------------------------------------------------------------------
def fit_predict(ds, feats, clf: str, clf_params: dict, seed: int, val_size):
    """featbench's protocol (``runner.run_pair``), keeping the per-image predictions."""
    from scipy.linalg import LinAlgWarning
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    from featbench.classifiers.tuning import tune_and_fit
    from featbench.parallel import get_n_jobs
    from featbench.plan import classifier_setup
    from featbench.runner import fit_data

    if any(feats.bad.values()):
        raise RuntimeError("undecodable images: the pairing needs every image")
    X, y, val_mask, X_test, y_test, n_val = fit_data(ds, feats, seed, val_size)
    pipe, grid = classifier_setup(clf, clf_params, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", LinAlgWarning)
        tuned = tune_and_fit(clone(pipe), grid, X, y, val_mask, n_jobs=get_n_jobs())
    pred = tuned.estimator.predict(X_test)
    return {"pred": pred, "y_test": y_test, "val_acc": tuned.val_acc,
            "chosen": tuned.best_params, "val_scores": tuned.val_scores,
            "fit_s": tuned.fit_s, "dim": int(X.shape[1]), "n_val": n_val,
            "warnings": sorted({str(w.message).splitlines()[0] for w in caught})}


def paired_stats(right_a: np.ndarray, right_b: np.ndarray, n_boot: int, seed: int) -> dict:
    """Accuracy difference a - b on the same images, with paired uncertainties."""
    from scipy.stats import binomtest

    d = right_a.astype(np.int8) - right_b.astype(np.int8)
    n = len(d)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for start in range(0, n_boot, 1000):  # 1000 resamples at a time: bounded memory
        k = min(1000, n_boot - start)
        boots[start:start + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    b = int(((d == 1)).sum())
    c = int(((d == -1)).sum())
    return {
        "diff": float(d.mean()),
        "se": float(d.std(ddof=1) / np.sqrt(n)),
        "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
        "mcnemar_b": b, "mcnemar_c": c,
        "mcnemar_p": float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0,
    }


def run(args: argparse.Namespace) -> dict:
    from featbench.cache import cache_dir
    from featbench.datasets.folder import load_list_file
    from featbench.extraction import extract_features
    from featbench.params import parse_params
    from featbench.plan import validate_plan
    from featbench.provenance import package_versions
    from featbench.store import FeatureStore

    t_start, load_start = time.perf_counter(), _load()
    data_dir = Path(args.data_dir).expanduser().resolve()
    specs = [s.strip() for s in args.features.split(",") if s.strip()]
    user = parse_params(args.param)
    validate_plan(specs, [args.clf], user)  # a typo fails now, not after an extraction
    val_size = (None if args.val_size is None else
                args.val_size if args.val_size < 1 else int(args.val_size))

    rows = read_index(data_dir)
    split = split_rows(rows, args.train_size, args.test_size, args.seed)
    lists = write_lists(rows, split, data_dir, cache_dir() / "exact_vs_jpeg" /
                        f"seed{args.seed}-{args.train_size}-{args.test_size}")
    ds = {twin: load_list_file(path) for twin, path in lists.items()}
    for s in ("train", "test"):
        a, b = ds["exact"].split(s), ds["jpeg"].split(s)
        assert np.array_equal(a.labels, b.labels) and ds["exact"].classes == ds["jpeg"].classes
        assert [Path(p).parent.name for p in a.paths] == [Path(p).parent.name for p in b.paths]
    used = split != ""
    mad = np.asarray([float(r["mean_abs_diff"]) for r in rows])[used]
    test_mad = np.asarray([float(r["mean_abs_diff"]) for r in rows])[split == "test"]
    n_jobs = os.environ.get("FEATBENCH_JOBS") or os.cpu_count()
    print(f"CIFAR-10 data_batch_1, first 4,000 images: exact PNG vs JPEG twin "
          f"(mean |difference| {mad.mean():.2f}, median {np.median(mad):.2f} on 0-255)")
    print(f"split seed {args.seed}: {len(ds['exact'].train)} train / {len(ds['exact'].test)} "
          f"test, stratified, identical for both twins; classifier {args.clf} tuned on a "
          f"validation split of train, refit on train; {n_jobs} worker threads")
    fast = fast_note(specs, args.clf, user) if not args.library_defaults else ""
    if fast:
        print(f"for time, this benchmark sets {fast} (-p overrides)")

    tmp = None
    if args.no_cache:
        tmp = tempfile.TemporaryDirectory(prefix="featbench-exact-jpeg-")
        store = FeatureStore(tmp.name)
    else:
        store = FeatureStore(cache_dir() / "store")
    results = []
    try:
        for spec in specs:
            base = {} if args.library_defaults else default_params(spec, args.clf)
            params = merged(base, user)
            res = {"feature": spec,
                   "params_shown": shown_params(params, spec, args.clf)}
            print(f"\n{spec}: {res['params_shown']}", flush=True)
            for twin in ("exact", "jpeg"):
                t0, c0 = time.perf_counter(), cpu_seconds()
                with blas_limit(args.blas_threads):
                    feats = extract_features(spec, ds[twin], params, store, seed=args.seed)
                wall = time.perf_counter() - t0
                out = fit_predict(ds[twin], feats, args.clf, params.get(args.clf, {}),
                                  args.seed, val_size)
                out["wall_s"] = time.perf_counter() - t0
                out["cpu_s"] = cpu_seconds() - c0
                right = out.pop("pred") == out.pop("y_test")
                res[twin] = {**out, "test_acc": float(right.mean()), "right": right,
                             "extract_s": feats.extract_s, "extract_wall_s": wall,
                             "cached": feats.cached, "params": feats.params,
                             "parts": [{k: v for k, v in p.items() if k != "shards"}
                                       for p in feats.parts]}
                print(f"  {twin:5s} test {right.mean():.3f}  val {out['val_acc']:.3f}  "
                      f"chosen {out['chosen']}  extract {feats.extract_s:.1f} s"
                      f"{' (stored)' if feats.cached else ''}  fit {out['fit_s']:.1f} s  "
                      f"(wall {out['wall_s']:.0f} s, CPU {out['cpu_s']:.0f} s)",
                      flush=True)
            res.update(paired_stats(res["exact"]["right"], res["jpeg"]["right"],
                                    args.n_boot, args.seed))
            results.append(res)
    finally:
        if tmp is not None:
            tmp.cleanup()
    wall_s, load_end = time.perf_counter() - t_start, _load()

    print()
    print(format_table(results, len(ds["exact"].test)))
    print(f"\nexact - JPEG on the same {len(ds['exact'].test)} test images (mean |difference| "
          f"{test_mad.mean():.2f}); 95% CI: paired bootstrap ({args.n_boot} resamples of the "
          f"test images); b/c: test images only the exact / only the JPEG run got right; "
          f"p: exact McNemar (binomial) test. extract s: both splits of each twin, codebook "
          f"fit included; * = read from the feature store (the stored encoding time, without "
          f"the codebook fit); "
          f"CPU s: CPU time of both twins' extraction and classifier tuning (all threads "
          f"and worker processes). "
          f"Wall time {wall_s:.0f} s on {os.cpu_count()} cores (1-minute load average "
          f"{load_start:.1f} at the start, {load_end:.1f} at the end).")

    return {
        "benchmark": "exact_vs_jpeg",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "data": {"index": str(data_dir / "cifar10-exact-4k" / "index.csv"),
                 "n_train": len(ds["exact"].train), "n_test": len(ds["exact"].test),
                 "seed": args.seed, "test_batch1_indices":
                     [int(r["batch1_index"]) for r, s in zip(rows, split, strict=True)
                      if s == "test"],
                 "mean_abs_diff_used": float(mad.mean()),
                 "fingerprints": {t: d.fingerprint for t, d in ds.items()}},
        "fast_settings": fast, "classifier": args.clf, "n_boot": args.n_boot, "wall_s": wall_s,
        "cpu_count": os.cpu_count(), "load_average": [load_start, load_end],
        "versions": package_versions(),
        "results": results,
    }


def format_table(results: list[dict], n_test: int) -> str:
    head = ["feature", "dim", "exact", "JPEG", "diff", "95% CI", "SE", "b/c", "p",
            "C exact/JPEG", "extract s exact/JPEG", "CPU s"]
    lines = []
    for r in results:
        e, j = r["exact"], r["jpeg"]

        def chosen(x):
            return ",".join(f"{v:g}" if isinstance(v, float) else str(v)
                            for v in x["chosen"].values()) or "-"

        def ext(x):
            return f"{x['extract_s']:.1f}{'*' if x['cached'] else ''}"

        lo, hi = r["ci95"]
        lines.append([r["feature"], str(e["dim"]), f"{e['test_acc']:.3f}", f"{j['test_acc']:.3f}",
                      f"{100 * r['diff']:+.1f}", f"[{100 * lo:+.1f}, {100 * hi:+.1f}]",
                      f"{100 * r['se']:.1f}", f"{r['mcnemar_b']}/{r['mcnemar_c']}",
                      f"{r['mcnemar_p']:.2f}", f"{chosen(e)} / {chosen(j)}",
                      f"{ext(e)} / {ext(j)}", f"{e['cpu_s'] + j['cpu_s']:.0f}"])
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row) for row in lines]
    out.append(f"(accuracies on {n_test} test images; diff, CI and SE in points)")
    return "\n".join(out)


def main(argv=None) -> None:
    args = parse_args(argv)
    from featbench.errors import FeatbenchError

    try:
        report = run(args)
    except FeatbenchError as exc:
        sys.exit(f"error: {exc}")
    if args.out:
        from featbench.results import write_json_atomic

        for r in report["results"]:
            for twin in ("exact", "jpeg"):
                r[twin]["right"] = r[twin]["right"].astype(int).tolist()
        write_json_atomic(Path(args.out), report)
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
