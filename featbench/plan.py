"""Checks of a whole plan (features x classifiers x parameters) before any work.

Every name and parameter of a run is checked here, up front, so that a typo in a
``-p`` option fails in a second instead of minutes into an extraction.
"""

from __future__ import annotations

from typing import Any

from .classifiers import CLASSIFIERS, default_grid, get_classifier
from .constraints import check_params, check_value, constraints_of
from .errors import ParameterError
from .features import check_extractor, get_extractor, set_params_checked, split_spec
from .runtime import check_device


def classifier_setup(name: str, params: dict[str, Any], seed: int):
    """The pipeline and grid for ``name``: a set grid parameter replaces its grid.

    A grid parameter given as a tuple (``-p linear-svm.C=0.01,0.1``) becomes the grid;
    other tuple values (``-p mlp.hidden_layer_sizes=500,500``) are plain values.
    """
    grid = default_grid(name)
    fixed = {}
    for key, value in params.items():
        if key in grid:
            grid[key] = list(value) if isinstance(value, tuple) else [value]
        else:
            fixed[key] = value
    seed = fixed.pop("random_state", seed)
    pipe = get_classifier(name, random_state=seed, **fixed)
    clf = pipe.named_steps["clf"]
    set_params_checked(clf, {k: v[0] for k, v in grid.items()}, f"classifier {name!r}")
    declared = CLASSIFIERS.get(name).constraints
    check_params(clf, name, declared)
    if "device" in fixed:
        check_device(clf.device)  # a device this machine lacks: now, not after extraction
    allowed = constraints_of(clf, declared)
    for key, values in grid.items():  # every value of the grid, not only the first
        for value in values:
            if key in allowed:
                check_value(name, key, value, allowed[key])
    return pipe, grid


def validate_plan(features: list[str], classifiers: list[str],
                  params: dict[str, dict[str, Any]]) -> None:
    """Fail before any work when a name or a parameter is wrong."""
    names = set()
    for spec in features:
        get_extractor(spec)  # unknown names raise with the valid list
        for name in split_spec(spec):
            names.add(name)
            est = check_extractor(name, params.get(name, {}))
            hook = getattr(est, "check_plan", None)
            if hook is not None:  # what the extractor can check without the data
                hook(name)
            if "device" in params.get(name, {}):
                check_device(est.device)  # a device this machine lacks: now, not later
    for clf in classifiers:
        names.add(clf)
        classifier_setup(clf, params.get(clf, {}), 0)
    if "own-head" in classifiers:  # the network's own head: convnet:<arch> features only
        from .end_to_end import check_own_head

        check_own_head(features)
    stray = sorted(set(params) - names)
    if stray:
        cnn = sorted(n for n in names if n.startswith("cnn:"))
        hint = (f"; a CNN's parameters are named after it, e.g. -p {cnn[0]}.size=128"
                if cnn and any(s == "cnn" or ":" not in s for s in stray) else "")
        raise ParameterError(
            f"-p names {', '.join(map(repr, stray))}, which this run does not use "
            f"(features: {', '.join(features)}; classifiers: {', '.join(classifiers)}){hint}"
        )


def check_plan_data(features: list[str], params: dict[str, dict[str, Any]], ds,
                    seed: int = 0, val_size: int | float | None = None) -> None:
    """Fail before any work when a learned extractor's settings cannot be met on ``ds``
    (e.g. more codebook words than the descriptors of the training sample): each
    extractor's ``check_plan`` hook gets ``(n_images, height, width)`` of its fit sample
    (training images outside the validation split of ``seed`` and ``val_size``), when the
    images' size is known without decoding them."""
    from .extraction import fit_sample, is_learned, view_for
    from .splits import tuning_split

    for name in dict.fromkeys(n for spec in features for n in split_spec(spec)):
        est = check_extractor(name, params.get(name, {}))
        hook = getattr(est, "check_plan", None)
        if hook is None or not is_learned(est):
            continue
        view = view_for(est, ds)
        if view.kind == "resize" and view.size:
            h = w = int(view.size)
        elif view.kind == "native" and not view.size and ds.image_scan()["shared_size"]:
            h, w = (int(v) for v in ds.image_scan()["shared_size"])
        else:
            continue
        pool = tuning_split(ds, seed, val_size).fit
        hook(name, (len(fit_sample(pool, view, ds, seed)), h, w))
