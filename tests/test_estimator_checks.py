"""scikit-learn's estimator checks on the extractors, plus their image-input analogues.

scikit-learn's generic checks feed 2-D tabular data ``(n_samples, n_features)``;
image extractors take ``(n, height, width[, 3])`` images and reject 2-D input with
a clear error. The checks that need tabular input are marked ``not_applicable`` with
their reason (:data:`TABULAR`) and deselected at collection (``tests/conftest.py``), so
they never show as skips; every other check runs for real and must pass.
``test_tabular_checks_fail_only_on_tabular_input`` runs the skipped ones too and
fails if any of them passes or fails for another reason than the 2-D input, so the
skip list cannot hide a check that applies. ``test_image_contract`` below runs the
same properties (fit returns self, pickling, order and subset invariance, parameters
left alone, read-only input, idempotent fit) on real images.
"""

from __future__ import annotations

import pickle
import warnings
from functools import partial

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import estimator_checks_generator

from featbench.features import (
    EXTRACTORS,
    HOG,
    VLAD,
    BagOfVisualWords,
    CNNEmbedding,
    ColorHistogram,
    FisherVector,
    KMeansPatches,
    RawPixels,
)

#: the message every extractor gives for input that is not a batch of images
NOT_IMAGES = "X must be images of shape (n_images, height, width, 3)"
TABULAR_X = "feeds 2-D tabular X (n_samples, n_features); extractors take images"
#: check -> why it cannot apply to an image extractor (and the image-input analogue)
TABULAR = {
    **dict.fromkeys(
        "check_transformer_general check_transformer_preserve_dtypes "
        "check_transformer_data_not_an_array check_pipeline_consistency "
        "check_n_features_in_after_fitting check_n_features_in check_fit_score_takes_y "
        "check_fit2d_predict1d check_fit2d_1sample check_fit2d_1feature "
        "check_f_contiguous_array_estimator check_estimators_empty_data_messages "
        "check_estimators_dtypes check_dtype_object check_dict_unchanged check_complex_data "
        "check_transformers_unfitted_stateless check_fit_check_is_fitted".split(),
        TABULAR_X),
    **dict.fromkeys(
        "check_estimators_pickle check_readonly_memmap_input check_methods_subset_invariance "
        "check_methods_sample_order_invariance check_fit_idempotent "
        "check_estimators_overwrite_params check_dont_overwrite_parameters "
        "check_estimators_fit_returns_self".split(),
        f"{TABULAR_X}; image analogue in test_image_contract"),
    "check_estimators_nan_inf": f"{TABULAR_X}; image analogue in test_bad_input_messages",
    "check_positive_only_tag_during_fit": TABULAR_X + " (negative tabular values)",
    **dict.fromkeys(
        "check_estimator_sparse_tag check_estimator_sparse_matrix "
        "check_estimator_sparse_array".split(),
        "feeds scipy sparse X, which is 2-D tabular; extractors take dense images"),
    "check_array_api_input": f"{TABULAR_X} (as array-API arrays)",
}

#: small configurations of the extractors that learn, so the checks stay fast
SMALL = {
    "bovw": dict(n_words=8, step=8, max_descriptors=1000),
    "vlad": dict(n_words=4, step=8, max_descriptors=1000),
    "fisher": dict(n_components=2, pca_dim=4, step=8, max_descriptors=1000),
    "kmeans-patches": dict(n_centroids=8, n_patches=1000, kmeans_iter=3),
    # random weights (no download), small input, fp32 so batches agree to float precision
    "cnn:<model>": dict(model="resnet18", weights=None, size=32, precision="fp32"),
    # trained end to end: one epoch of a tiny network on the CPU
    "convnet:<arch>": dict(epochs=1, batch_size=4, widths=(2, 2, 2), device="cpu"),
}
ESTIMATORS = [HOG(), HOG(block_norm=None), ColorHistogram(), ColorHistogram("rgb", 4),
              RawPixels(), RawPixels(size=16), BagOfVisualWords(**SMALL["bovw"]),
              VLAD(**SMALL["vlad"]), FisherVector(**SMALL["fisher"]),
              KMeansPatches(**SMALL["kmeans-patches"]), CNNEmbedding(**SMALL["cnn:<model>"])]


def _check_name(check) -> str:
    while hasattr(check, "__wrapped__"):
        check = check.__wrapped__
    return (check.func if isinstance(check, partial) else check).__name__


def _all_checks() -> list[tuple[object, object, str]]:
    return [(est, check, _check_name(check)) for template in ESTIMATORS
            for est, check in estimator_checks_generator(template, legacy=True)]


