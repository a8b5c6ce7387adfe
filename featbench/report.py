"""Study tables, plots and a self-contained HTML report, drawn from run records alone.

``render(out_dir)`` reads ``out_dir/runs/*.json`` (written by ``featbench reproduce``)
and writes ``table.csv``, ``table.md``, ``table.json``, ``summary.md`` (the short table
a README shows, :func:`summary_markdown`), four PNG plots and ``report.html`` (table,
plots and the study's pictures in ``out_dir/pictures``, drawn by ``featbench show``,
embedded; opens offline). :func:`update_readme` rewrites a README's marked copy of
``summary.md``.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .results import (
    changed_params,
    format_cell,
    load_records,
    precision,
    protocol,
    solver_note,
    tuning_note,
    write_table,
)
from .studies import Reference

#: study table columns, in order
STUDY_COLUMNS = [
    "row", "family", "features", "feature_params", "precision", "classifier", "protocol",
    "feature_dim",
    "n_train",
    "n_test", "val_acc", "test_acc", "val_mean_class_acc", "test_mean_class_acc", "reference",
    "ref_metric", "difference", "extract_s", "images_per_s", "fit_s", "hyperparams", "tuning",
    "source", "error",
]
PLOTS = ("accuracy.png", "accuracy_vs_speed.png", "confusion.png", "per_class.png")
COLORS = {"hand-crafted": "#4c72b0", "cnn": "#dd8452", "end-to-end": "#55a868"}


def latest_per_row(records: list[dict]) -> list[dict]:
    """One record per study row: the newest without error, else the newest."""
    best: dict[str, dict] = {}
    for rec in sorted(records, key=lambda r: r.get("created", "")):
        key = (plan_of(rec), rec.get("study", {}).get("row") or rec.get("pair_key")
               or rec["run_id"])
        if key not in best or not rec.get("error") or best[key].get("error"):
            best[key] = rec
    return sorted(best.values(), key=lambda r: (_row_order(r), r.get("created", "")))


def _row_order(rec: dict) -> float:
    """Where a record's row stands: its place in its study's definition as registered
    now (rows added later stay beside their kin), else the order it was recorded with."""
    st = rec.get("study", {})
    from .studies import STUDIES, get_study

    if st.get("name") in STUDIES.names() and st.get("row"):
        ids = [r.id for r in get_study(st["name"]).rows]
        if st["row"] in ids:
            return float(ids.index(st["row"]))
    return float(st.get("order", 1e9))


def family_of(rec: dict) -> str:
    """The row's family; records of plain runs: ``cnn`` for pretrained CNN features,
    ``end-to-end`` for a ConvNet trained on the dataset (``convnet:*``)."""
    fam = rec.get("study", {}).get("family")
    spec = rec.get("features", {}).get("spec", "")
    return fam or ("cnn" if "cnn:" in spec else "end-to-end" if "convnet:" in spec
                   else "hand-crafted")


def study_row(rec: dict) -> dict:
    """One table row from a record, with its reference and our difference to it."""
    st = rec.get("study", {})
    ref = Reference.from_dict(st.get("reference"))
    ds, t, clf = rec.get("dataset", {}), rec.get("timings", {}), rec.get("classifier", {})
    ours = rec.get("val_acc" if ref and ref.metric == "val" else "test_acc")
    ms = t.get("extract_ms_per_image")
    return {
        "row": st.get("label") or rec.get("features", {}).get("spec"),
        "family": family_of(rec),
        "features": rec.get("features", {}).get("spec"),
        "feature_params": changed_params(rec.get("features", {}).get("params", {}),
                                         rec.get("features", {}).get("defaults")),
        "precision": precision(rec),
        "classifier": clf.get("name"),
        "protocol": protocol(rec),
        "feature_dim": rec.get("feature_dim"),
        "n_train": ds.get("n_train_fit"),
        "n_test": ds.get("n_test"),
        "val_acc": rec.get("val_acc"),
        "test_acc": rec.get("test_acc"),
        "val_mean_class_acc": rec.get("val_mean_class_acc"),
        "test_mean_class_acc": rec.get("test_mean_class_acc"),
        "reference": ref.text() if ref else "",
        "ref_metric": ref.metric if ref else "",
        "difference": ref.difference(ours) if ref else None,
        "extract_s": t.get("extract_s"),
        "images_per_s": round(1000.0 / ms, 1) if ms else None,
        "fit_s": t.get("fit_s"),
        "hyperparams": " ".join([f"{k}={v}" for k, v in sorted((clf.get("chosen") or {}).items())]
                                + [n for n in [solver_note(clf)] if n]),
        "tuning": tuning_note(clf),
        "source": ref.source if ref else "",
        "error": rec.get("error") or "",
    }


def study_table(records: list[dict]) -> pd.DataFrame:
    """The study table (:data:`STUDY_COLUMNS`), one row per study row."""
    return pd.DataFrame([study_row(r) for r in latest_per_row(records)], columns=STUDY_COLUMNS)


#: the summary table's columns (a README's copy of the study): heading, table column
SUMMARY_COLUMNS = (("kind", "family"), ("features", "row"), ("classifier", "classifier"),
                   ("test accuracy", "test_acc"), ("published", "reference"),
                   ("extract s", "extract_s"), ("fit s", "fit_s"), ("chosen", "hyperparams"))
#: how the summary names each family
SUMMARY_KINDS = {"hand-crafted": "hand-crafted", "cnn": "pretrained ConvNet",
                 "end-to-end": "ConvNet, end to end"}


def summary_markdown(df: pd.DataFrame) -> str:
    """The study table in a few columns, as Markdown: what a README shows.

    Rows with an error are left out; the published number carries its metric when it
    is not test accuracy.
    """
    lines = ["| " + " | ".join(h for h, _ in SUMMARY_COLUMNS) + " |",
             "|" + "|".join("---:" if c in ("test_acc", "extract_s", "fit_s") else "---"
                            for _, c in SUMMARY_COLUMNS) + "|"]
    for _, r in df.iterrows():
        if isinstance(r.get("error"), str) and r["error"]:
            continue
        cells = []
        for _, c in SUMMARY_COLUMNS:
            if c == "family":
                text = SUMMARY_KINDS.get(r[c], str(r[c]))
            elif c == "reference":
                text = format_cell(c, r[c])
                if text != "-" and r.get("ref_metric") and r["ref_metric"] != "test":
                    text += f" ({r['ref_metric']})"
            else:
                text = format_cell(c, r[c])
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: a README's marked copy of a study's summary table
README_BLOCK = re.compile(r"(<!-- study-table: (?P<folder>[^ ]+) -->\n)(?P<body>.*?)"
                          r"(<!-- /study-table -->)", re.S)


def update_readme(readme: str | Path, study_dir: str | Path) -> int:
    """Rewrite the blocks of ``readme`` marked for ``study_dir`` (``<!-- study-table:
    FOLDER -->`` ... ``<!-- /study-table -->``, FOLDER relative to the README) with its
    :func:`summary_markdown`; return how many blocks were rewritten."""
    readme, study_dir = Path(readme), Path(study_dir).resolve()
    text = readme.read_text()
    summary = summary_markdown(study_table(select_records(study_dir)[0]))
    count = 0

    def sub(m: re.Match) -> str:
        nonlocal count
        if (readme.parent / m["folder"]).resolve() != study_dir:
            return m[0]
        count += 1
        return m[1] + summary + m[4]

    new = README_BLOCK.sub(sub, text)
    if count:
        readme.write_text(new)
    return count


def _best(records: list[dict], family: str) -> dict | None:
    """The family's most accurate row among linear probes and own heads (the headline
    names them so; k-NN and few-shot rows are other protocols)."""
    ok = [r for r in records if not r.get("error") and r.get("confusion")
          and family_of(r) == family and protocol(r) in ("", "end to end")]
    return max(ok, key=lambda r: r["test_acc"]) if ok else None


def _headline_with_gap(records: list[dict], top: str) -> str:
    """The headline and the gap between the best hand-crafted row and the best ConvNet
    row of either kind, in points."""
    recs = latest_per_row(records)
    hand = _best(recs, "hand-crafted")
    nets = [b for b in (_best(recs, "cnn"), _best(recs, "end-to-end")) if b is not None]
    if hand is None or not nets:
        return top
    net = max(nets, key=lambda r: r["test_acc"])
    gap = 100 * (net["test_acc"] - hand["test_acc"])
    return f"{top}. The best ConvNet row is {gap:+.1f} points from the best hand-crafted one."


def _about(records: list[dict], df: pd.DataFrame, quick: bool) -> str:
    """Where the numbers come from and how to make them again."""
    last = records[-1]
    versions = last.get("versions", {})
    device = last.get("device", {})
    st, ds = last.get("study", {}), last.get("dataset", {})
    precisions = sorted({str(p) for p in df.get("precision", []) if p and str(p) != "nan"})
    source = Path(str(ds.get("source") or "")).name
    command = (f"featbench reproduce {st.get('name') or 'STUDY'}"
               + (" --quick" if quick else "")
               + (f" --data-dir <the folder holding {source}>" if source else ""))
    return (f"Made by featbench {versions.get('featbench', '?')} (torch "
            f"{versions.get('torch', '?')}, scikit-learn {versions.get('scikit-learn', '?')}) "
            f"on {device.get('platform', '?')}, {device.get('cpu_count', '?')} CPUs"
            + (f"; precision of the CNN rows: {', '.join(precisions)}" if precisions else "")
            + f". To reproduce: {command}. Each row's record (parameters, code version, "
            f"grid, seed) is in runs/.")


def headline(records: list[dict]) -> str:
    """The study in one sentence: the best row of each family, by test accuracy, each
    named with its kind of features (hand-crafted; pretrained ConvNet features + linear
    classifier; ConvNet trained end to end), e.g. ``best hand-crafted features: k-means
    patches + linear-svm 0.735; best ConvNet trained end to end: ... 0.78``."""
    from .studies import FAMILY_NAMES

    recs = latest_per_row(records)
    parts = []
    for family, name in FAMILY_NAMES.items():
        best = _best(recs, family)
        if best is not None:
            parts.append(f"best {name}: {_name(best)} {best['test_acc']:.3f}")
    return "; ".join(parts)


def _protocol_note(shown: object, sep: str = " (") -> str:
    """`` (k-NN)`` / `` (few-shot K=10 (3 seeds))`` after a row's name: how it was scored
    when that is not the tuned linear probe (an own head says so by its name)."""
    if not isinstance(shown, str) or shown in ("", "-", "end to end"):
        return ""
    return f"{sep}{shown}" + (")" if sep == " (" else "")


def _name(rec: dict) -> str:
    extra = _protocol_note(protocol(rec))
    return f"{rec.get('study', {}).get('label') or rec['features']['spec']} + " \
           f"{rec['classifier']['name']}{extra}"


def plot_all(records: list[dict], out_dir: Path, title: str = "") -> list[Path]:
    """Write the four PNG plots to ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in latest_per_row(records) if not r.get("error")]
    df = study_table(recs)
    paths = [out_dir / p for p in PLOTS]

    # (1) test accuracy per row, references marked
    fig, ax = plt.subplots(figsize=(8, 0.32 * max(len(df), 4) + 1.2))
    y = np.arange(len(df))[::-1]
    labels = [f"{r.row} + {r.classifier}{_protocol_note(r.protocol)}" for r in df.itertuples()]
    ax.barh(y, df["test_acc"], color=[COLORS.get(f, "gray") for f in df["family"]])
    text_x = dict(zip(y, df["test_acc"], strict=False))
    for yi, rec in zip(y, recs, strict=False):
        ref = Reference.from_dict(rec.get("study", {}).get("reference"))
        if ref is None:
            continue
        style = dict(color="black", marker="|" if ref.metric == "test" else "x", ms=12, lw=2)
        ax.plot([ref.low, ref.high], [yi, yi], **style)
        text_x[yi] = max(text_x[yi], ref.high + 0.01)  # the value beside, not on, the marker
    for yi, acc in zip(y, df["test_acc"], strict=False):
        ax.text(text_x[yi] + 0.005, yi, f"{acc:.3f}", va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 1.06)
    ax.set_xlabel("test accuracy (black: published reference; x = validation accuracy)")
    present = [f for f in COLORS if f in set(df["family"])]
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[f]) for f in present]
    ax.legend(handles, present, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(title or "accuracy per row", fontsize=10)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    # (2) accuracy vs extraction cost
    fig, (ax, key) = plt.subplots(1, 2, figsize=(11, 5), width_ratios=(3, 2))
    # one point per feature row (its classifiers share the extraction cost): the best one,
    # numbered by accuracy; the numbers are named in the key beside the plot (labels
    # written at the points overlap where rows are close)
    best_rows = df.dropna(subset=["images_per_s"]).sort_values("test_acc").groupby(
        "row", sort=False).tail(1).sort_values("test_acc", ascending=False)
    lines = []
    for r in best_rows.itertuples():
        if r.images_per_s > 0 and not math.isnan(r.images_per_s):
            n = len(lines) + 1
            ax.scatter(r.images_per_s, r.test_acc, color=COLORS.get(r.family, "gray"), s=30)
            ax.annotate(str(n), (r.images_per_s, r.test_acc), fontsize=7, xytext=(4, 2),
                        textcoords="offset points")
            lines.append((f"{n}. {r.row} ({r.classifier}{_protocol_note(r.protocol, ', ')}"
                          f"): {r.test_acc:.3f}",
                          COLORS.get(r.family, "gray")))
    key.set_axis_off()
    for k, (text, color) in enumerate(lines):
        key.text(0, 1 - k / max(len(lines), 18), text, fontsize=7, color=color,
                 va="top", transform=key.transAxes)
    ax.set_xscale("log")
    ax.set_xlabel("extraction throughput (images/s, log scale)")
    ax.set_ylabel("test accuracy (best classifier of each row)")
    ax.set_title(title or "accuracy vs extraction cost", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)

    # (3) confusion matrices and (4) per-class accuracy of the best row of each family
    best = [b for b in (_best(recs, f) for f in COLORS) if b is not None]
    classes = (best[0]["dataset"].get("classes") if best else None) or []
    fig, axes = plt.subplots(1, max(1, len(best)), figsize=(5.5 * max(1, len(best)), 5),
                             squeeze=False)
    for ax, rec in zip(axes[0], best, strict=False):
        m = np.asarray(rec["confusion"], dtype=float)
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        ticks = range(len(m))
        ax.set_xticks(ticks, classes or ticks, rotation=90, fontsize=7)
        ax.set_yticks(ticks, classes or ticks, fontsize=7)
        for i in ticks:
            for j in ticks:
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5,
                        color="white" if m[i, j] > 0.5 else "black")
        ax.set_title(f"{_name(rec)}: {rec['test_acc']:.3f}", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    if not best:
        axes[0][0].text(0.5, 0.5, "no finished rows", ha="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(best))
    for k, rec in enumerate(best):
        m = np.asarray(rec["confusion"], dtype=float)
        per_class = np.diag(m) / np.maximum(m.sum(1), 1)
        x = np.arange(len(per_class)) + (k - (len(best) - 1) / 2) * width
        family = family_of(rec)
        ax.bar(x, per_class, width, label=_name(rec), color=COLORS.get(family, "gray"))
    if best:
        n = len(best[0]["confusion"])
        ax.set_xticks(range(n), classes or range(n), rotation=45, fontsize=8)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2)
    ax.set_ylim(0, 1)
    ax.set_ylabel("per-class test accuracy")
    ax.set_title(title or "per-class accuracy", fontsize=10)
    fig.tight_layout()
    fig.savefig(paths[3], dpi=110)
    plt.close(fig)
    return paths


#: the columns report.html shows (the CSV / Markdown / JSON tables keep every column)
HTML_COLUMNS = ["row", "family", "classifier", "protocol", "feature_dim", "val_acc", "test_acc",
                "reference", "difference", "extract_s", "images_per_s", "fit_s", "hyperparams"]
#: how report.html heads them
HTML_HEADINGS = {"feature_dim": "dim", "val_acc": "val acc", "test_acc": "test acc",
                 "difference": "diff.", "extract_s": "extract (s)",
                 "images_per_s": "images/s", "fit_s": "fit (s)", "hyperparams": "chosen"}

_SORT_JS = """<script>
document.querySelectorAll('table.study th').forEach(function (th, col) {
  th.style.cursor = 'pointer';
  th.title = 'sort';
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1;
    th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    var key = function (r) {
      var t = r.cells[col].innerText.replace(/\\[\\d+\\]/g, '').trim(), v = parseFloat(t);
      return isNaN(v) ? t : v; };
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      return (typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0)
              : (typeof x === 'number' ? -1 : 1)) * dir; });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script>"""


def _html_table(df: pd.DataFrame) -> tuple[str, list[str]]:
    """The people's table (:data:`HTML_COLUMNS`, cells as the terminal shows them, each
    reference marked with a footnote number) and the footnotes (the sources)."""
    sources: list[str] = []
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in HTML_COLUMNS:
            text = html.escape(format_cell(c, r.get(c)))
            if c == "reference" and r.get("source"):
                if r["source"] not in sources:
                    sources.append(r["source"])
                n = sources.index(r["source"]) + 1
                text += f' <sup><a href="#ref{n}">[{n}]</a></sup>'
                if r.get("ref_metric"):
                    text += f" ({html.escape(str(r['ref_metric']))})"
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{html.escape(HTML_HEADINGS.get(c, c))}</th>" for c in HTML_COLUMNS)
    table = (f'<table class="study"><thead><tr>{head}</tr></thead><tbody>'
             + "\n".join(rows) + "</tbody></table>")
    return table, sources


#: pictures larger than this (bytes of PNG) are embedded as JPEG: photographs drawn into a
#: figure (nearest neighbours, confusions) compress several times better so, and the
#: report stays one file of a size people send around
JPEG_ABOVE = 250_000


def _embedded(p: Path) -> tuple[str, bytes]:
    """``(mime type, bytes)`` of a figure as the report embeds it: the PNG itself, or for a
    large one a JPEG (quality 90) of it."""
    data = p.read_bytes()
    if len(data) <= JPEG_ABOVE:
        return "image/png", data
    import io

    from PIL import Image

    buf = io.BytesIO()
    with Image.open(p) as im:
        im.convert("RGB").save(buf, "JPEG", quality=90, optimize=True)
    return ("image/jpeg", buf.getvalue()) if buf.tell() < len(data) else ("image/png", data)


def _figure(p: Path, caption: str) -> str:
    mime, data = _embedded(p)
    return (f'<figure><img alt="{html.escape(p.stem)}" src="data:{mime};base64,'
            f'{base64.b64encode(data).decode()}"><figcaption>'
            f"{html.escape(caption)}</figcaption></figure>")


def write_html(df: pd.DataFrame, plots: list[Path], path: Path, title: str,
               notes: str = "", headline_text: str = "", about: str = "",
               pictures: list[Path] | None = None) -> Path:
    """A self-contained report (no network: plots embedded as base64 PNG, the table
    sorted by a few lines of inline script): the title, the headline, the table of
    :data:`HTML_COLUMNS` with the references' sources as footnotes, notes, the plots,
    the study's ``pictures`` (:mod:`featbench.show`'s figures, captioned) and ``about``
    (machine, versions, how to reproduce). It fits a 1,280 px window."""
    from .show import caption

    images = "\n".join(_figure(p, p.stem) for p in plots)
    if pictures:
        images += "\n<h2>Pictures of the features</h2>\n" + "\n".join(
            _figure(p, caption(p.name)) for p in pictures)
    if all(c in df.columns for c in ("row", "test_acc")):
        table, sources = _html_table(df)
    else:  # a table of other columns: every cell as the terminal shows it
        shown = pd.DataFrame({c: [format_cell(c, v) for v in df[c]] for c in df.columns},
                             columns=df.columns)
        table, sources = shown.to_html(index=False, classes="study", border=0), []
    refs = "".join(f'<li id="ref{k}">{html.escape(src)}</li>'
                   for k, src in enumerate(sources, 1))
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;
color:#222;}} p.headline{{font-size:1.15em;background:#f4f6fa;padding:.6em .8em;
border-left:4px solid #4c72b0;}} table.study{{border-collapse:collapse;font-size:12px;
width:100%;}} table.study td,table.study th{{padding:3px 5px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top;overflow-wrap:anywhere;}} table.study th{{background:#eee;}}
img{{max-width:100%;height:auto;}} figure{{margin:1em 0;}} .small{{font-size:.85em;
color:#555;}}</style></head>
<body><h1>{html.escape(title)}</h1>
{f'<p class="headline">{html.escape(headline_text)}</p>' if headline_text else ""}
{table}
{f'<ol class="small">{refs}</ol>' if refs else ""}
<p class="small">{html.escape(notes)}</p>
{images}
{f'<p class="small">{html.escape(about)}</p>' if about else ""}
{_SORT_JS}
</body></html>
""")
    return path


def plan_of(rec: dict) -> tuple:
    """What makes records comparable rows of one table: the study, the data (name,
    fingerprint, sizes), the seed, the mode and the featbench version."""
    st, ds = rec.get("study", {}), rec.get("dataset", {})
    return (st.get("name"), ds.get("name"), ds.get("fingerprint"), ds.get("n_train"),
            ds.get("n_test"), rec.get("seed"), bool(st.get("quick")),
            rec.get("versions", {}).get("featbench"))


def describe_plan(plan: tuple) -> str:
    study, name, _, n_train, n_test, seed, quick, version = plan
    return (f"{study or 'runs'} on {name} ({n_train} train / {n_test} test), seed {seed}"
            f"{', QUICK' if quick else ''}, featbench {version or '?'}")


def select_records(out_dir: str | Path, keys: set[str] | None = None, all_plans: bool = False,
                   echo=None) -> tuple[list[dict], str]:
    """The records of ``out_dir/runs`` one table shows (see :func:`render`), and the
    note that says the table mixes plans ("" when it does not)."""
    out_dir = Path(out_dir)
    records = load_records([out_dir / "runs"])
    mixed = ""
    if keys is not None:
        records = [r for r in records if r.get("study", {}).get("key") in keys]
        if not records:
            raise DataError(f"no finished rows of this plan in {out_dir / 'runs'}")
    else:
        plans: dict[tuple, list[dict]] = {}
        for rec in records:
            plans.setdefault(plan_of(rec), []).append(rec)
        if len(plans) > 1:
            newest = plan_of(records[-1])
            if all_plans:
                mixed = f"MIXED: {len(plans)} plans in one table"
                if echo:
                    echo(f"note: {mixed} ({'; '.join(map(describe_plan, plans))})")
            else:
                left = len(records) - len(plans[newest])
                records = plans[newest]
                if echo:
                    echo(f"note: {out_dir} holds {len(plans)} plans; showing the newest "
                         f"({describe_plan(newest)}); {left} record(s) of the others left "
                         f"out (--all-plans shows them mixed)")
    return records, mixed


def render(out_dir: str | Path, title: str | None = None,
           keys: set[str] | None = None, all_plans: bool = False,
           echo=None) -> dict[str, Path]:
    """Tables (CSV, Markdown, JSON), plots and report.html from ``out_dir/runs``.

    ``keys`` keeps only the records of those study rows (one plan's rows, when a
    folder also holds records of other datasets, seeds or sizes). Without ``keys``
    the records of the newest plan (:func:`plan_of`) are kept and ``echo`` is told
    how many records of other plans were left out; ``all_plans`` keeps every
    record instead, and the title and report say that the table mixes plans.
    """
    out_dir = Path(out_dir)
    records, mixed = select_records(out_dir, keys, all_plans, echo)
    df = study_table(records)
    quick = any(r.get("study", {}).get("quick") for r in records)
    ds = records[-1].get("dataset", {})
    # the data folder's own name, not the absolute path of this machine
    source = Path(str(ds.get("source") or "")).name
    title = title or (f"featbench study on {ds.get('name')}"
                      + (f" ({source})" if source else "")
                      + (" - QUICK subset, not the full study" if quick else ""))
    if mixed:
        title += f" - {mixed}"
    out = {}
    for ext in ("csv", "md", "json"):
        out[f"table.{ext}"] = write_table(df, out_dir / f"table.{ext}")
    for p in plot_all(records, out_dir, title):
        out[p.name] = p
    top = headline(records)
    notes = (
             f"{len(df)} rows; train {ds.get('n_train')} / test {ds.get('n_test')} images. "
             "difference = ours minus the reference (0 inside a published band), on the "
             "metric the reference reports (ref_metric). tuning: +N = values added past "
             "the grid's edge, edge = the chosen value is still on an edge of the values "
             "tried, iter-limit = its solver stopped at the iteration limit.")
    notes += (" own-head = the ConvNet's own trained head (end to end, nothing tuned); "
              "logreg on convnet:* = its penultimate features + logistic regression.")
    if mixed:
        notes = f"{mixed}: rows come from different runs and are not comparable. " + notes
    out["summary.md"] = out_dir / "summary.md"
    out["summary.md"].write_text(summary_markdown(df))
    out["report.html"] = write_html(df, [out[p] for p in PLOTS], out_dir / "report.html",
                                    title, notes,
                                    headline_text=_headline_with_gap(records, top),
                                    about=_about(records, df, quick),
                                    pictures=sorted((out_dir / "pictures").glob("*.png")))
    return out
