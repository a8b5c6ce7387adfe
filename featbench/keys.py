"""The key of a feature x classifier pair: everything that determines its numbers.

``featbench reproduce`` skips study rows whose key has a finished record, and
``featbench run`` skips pairs likewise (``--rerun`` fits them again), so an
interrupted sweep resumes where it stopped and leaves no duplicate records.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

from .cache import make_key
from .classifiers import large_fit_placement
from .classifiers.tuning import BOUNDS, MAX_EXTENSIONS
from .datasets import Dataset
from .extraction import plan
from .features import split_spec
from .plan import classifier_setup
from .provenance import canonical, package_versions
from .splits import tuning_split

#: extractor parameters that say where a pair runs, not what it computes: not in its key
#: (for the extractors that leave them out of their stored features' key, ``_cache_exclude``:
#: ``convnet:<arch>``'s batch_size is its training mini-batch, which changes the numbers)
PLACEMENT = ("device", "batch_size")
#: the classifiers' (an MLP's batch_size is its mini-batch: it changes the numbers)
CLASSIFIER_PLACEMENT = ("device",)


def placement_of(name: str) -> tuple[str, ...]:
    """The :data:`PLACEMENT` parameters of extractor ``name`` (those its stored features'
    key leaves out too); every placement parameter for a name that is no extractor."""
    from .features import build_extractor

    try:
        exclude = getattr(build_extractor(name), "_cache_exclude", PLACEMENT)
    except Exception:  # noqa: BLE001 - not an extractor (a classifier's name)
        return PLACEMENT
    return tuple(k for k in PLACEMENT if k in exclude)


def pair_key(ds: Dataset, features: str, classifier: str, params: dict[str, Any], seed: int,
             *, val_size: int | float | None = None, extend_grid: bool = True,
             dtype: str = "float32", skip_bad: bool = False,
             extra: dict[str, Any] | None = None) -> str:
    """Everything that determines a pair's number, hashed.

    For each extractor, the key of its stored features less the split's data (class,
    resolved parameters and precision, featbench version and the extractor's code,
    library versions, the view of the images, the data the codebook was fitted on, and
    for torch extractors the precision, device type and backend resolved here), plus
    the data's fingerprint, the seed and the validation split (``val_size``) and, for
    the classifier, its resolved parameters and grid, the solver and device type a
    large fit takes on this machine (:func:`~featbench.classifiers.large_fit_placement`),
    the tuning rules and the code of :mod:`featbench.classifiers`. Other placement
    (device index, an extractor's batch size) stays out. The stored features' ``dtype`` and whether
    undecodable images were left out (``skip_bad``) count too; ``extra`` is hashed as
    well (a study row's id).
    """
    params = {name: {k: v for k, v in values.items()
                     if k not in (CLASSIFIER_PLACEMENT if name == classifier else
                                  placement_of(name))}
              for name, values in params.items()}
    parts = {}
    split = tuning_split(ds, seed, val_size)
    for name in split_spec(features):
        p = plan(name, ds, params.get(name, {}), seed, split)
        base = {k: v for k, v in p.base.items() if k != "params"}
        base["params"] = {k: v for k, v in p.params.items() if k not in placement_of(name)}
        parts[name] = make_key(**base, fit=p.fit_key)
    pipe, grid = classifier_setup(classifier, params.get(classifier, {}), seed)
    clf = canonical({k: v for k, v in pipe.named_steps["clf"].get_params(deep=False).items()
                     if k not in CLASSIFIER_PLACEMENT})
    # the solver and device type a large fit takes differ between machines (CUDA or not)
    placement = large_fit_placement(pipe.named_steps["clf"])
    blob = json.dumps({**(extra or {}), "features": features, "parts": parts,
                       "classifier": classifier, "clf_params": clf, "grid": grid,
                       **({"placement": placement} if placement else {}),
                       "extend_grid": extend_grid, "max_extensions": MAX_EXTENSIONS,
                       "bounds": BOUNDS, "tuning_code": classifier_code_hash(),
                       **({"plugin_code": plugin_code_hash(classifier)}
                          if plugin_code_hash(classifier) else {}),
                       "versions": package_versions(), "data": ds.fingerprint, "seed": seed,
                       "val": split.describe(),
                       **({"dtype": dtype} if dtype != "float32" else {}),
                       **({"skip_bad": True} if skip_bad else {})},
                      sort_keys=True, default=repr)
    return hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()


def classifier_modules() -> list[str]:
    """The modules whose code decides a classifier's numbers: every featbench module a
    registered classifier is implemented in, the tuning protocol, the runner and the
    runtime (devices, TF32)."""
    from .classifiers import CLASSIFIERS

    names = {"featbench.classifiers", "featbench.classifiers.tuning",
             "featbench.classifiers.path", "featbench.runner", "featbench.runtime",
             "featbench.end_to_end", "featbench.few_shot", "featbench.metrics"}
    # featbench's own (scikit-learn's are pinned by its version; a plugin's module is
    # hashed into the keys of its own pairs only, see pair_key)
    names |= {entry.target.split(":")[0] for entry in CLASSIFIERS
              if entry.target.startswith("featbench.")}
    return sorted(names)


def plugin_code_hash(classifier: str) -> str | None:
    """Hash of the module of a plugin classifier (None for featbench's own and
    scikit-learn's); a module that cannot be read hashes as its name."""
    from .classifiers import CLASSIFIERS

    target = CLASSIFIERS.get(classifier).target
    if not target or target.startswith(("featbench.", "sklearn.")):
        return None
    module = target.split(":")[0]
    try:
        data = Path(importlib.import_module(module).__file__).read_bytes()
    except Exception:  # noqa: BLE001 - the pair's own fit reports a broken plugin
        data = module.encode()
    return hashlib.sha256(data).hexdigest()[:16]


def classifier_code_hash() -> str:
    """Hash of the source of :func:`classifier_modules`."""
    h = hashlib.sha256()
    for name in classifier_modules():
        module = importlib.import_module(name)
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]
