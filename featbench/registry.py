"""One small name -> factory registry, in the manner of timm's model registry.

Every extractor, classifier and dataset featbench knows is registered with a
decorator under a kebab-case name; ``featbench list`` prints them.

An entry registered with :meth:`Registry.register_class` names its class as
``"module:Class"`` and is imported on first build: ``featbench list`` and
``featbench describe`` read the class's docstring and ``__init__`` defaults from
its source (:func:`class_spec`) and never import torch or scikit-learn, except for a
class that is scikit-learn's own (``ridge``'s ``RidgeClassifier``: describing it, or
``featbench list --params``, builds it).
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import UnknownNameError


@dataclass(frozen=True)
class ClassSpec:
    """What ``describe`` shows of a registered class, without building it."""

    #: ``module.Class`` where the class is defined
    path: str
    #: its docstring, cleaned as :func:`inspect.getdoc` does
    doc: str
    #: ``get_params(deep=False)`` of the object the entry builds
    params: dict[str, Any]


@dataclass(frozen=True)
class Entry:
    """A registered name: the factory that builds it and a one-line description."""

    name: str
    factory: Callable[..., Any]
    description: str
    #: what each parameter accepts (scikit-learn's constraint vocabulary; see
    #: :mod:`featbench.constraints`), or a function returning it (called once, on first
    #: use, so that registering imports no scikit-learn); empty: the built object's own
    declared: dict[str, list] | Callable[[], dict[str, list]] | None = None
    #: ``"module:Class"`` the factory builds (empty: a plain factory)
    target: str = ""
    #: parameters the factory sets over the class's ``__init__`` defaults
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def constraints(self) -> dict[str, list] | None:
        """The declared parameter constraints (resolved once when given as a function)."""
        if callable(self.declared):
            object.__setattr__(self, "declared", self.declared())
        return self.declared  # type: ignore[return-value]

    def spec(self, **params: Any) -> ClassSpec:
        """Class, docstring and parameters of ``factory(**params)``: read from the class's
        source when it allows (literal ``__init__`` defaults, own docstring), else built."""
        if self.target:
            static = class_spec(self.target)
            if static is not None:
                return ClassSpec(static.path, static.doc,
                                 {**static.params, **self.overrides, **params})
        est = self.factory(**params)
        cls = type(est)
        return ClassSpec(f"{cls.__module__}.{cls.__qualname__}", inspect.getdoc(cls) or "",
                         est.get_params(deep=False))


def _import_target(target: str) -> type:
    module, _, qualname = target.partition(":")
    return getattr(importlib.import_module(module), qualname)


def _module_file(module: str) -> str | None:
    """The source file of ``module`` found without importing it or its packages (an
    already imported module: its ``__file__``)."""
    import os
    import sys

    if module in sys.modules:
        return getattr(sys.modules[module], "__file__", None)
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported
    if spec is None:
        return None
    if not rest:
        return spec.origin
    paths = list(spec.submodule_search_locations or [])
    for k, part in enumerate(rest):
        last = k == len(rest) - 1
        for base in paths:
            package = os.path.join(base, part)
            if os.path.isfile(os.path.join(package, "__init__.py")):
                if last:
                    return os.path.join(package, "__init__.py")
                paths = [package]
                break
            if last and os.path.isfile(package + ".py"):
                return package + ".py"
        else:
            return None
    return None


def class_spec(target: str) -> ClassSpec | None:
    """Docstring and ``__init__`` defaults of class ``"module:Class"``, read from the
    module's source without importing it; ``None`` when the source does not say them
    plainly (no file, class not defined there, no own docstring or ``__init__``, a
    default that is not a literal, ``*args``/``**kwargs``, a parameter without default).
    """
    module, _, name = target.partition(":")
    try:
        origin = _module_file(module)
        if not origin or not origin.endswith(".py"):
            return None
        with open(origin, encoding="utf-8") as f:
            tree = ast.parse(f.read(), origin)
    except (ImportError, OSError, SyntaxError, ValueError):
        return None
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if node is None:
        return None
    doc = ast.get_docstring(node)
    init = next((n for n in node.body
                 if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if not doc or init is None or init.args.vararg or init.args.kwarg:
        return None
    args = init.args
    positional = [*args.posonlyargs, *args.args][1:]  # without self
    if len(args.defaults) != len(positional):
        return None
    pairs = list(zip(positional, args.defaults, strict=True))
    pairs += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    params: dict[str, Any] = {}
    for arg, default in pairs:
        if default is None:
            return None
        try:
            params[arg.arg] = ast.literal_eval(default)
        except (ValueError, TypeError, SyntaxError):
            return None
    return ClassSpec(f"{module}.{name}", doc, params)


class Registry:
    """A dict-backed registry filled by the :meth:`register` decorator.

    Parameters
    ----------
    kind : str
        What the registry holds ("feature", "classifier", "dataset"), used in messages.
    plugin_group : str, optional
        Entry-point group through which installed packages add entries
        (``featbench.extractors``, ``featbench.classifiers``): each entry point's name is
        the registered name and its value a ``"module:Class"`` target, registered as
        :meth:`register_class` does (imported only when built) the first time the
        registry is read. A plugin cannot replace a built-in name (it is skipped with a
        warning).
    """

    def __init__(self, kind: str, plugin_group: str | None = None) -> None:
        self.kind = kind
        self.plugin_group = plugin_group
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = plugin_group is None

    def _load_plugins(self) -> None:
        """Register the entry points of :attr:`plugin_group` (once)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        import warnings
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=self.plugin_group), key=lambda e: e.name):
            source = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
            if ep.name in self._entries:
                warnings.warn(f"{self.kind} {ep.name!r} from {source} is not registered: "
                              f"featbench has one of that name", UserWarning, stacklevel=3)
                continue
            if ":" not in ep.value:
                warnings.warn(f"{self.kind} {ep.name!r} from {source}: entry point "
                              f"{ep.value!r} is not 'module:Class'; skipped", UserWarning,
                              stacklevel=3)
                continue
            static = class_spec(ep.value)
            first = static.doc.splitlines()[0] if static is not None and static.doc else ""
            self.register_class(ep.name, ep.value,
                                f"{first} (plugin: {source})".strip())

    def register(self, name: str, description: str = "",
                 constraints: dict[str, list] | Callable[[], dict[str, list]] | None = None
                 ) -> Callable:
        """Register the decorated factory under ``name`` (duplicates are an error), with
        the constraints its parameters must satisfy (checked before any work)."""

        def decorator(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or (factory.__doc__ or "").strip().splitlines()[0]
            self._entries[name] = Entry(name, factory, doc, constraints)
            return factory

        return decorator

    def register_class(self, name: str, target: str, description: str,
                       constraints: dict[str, list] | Callable[[], dict[str, list]] | None
                       = None, **overrides: Any) -> None:
        """Register class ``target`` (``"module:Class"``) under ``name``, imported when
        first built; the factory passes ``overrides`` and then its own parameters.

        ``constraints`` may be a function returning them, called on first use.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

        def factory(**params: Any) -> Any:
            return _import_target(target)(**{**overrides, **params})

        factory.__qualname__ = factory.__name__ = target.partition(":")[2]
        self._entries[name] = Entry(name, factory, description, constraints, target,
                                    dict(overrides))

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        self._load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        self._load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists close matches and all valid names."""
        self._load_plugins()
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
