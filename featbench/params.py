"""Parse ``-p name.param=value`` and ``--shard I/N`` options from the command line."""

from __future__ import annotations

from typing import Any

from .errors import ParameterError


def parse_value(text: str) -> Any:
    """``none``/``null`` -> None, ``true``/``false`` -> bool, numbers, ``a,b`` -> tuple."""
    text = text.strip()
    if "," in text:
        return tuple(parse_value(part) for part in text.split(",") if part.strip())
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["hog.block_norm=none", "linear-svm.C=0.01"]`` -> ``{"hog": {...}, "linear-svm": {...}}``.

    Examples
    --------
    >>> parse_params(["hog.block_norm=none", "hog.pixels_per_cell=4,4", "linear-svm.C=0.01"])
    {'hog': {'block_norm': None, 'pixels_per_cell': (4, 4)}, 'linear-svm': {'C': 0.01}}
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, value = item.partition("=")
        name, dot, param = target.strip().rpartition(".")
        if not eq or not dot or not name or not param:
            raise ParameterError(
                f"invalid parameter {item!r}: expected NAME.PARAM=VALUE, e.g. hog.block_norm=none"
            )
        out.setdefault(name, {})[param] = parse_value(value)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``1 <= I <= N`` (``--shard``)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ParameterError(f"--shard must be I/N, e.g. 2/8; got {text!r}") from None
    if not 1 <= i <= n:
        raise ParameterError(f"--shard I/N needs 1 <= I <= N; got {text!r}")
    return i, n
