"""Studies: named lists of feature x classifier rows with their published references.

A study is data (see :mod:`featbench.studies.cifar10`): which rows to run, with which
parameters, on which dataset, and what the literature reports for each row.
``featbench reproduce <study>`` runs it; new studies are registered the same way::

    STUDIES.register("my-study", "what it shows")(lambda: Study(...))
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from ..errors import ParameterError
from ..registry import Registry

STUDIES = Registry("study")

#: kinds of rows: hand-crafted features; ImageNet-pretrained CNN features + a linear
#: classifier ("cnn"); a ConvNet trained end to end on the dataset itself ("end-to-end")
FAMILIES = ("hand-crafted", "cnn", "end-to-end")
#: how tables and headlines name each family
FAMILY_NAMES = {"hand-crafted": "hand-crafted features",
                "cnn": "pretrained ConvNet features + linear classifier",
                "end-to-end": "ConvNet trained end to end"}


@dataclass(frozen=True)
class Reference:
    """A published number for one row.

    ``value`` is one accuracy in [0, 1] or a ``(low, high)`` band; ``metric`` says
    which of our accuracies it compares to ("test" or "val").
    """

    value: float | tuple[float, float]
    source: str
    metric: str = "test"
    note: str = ""

    @property
    def low(self) -> float:
        return self.value[0] if isinstance(self.value, tuple) else self.value

    @property
    def high(self) -> float:
        return self.value[1] if isinstance(self.value, tuple) else self.value

    def text(self) -> str:
        """``0.44`` or ``0.42-0.50``."""
        if self.low == self.high:
            return f"{self.low:.4g}"
        return f"{self.low:.4g}-{self.high:.4g}"

    def difference(self, ours: float | None) -> float | None:
        """Ours minus the reference; for a band, the distance outside it (0 inside).

        Examples
        --------
        >>> Reference(0.44, "x").difference(0.5)
        0.06
        >>> band = Reference((0.42, 0.50), "x")
        >>> band.difference(0.46), band.difference(0.4), band.difference(0.53)
        (0.0, -0.02, 0.03)
        """
        if ours is None:
            return None
        if ours < self.low:
            return round(ours - self.low, 6)
        if ours > self.high:
            return round(ours - self.high, 6)
        return 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"value": list(self.value) if isinstance(self.value, tuple) else self.value,
                "source": self.source, "metric": self.metric, "note": self.note}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Reference | None:
        if not d:
            return None
        value = d["value"]
        return cls(tuple(value) if isinstance(value, list) else value, d["source"],
                   d.get("metric", "test"), d.get("note", ""))


@dataclass(frozen=True)
class Row:
    """One feature x classifier pair of a study.

    ``params`` are ``-p`` style ``{name: {param: value}}`` for the row's extractors and
    classifier; ``quick`` overrides them under ``--quick``.
    """

    label: str
    features: str
    classifier: str
    family: str = "hand-crafted"
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    quick: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: Reference | None = None
    #: run only when the weights are already on this machine (never download)
    only_if_present: bool = False
    #: the few-shot protocol (``featbench run --shots``): K training images per class,
    #: ``shot_seeds`` draws; None: the classifier on the whole training split
    shots: int | None = None
    shot_seeds: int = 3

    @property
    def id(self) -> str:
        return f"{self.label}/{self.classifier}" + (f"/{self.shots}-shot" if self.shots else "")

    def protocol(self) -> dict[str, int] | None:
        """The row's protocol when it is not the whole-split probe (part of its key)."""
        return {"shots": int(self.shots), "seeds": int(self.shot_seeds)} if self.shots \
            else None

    def label_for(self, quick: bool) -> str:
        """The label, marked when ``--quick`` changes the row's parameters."""
        if not (quick and self.quick):
            return self.label
        changes = ", ".join(f"{k}={v}" for values in self.quick.values() for k, v in values.items())
        return f"{self.label} [quick: {changes}]"

    def params_for(self, quick: bool) -> dict[str, dict[str, Any]]:
        out = {k: dict(v) for k, v in self.params.items()}
        if quick:
            for name, values in self.quick.items():
                out.setdefault(name, {}).update(values)
        return out


