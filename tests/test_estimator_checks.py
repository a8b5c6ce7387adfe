"""scikit-learn's estimator checks on the extractors, plus their image-input analogues.

scikit-learn's generic checks feed 2-D tabular data ``(n_samples, n_features)``;
image extractors take ``(n, height, width[, 3])`` images and reject 2-D input with
a clear error. The checks that need tabular input are marked as expected failures
with that reason; every other check runs for real. ``test_image_contract`` below
runs the same properties (fit returns self, pickling, order and subset invariance,
parameters left alone, read-only input, idempotent fit) on real images.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

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

TABULAR = (
    "check_transformer_general check_estimators_pickle check_transformer_preserve_dtypes "
    "check_transformer_data_not_an_array check_readonly_memmap_input "
    "check_positive_only_tag_during_fit check_pipeline_consistency "
    "check_n_features_in_after_fitting check_n_features_in check_methods_subset_invariance "
    "check_methods_sample_order_invariance check_fit_score_takes_y check_fit_idempotent "
    "check_fit_check_is_fitted check_fit2d_predict1d check_fit2d_1sample check_fit2d_1feature "
    "check_f_contiguous_array_estimator check_estimators_overwrite_params "
    "check_estimators_nan_inf check_estimators_fit_returns_self "
    "check_estimators_empty_data_messages check_estimators_dtypes check_estimator_sparse_tag "
    "check_estimator_sparse_matrix check_estimator_sparse_array check_dtype_object "
    "check_dont_overwrite_parameters check_dict_unchanged check_complex_data "
    "check_array_api_input check_transformers_unfitted_stateless"
).split()
REASON = "needs 2-D tabular X; extractors take images (see test_image_contract)"

#: small configurations of the extractors that learn, so the checks stay fast
SMALL = {
    "bovw": dict(n_words=8, step=8, max_descriptors=1000),
    "vlad": dict(n_words=4, step=8, max_descriptors=1000),
    "fisher": dict(n_components=2, pca_dim=4, step=8, max_descriptors=1000),
    "kmeans-patches": dict(n_centroids=8, n_patches=1000, kmeans_iter=3),
    # random weights (no download), small input, fp32 so batches agree to float precision
    "cnn:<model>": dict(model="resnet18", weights=None, size=32, precision="fp32"),
}
ESTIMATORS = [HOG(), HOG(block_norm=None), ColorHistogram(), ColorHistogram("rgb", 4),
              RawPixels(), RawPixels(size=16), BagOfVisualWords(**SMALL["bovw"]),
              VLAD(**SMALL["vlad"]), FisherVector(**SMALL["fisher"]),
              KMeansPatches(**SMALL["kmeans-patches"]), CNNEmbedding(**SMALL["cnn:<model>"])]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda est: dict.fromkeys(
    TABULAR, REASON))
def test_sklearn_checks(estimator, check):
    check(estimator)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_image_contract(name, images):
    est = EXTRACTORS.build(name).set_params(**SMALL.get(name, {}))
    params = est.get_params()
    assert est.fit(images) is est
    assert est.get_params() == params  # fit leaves parameters alone
    out = est.transform(images)
    assert out.ndim == 2 and out.shape[0] == len(images) and np.isfinite(out).all()
    # fit is idempotent, and a clone fitted again gives the same features
    np.testing.assert_array_equal(clone(est).fit(images).transform(images), out)
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
    est = EXTRACTORS.build(name).set_params(**SMALL.get(name, {})).fit(images)
    with pytest.raises(ValueError, match=r"images of shape \(n_images, height, width, 3\)"):
        est.transform(images.reshape(len(images), -1))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        est.transform(images[:, :16, :16])
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        est.transform(images.astype(float))


def test_unfitted_hog_raises(images):
    # HOG checks image size and parameters in fit; the histograms are stateless
    with pytest.raises(NotFittedError):
        HOG().transform(images)
    assert ColorHistogram().transform(images).shape == (12, 10)
