"""One small name -> factory registry, in the manner of timm's model registry.

Every extractor, classifier and dataset featbench knows is registered with a
decorator under a kebab-case name; ``featbench list`` prints them.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import UnknownNameError


@dataclass(frozen=True)
class Entry:
    """A registered name: the factory that builds it and a one-line description."""

    name: str
    factory: Callable[..., Any]
    description: str
    #: what each parameter accepts (scikit-learn's constraint vocabulary; see
    #: :mod:`featbench.constraints`); empty: the built object's own, if any
    constraints: dict[str, list] | None = None


class Registry:
    """A dict-backed registry filled by the :meth:`register` decorator.

    Parameters
    ----------
    kind : str
        What the registry holds ("feature", "classifier", "dataset"), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str = "",
                 constraints: dict[str, list] | None = None) -> Callable:
        """Register the decorated factory under ``name`` (duplicates are an error), with
        the constraints its parameters must satisfy (checked before any work)."""

        def decorator(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or (factory.__doc__ or "").strip().splitlines()[0]
            self._entries[name] = Entry(name, factory, doc, constraints)
            return factory

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists close matches and all valid names."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3) or [
                n for n in self._entries if name and name.lower() in n.lower()][:3]
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            plural = self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + "s"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} "
                f"Valid {plural}: {', '.join(self.names())}."
            ) from None

    def build(self, name: str, **params: Any) -> Any:
        """Call the factory registered under ``name`` with ``params``."""
        return self.get(name).factory(**params)
