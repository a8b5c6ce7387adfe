"""One engine contract (:mod:`featbench.engines.base`): extraction decides what to
compute and where to put it, the engine the caller chose computes it, and no engine
imports :mod:`featbench.extraction` (nor extraction an engine)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featbench.datasets import load_dataset
from featbench.engines import get_engine
from featbench.engines.base import Work
from featbench.errors import ParameterError
from featbench.extraction import LocalEngine, extract_features
from featbench.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]
ENGINES = REPO / "featbench" / "engines"


def _module_imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it is imported (not inside functions, nor under
    ``if TYPE_CHECKING``), resolved to absolute ``featbench.*`` names."""
    package = "featbench." + ".".join(path.relative_to(REPO / "featbench").with_suffix("")
                                      .parts[:-1])
    package = package.rstrip(".")
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    return out


def test_no_import_circle_between_extraction_and_the_engines():
    for path in sorted(ENGINES.glob("*.py")):
        imports = _module_imports(path)
        assert not any(m.startswith("featbench.extraction") for m in imports), path.name
    extraction = _module_imports(REPO / "featbench" / "extraction.py")
    engines = {m for m in extraction if m.startswith("featbench.engines")}
    assert engines and all(m.startswith("featbench.engines.base") for m in engines)
    # importing the engines alone does not import extraction
    code = ("import sys, featbench.engines, featbench.engines.base, featbench.engines.ray_data; "
            "assert 'featbench.extraction' not in sys.modules, 'extraction imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


class ReverseEngine:
    """An engine of the contract's: the shards last to first, each image alone."""

    name = "reverse"

    def __init__(self) -> None:
        self.works: list[Work] = []

    def compute(self, work: Work) -> None:
        from featbench.engines.base import decode

        self.works.append(work)
        for j in reversed(work.todo):
            start, stop = work.entry.bounds(j)
            F = np.concatenate([work.estimator.transform(decode(work.source, work.view, i)[None])
                                for i in range(start, stop)]).astype(np.float32)
            won = work.entry.write(j, F, meta={"engine": self.name})
            work.result.computed += int(won)


def test_the_callers_engine_computes_what_extraction_planned(tmp_path):
    ds = load_dataset("digits").subset(60, 30, seed=0)
    engine = ReverseEngine()
    got = extract_features("hog", ds, {}, FeatureStore(tmp_path / "a"), shard_size=16,
                           engine=engine)
    ref = extract_features("hog", ds, {}, FeatureStore(tmp_path / "b"), shard_size=16)
    assert [(w.split, w.todo) for w in engine.works] == [("train", [0, 1, 2, 3]),
                                                         ("test", [0, 1])]
    assert all(w.entry.path.is_dir() for w in engine.works)  # created before computing
    assert got.parts[0]["shards"]["train"]["computed"] == 4
    for split in ("train", "test"):
        np.testing.assert_array_equal(got.splits[split], ref.splits[split])
    # nothing missing: the engine is not called
    again = extract_features("hog", ds, {}, FeatureStore(tmp_path / "a"), shard_size=16,
                             engine=engine)
    assert len(engine.works) == 2 and again.cached


def test_get_engine_names_and_errors():
    assert isinstance(get_engine("local"), LocalEngine)
    with pytest.raises(ParameterError, match="unknown engine 'spark'"):
        get_engine("spark")
    with pytest.raises(ParameterError, match="--ray-address"):
        get_engine("local", address="auto")


def test_ray_actors_get_the_precision_and_backend_the_key_resolved():
    """An actor on another node must compute what the driver's store key says: what
    "auto" resolved to on the driver is pinned in the actors' parameters."""
    import importlib.util

    from featbench.engines.ray_data import _actor_params
    from featbench.features.cnn import CNNEmbedding

    est = CNNEmbedding("resnet18", weights=None, device="cpu", precision="fp32",
                       backend="auto")
    has_openvino = importlib.util.find_spec("openvino") is not None
    assert _actor_params(est, "cpu") == {
        "device": "cpu", "backend": "openvino" if has_openvino else "torch"}
    pinned = CNNEmbedding("resnet18", weights=None, device="cpu", precision="fp32",
                          backend="torch")
    assert _actor_params(pinned, "cpu") == {"device": "cpu"}  # nothing left to resolve
