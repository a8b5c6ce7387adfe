"""Declared parameter constraints, checked for a whole plan before any work.

Each registered extractor and classifier declares what its parameters accept,
in scikit-learn's ``_parameter_constraints`` vocabulary (:class:`Interval`,
:class:`StrOptions`, ``"boolean"``, ``None``, ...; see
``sklearn.utils._param_validation``); scikit-learn's own classifiers bring
theirs. :func:`check_params` checks an estimator's values against them and
raises one :class:`~featbench.errors.ParameterError` wording for every error:
``invalid value NAME.PARAM=VALUE: must be ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import (  # noqa: F401 - re-exported for declarations
    Interval,
    StrOptions,
    _Constraint,
    make_constraint,
)

from .errors import ParameterError

__all__ = ["Interval", "IntSequence", "StrOptions", "check_params", "positive_int",
           "positive_real", "non_negative_real"]


class IntSequence(_Constraint):
    """An int, or a sequence of ints (of ``length`` items when given), each >= ``low``."""

    def __init__(self, low: int = 1, length: int | None = None) -> None:
        super().__init__()
        self.low, self.length = low, length

    def is_satisfied_by(self, val: Any) -> bool:
        if isinstance(val, (Integral, np.integer)) and not isinstance(val, bool):
            return int(val) >= self.low
        if not isinstance(val, Sequence) or isinstance(val, str) or not val:
            return False
        if self.length is not None and len(val) != self.length:
            return False
        return all(isinstance(v, (Integral, np.integer)) and not isinstance(v, bool)
                   and int(v) >= self.low for v in val)

    def __str__(self) -> str:
        n = f"{self.length} " if self.length else ""
        return f"an int >= {self.low} or {n}comma-separated ints >= {self.low}"


BOOLEAN = "true or false"


def positive_int() -> Interval:
    return Interval(Integral, 1, None, closed="left")


def positive_real() -> Interval:
    return Interval(Real, 0, None, closed="neither")


def non_negative_real() -> Interval:
    return Interval(Real, 0, None, closed="left")


def constraints_of(estimator, declared: dict[str, list] | None) -> dict[str, list]:
    """The declared constraints, else the estimator class's own (scikit-learn's)."""
    if declared:
        return declared
    return dict(getattr(type(estimator), "_parameter_constraints", {}) or {})


def check_value(name: str, param: str, value: Any, constraints: list) -> None:
    """Raise :class:`ParameterError` unless ``value`` satisfies one of ``constraints``."""
    made = [c if isinstance(c, IntSequence) else make_constraint(c) for c in constraints]
    if any(c.is_satisfied_by(value) for c in made):
        return
    shown = [BOOLEAN if str(c) == str(make_constraint("boolean")) else str(c)
             for c in made if not getattr(c, "hidden", False)]
    text = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    raise ParameterError(f"invalid value {name}.{param}={_show(value)}: must be {text}")


def check_params(estimator, name: str, declared: dict[str, list] | None = None,
                 only: Sequence[str] | None = None) -> None:
    """Check ``estimator``'s parameters (those in ``only``, else all) against its
    constraints; ``name`` is how the user names it (``hog``, ``linear-svm``)."""
    constraints = constraints_of(estimator, declared)
    for param, value in estimator.get_params(deep=False).items():
        if param in constraints and constraints[param] != "no_validation" and \
                (only is None or param in only):
            check_value(name, param, value, constraints[param])


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)