@dataclass(frozen=True)
class Picture:
    """A ``featbench show`` figure of a study, drawn from some of its rows.

    ``rows`` are row ids (``label/classifier``): the figure shows each row's features,
    with the row's parameters (so it reads what the rows stored), and ``confusion`` is
    drawn for each row's classifier.
    """

    figure: str
    rows: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    """A dataset and its rows; ``quick_sizes`` are the seeded subset of ``--quick``;
    ``pictures`` are the figures ``featbench reproduce`` draws once their rows are done."""

    name: str
    dataset: str
    description: str
    rows: tuple[Row, ...]
    quick_sizes: dict[str, int] = field(default_factory=lambda: {"train_size": 5000,
                                                                  "test_size": 1000})
    pictures: tuple[Picture, ...] = ()

    def select(self, patterns: list[str] | None) -> list[Row]:
        """Rows whose id (``label/classifier``) matches any shell pattern (all without)."""
        if not patterns:
            return list(self.rows)
        rows = [r for r in self.rows if any(fnmatch.fnmatch(r.id, p) for p in patterns)]
        if not rows:
            raise ParameterError(
                f"--only {', '.join(patterns)} matches no row of study {self.name!r}; rows: "
                f"{', '.join(r.id for r in self.rows)}")
        return rows


def validate_study(study: Study) -> None:
    """Every row names registered extractors and a classifier, with valid parameters,
    and every reference has a source."""
    from ..plan import validate_plan

    ids = [r.id for r in study.rows]
    if len(set(ids)) != len(ids):
        raise ParameterError(f"study {study.name!r} has duplicate rows")
    for row in study.rows:
        if row.family not in FAMILIES:
            raise ParameterError(f"row {row.id}: family must be one of {FAMILIES}")
        if row.shots is not None and (not isinstance(row.shots, int) or row.shots < 1
                                      or row.shot_seeds < 1):
            raise ParameterError(f"row {row.id}: shots and shot_seeds must be positive "
                                 f"integers")
        for quick in (False, True):
            validate_plan([row.features], [row.classifier], row.params_for(quick))
        ref = row.reference
        if ref is not None:
            if not ref.source.strip():
                raise ParameterError(f"row {row.id}: reference without a source")
            if not 0 < ref.low <= ref.high <= 1 or ref.metric not in ("test", "val"):
                raise ParameterError(f"row {row.id}: bad reference {ref}")
    from ..show import FIGURES

    for pic in study.pictures:
        picture_params(study, pic, False)  # names the picture when it is wrong
    by_id = {r.id: r for r in study.rows}
    for pic in study.pictures:
        if pic.figure not in FIGURES:
            raise ParameterError(f"picture {pic.figure!r}: not one of {', '.join(FIGURES)}")
        unknown = [i for i in pic.rows if i not in by_id]
        if unknown or not pic.rows:
            raise ParameterError(f"picture {pic.figure!r}: no row {', '.join(unknown)}")
        for quick in (False, True):
            picture_params(study, pic, quick)


def picture_params(study: Study, pic: Picture, quick: bool) -> dict[str, dict[str, Any]]:
    """The extractors' parameters of ``pic``'s rows, merged (classifiers' left out); two
    rows setting one extractor differently are refused (a figure shows one setting)."""
    from ..features import split_spec

    by_id = {r.id: r for r in study.rows}
    merged: dict[str, dict[str, Any]] = {}
    for i in pic.rows:
        if i not in by_id:
            raise ParameterError(f"picture {pic.figure!r}: no row {i}")
        row = by_id[i]
        params = row.params_for(quick)
        for name in split_spec(row.features):
            values = params.get(name, {})
            if merged.setdefault(name, values) != values:
                raise ParameterError(
                    f"picture {pic.figure!r}: rows set {name} differently; one figure "
                    f"shows one setting of each extractor")
    return {k: v for k, v in merged.items() if v}


def get_study(name: str) -> Study:
    """The registered study ``name``."""
    return STUDIES.build(name)


from . import cifar10  # noqa: E402,F401  (registers the CIFAR-10 study)

__all__ = ["FAMILIES", "FAMILY_NAMES", "STUDIES", "Picture", "Reference", "Row", "Study",
           "get_study", "validate_study"]
