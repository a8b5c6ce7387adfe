"""The few-shot linear probe: K training images per class, several seeds.

The few-shot protocol of ELEVATER and VTAB (and of the CLIP papers' few-shot linear
probes): for each seed, K images of every class are drawn from the training images
outside the validation split (never from it), the classifier's value is chosen on
the usual validation split with the K-shot images as the only training data, the
chosen classifier is refitted on those K-shot images alone and scored on test. The
record holds every seed's accuracy and images (rows of the training features), their
mean and standard deviation.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError


def shot_seeds(seed: int, n_seeds: int) -> list[int]:
    """The seeds of ``n_seeds`` draws of a run with seed ``seed``: seed, seed+1, ..."""
    return [int(seed) + s for s in range(int(n_seeds))]


def sample_shots(y: np.ndarray, pool: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` rows of every class of ``y`` drawn from the rows ``pool`` (without
    replacement, seeded), sorted.

    Raises
    ------
    DataError
        Naming ``--shots`` when a class has fewer than ``shots`` rows in ``pool``.
    """
    y, pool = np.asarray(y), np.asarray(pool)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(y):
        rows = pool[y[pool] == c]
        if len(rows) < shots:
            raise DataError(f"--shots {shots}: class {c} has {len(rows)} training image(s) "
                            f"outside the validation split")
        out.append(rng.choice(rows, shots, replace=False))
    return np.sort(np.concatenate(out))


def few_shot_label(shots: int, n_seeds: int) -> str:
    """How tables name the protocol: ``few-shot K=5 (3 seeds)``."""
    return f"few-shot K={shots} ({n_seeds} seed{'s' if n_seeds != 1 else ''})"
