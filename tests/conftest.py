"""Shared fixtures: the one place tests find ``../shared`` (and skip without it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from featbench.parallel import set_options

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "not_applicable(reason): a test case that cannot apply (e.g. a scikit-learn "
                   "check that feeds tabular data to an image extractor); deselected at "
                   "collection, so that a skip in the summary always means something")


def pytest_collection_modifyitems(config, items) -> None:
    """Deselect the cases marked ``not_applicable`` (their reason stays on the mark)."""
    keep, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("not_applicable") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder and no progress bars."""
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    set_options(n_jobs=None, progress=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (or ``$FEATBENCH_SHARED_DATA``)."""
    path = Path(os.environ.get("FEATBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "cifar10-jpeg" / "train").is_dir():
        pytest.skip(f"shared data not found at {path} (a user's clone has none)")
    return path


@pytest.fixture(scope="session")
def cifar_sample(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """200 real CIFAR-10 (JPEG copy) training images, 20 per class, and labels."""
    from featbench.datasets.cifar10 import CLASSES
    from featbench.datasets.imageio import read_image

    paths, labels = [], []
    for i, name in enumerate(CLASSES):
        files = sorted((shared_data / "cifar10-jpeg" / "train" / name).iterdir())[:20]
        paths += files
        labels += [i] * len(files)
    return np.stack([read_image(p) for p in paths]), np.asarray(labels)


@pytest.fixture(scope="session")
def natural_images() -> np.ndarray:
    """Crops of scikit-image's bundled photographs (no download), 48 x 40 RGB uint8."""
    from skimage import data

    out = []
    for img in (data.astronaut(), data.chelsea(), data.coffee()):
        for r, c in ((0, 0), (100, 120), (200, 60)):
            out.append(img[r:r + 48, c:c + 40, :3])
    return np.stack(out)


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Images HOG computed, one entry per call: a spy on the extractor itself, not on
    featbench's loop (a probe image set up by ``extraction.prepare`` counts as 1)."""
    from featbench.features.hog import HOG

    calls: list[int] = []
    original = HOG._extract

    def spy(self, images):
        calls.append(len(images))
        return original(self, images)

    monkeypatch.setattr(HOG, "_extract", spy)
    return calls


@pytest.fixture
def bovw_fits(monkeypatch) -> list[int]:
    """Images each bag-of-words codebook fit saw, one entry per fit (a spy on ``_fit``)."""
    from featbench.features.bovw import BagOfVisualWords

    fits: list[int] = []
    original = BagOfVisualWords._fit

    def spy(self, X, y=None):
        fits.append(len(X))
        return original(self, X, y)

    monkeypatch.setattr(BagOfVisualWords, "_fit", spy)
    return fits


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the dataset is loaded (the check must come before any work)."""
    import featbench.datasets

    def load(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the check")

    monkeypatch.setattr(featbench.datasets, "load_dataset", load)


@pytest.fixture
def store_warnings():
    """A context manager collecting the message of every StoreWarning raised inside (none
    filtered as a repeat)."""
    import contextlib
    import warnings

    from featbench.store import StoreWarning

    @contextlib.contextmanager
    def collect():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out: list[str] = []
            yield out
        out += [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]

    return collect