def _est_id(est) -> str:
    changed = {k: v for k, v in est.get_params(deep=False).items()
               if k in type(est)().get_params(deep=False)
               and repr(v) != repr(type(est)().get_params(deep=False)[k])}
    return f"{type(est).__name__}({','.join(f'{k}={v!r}' for k, v in changed.items())})"


CHECKS = _all_checks()


@pytest.mark.parametrize(
    "estimator, check",
    [pytest.param(est, check, id=f"{_est_id(est)}-{name}",
                  marks=[pytest.mark.not_applicable(reason=f"{name}: {TABULAR[name]}")]
                  if name in TABULAR else [])
     for est, check, name in CHECKS],
)
def test_sklearn_checks(estimator, check):
    check(estimator)


def _causes(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def test_tabular_checks_fail_only_on_tabular_input():
    """Every skipped check is one that exists and, run anyway, fails because the
    extractor rejects its 2-D input, never for another reason, and never passes."""
    names = {name for _, _, name in CHECKS}
    assert set(TABULAR) <= names, f"no such checks: {set(TABULAR) - names}"
    wrong = []
    for est, check, name in CHECKS:
        if name not in TABULAR:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                check(est)
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ == "SkipTest":  # sklearn's own skip (array API)
                    continue
                if not any(NOT_IMAGES in str(e) for e in _causes(exc)):
                    wrong.append(f"{_est_id(est)} {name}: {type(exc).__name__}: {exc}")
            else:
                wrong.append(f"{_est_id(est)} {name}: passes, so it should not be skipped")
    assert not wrong, "\n".join(wrong)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)


def _labels(est, images):
    """Labels for an extractor that trains on them (its tags say so), else None."""
    return np.arange(len(images)) % 2 if est.__sklearn_tags__().target_tags.required else None


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_image_contract(name, images):
    est = EXTRACTORS.build(name).set_params(**SMALL.get(name, {}))
    params = est.get_params()
    y = _labels(est, images)
    assert est.fit(images, y) is est
    assert est.get_params() == params  # fit leaves parameters alone
    out = est.transform(images)
    assert out.ndim == 2 and out.shape[0] == len(images) and np.isfinite(out).all()
    # fit is idempotent, and a clone fitted again gives the same features
    np.testing.assert_array_equal(clone(est).fit(images, y).transform(images), out)
    # each image's features are independent of the batch: order and subsets
    perm = np.random.default_rng(1).permutation(len(images))
    np.testing.assert_allclose(est.transform(images[perm]), out[perm], rtol=0, atol=1e-6)
    np.testing.assert_allclose(est.transform(images[3:5]), out[3:5], rtol=0, atol=1e-6)
    # read-only input and pickling
    ro = images.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(est.transform(ro), out)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).transform(images), out)
    # float images in [0, 1] give the same features as their uint8 originals
    np.testing.assert_allclose(est.transform(images / 255.0), out, atol=1e-6)
    # grayscale (n, h, w) input is replicated to RGB
    gray = images[..., 0]
    np.testing.assert_array_equal(est.transform(gray), est.transform(np.repeat(gray[..., None],
                                                                               3, axis=-1)))


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_bad_input_messages(name, images):
    est = EXTRACTORS.build(name).set_params(**SMALL.get(name, {}))
    est.fit(images, _labels(est, images))
    with pytest.raises(ValueError, match=r"images of shape \(n_images, height, width, 3\)"):
        est.transform(images.reshape(len(images), -1))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        est.transform(images[:, :16, :16])
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        est.transform(images.astype(float))
    # the image analogue of check_estimators_nan_inf, in fit and in transform
    for bad in (np.nan, np.inf):
        broken = images / 255.0
        broken[1, 2, 3, 0] = bad
        with pytest.raises(ValueError, match="contains NaN or infinity"):
            est.transform(broken)
        with pytest.raises(ValueError, match="contains NaN or infinity"):
            clone(est).fit(broken, _labels(est, images))


def test_unfitted_hog_raises(images):
    # HOG checks image size and parameters in fit; the histograms are stateless
    with pytest.raises(NotFittedError):
        HOG().transform(images)
    assert ColorHistogram().transform(images).shape == (12, 10)


def test_checks_that_cannot_apply_are_deselected_not_skipped(request):
    """No case of test_sklearn_checks left in the session is a tabular one or a skip:
    conftest's collection hook dropped them, so a skip in the summary means something."""
    cases = [item for item in request.session.items
             if getattr(item, "originalname", "") == "test_sklearn_checks"]
    wrong = [item.name for item in cases if item.get_closest_marker("not_applicable")
             or item.get_closest_marker("skip")
             or any(item.name.endswith(f"-{name}]") for name in TABULAR)]
    assert not wrong, wrong
    assert sum(name in TABULAR for _, _, name in CHECKS) > 0  # there is something to drop
