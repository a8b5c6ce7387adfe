"""The CIFAR-10 study: hand-crafted features vs ConvNets.

The rows of CS231n Lecture 5's argument, each with ``linear-svm`` and ``logreg``
(and HOG + hue with a two-layer net), with the published numbers beside them; the
ConvNets come in two kinds: trained end to end on CIFAR-10 itself (the lecture's
ConvNetJS network, scored by its own head and by logreg on its features), and
ImageNet-pretrained embeddings with a linear classifier (transfer).
Edit the lists below to add rows; ``featbench reproduce cifar10 --only 'hog*'``
runs a subset.
"""

from __future__ import annotations

from . import STUDIES, Picture, Reference, Row, Study

CS231N = ("CS231n (Stanford, 2016-2024) assignment 1, features.ipynb / svm.ipynb "
          "(cs231n.github.io/assignments)")
COATES = ("A. Coates, H. Lee, A. Y. Ng, An analysis of single-layer networks in unsupervised "
          "feature learning, AISTATS 2011, Fig. 3 / Table 1")
ERICSSON = ("L. Ericsson, H. Gouk, T. Hospedales, How well do self-supervised models transfer?, "
            "CVPR 2021, Table 1 (supervised ResNet-50, many-shot linear, CIFAR-10)")

#: the high-dimensional encodings (5,000-8,000 numbers) choose small C (bag of words and
#: Fisher vectors chose 1e-5 of {1e-5, 1e-4, 1e-3}), and large C takes long to fit
SMALL_C = {"linear-svm": {"C": (1e-6, 1e-5, 1e-4)}, "logreg": {"C": (1e-5, 1e-4, 1e-3)}}
#: soft-assigned words: on SMALL_C both chose the top (1e-4 / 1e-3), here the middle
BOVW_C = {"linear-svm": {"C": (1e-5, 1e-4, 1e-3)}, "logreg": {"C": (1e-4, 1e-3, 1e-2)}}
#: k-means features chose 1e-3 of {1e-5, 1e-4, 1e-3}; Coates et al.'s C = 100 on the mean
#: loss is 2e-3 on the summed loss
#: (the SVM's validation accuracy is flat from 1e-3 to 1e-2; logreg still rose at 1e-2)
KMEANS_C = {"linear-svm": {"C": (1e-4, 1e-3, 1e-2)}, "logreg": {"C": (1e-3, 1e-2, 1e-1)}}
#: the best configurations on validation of benchmarks/bovw_search.sh (10,000 / 2,000 subset):
#: soft assignment to 10 words and 8/12/16 px patches (+5.6 points over hard, one scale);
#: Fisher vectors of RootSIFT with positions (+4.9 over plain SIFT)
BEST_BOVW = {"bovw": {"assignment": "soft", "soft_neighbors": 10, "patch_sizes": (8, 12, 16)}}
BEST_FISHER = {"fisher": {"descriptor": "rootsift", "spatial": True,
                          "patch_sizes": (8, 12, 16)}}
#: raw pixels chose the lowest C of the default grids (1e-5 of 1e-5 ... 1 and 1e-3 of
#: 1e-3 ... 10): grids centered there, which extension widens where needed (the large-C
#: L-BFGS fits on 3,072 pixels take up to 5,000 iterations each and are never chosen)
RAW_C = {"linear-svm": {"C": (1e-6, 1e-5, 1e-4)}, "logreg": {"C": (1e-4, 1e-3, 1e-2)}}
#: --quick: small vocabularies, low CNN resolution
QUICK_BOVW = {"bovw": {"n_words": 256}}
QUICK_FISHER = {"fisher": {"n_components": 16}}
QUICK_KMEANS = {"kmeans-patches": {"n_centroids": 400, "n_patches": 100_000}}
QUICK_KMEANS_4000 = {"kmeans-patches": {"n_centroids": 800, "n_patches": 50_000}}


def _cnn(model: str, label: str, native: int, size: int | None = None,
         weights: str | None = None, reference: dict[str, Reference] | None = None,
         only_if_present: bool = False) -> list[Row]:
    name = f"cnn:{model}"
    # fp32 on every machine: precision="auto" is bf16 on some CPUs, and bf16 moved
    # EfficientNet-Lite1's rows by a point; a bf16 study is a plan of its own. The
    # backend: OpenVINO on a CPU where it is installed (3-4x eager torch, the same
    # features to float32 rounding), torch elsewhere
    params: dict = {name: {"precision": "fp32", "backend": "auto"}}
    if size is not None:
        params[name]["size"] = size
    if weights is not None:
        params[name]["weights"] = weights
    quick = {name: {"size": (size or native) // 2}}  # --quick: half the resolution
    return [Row(label, name, clf, "cnn", params, quick,
                (reference or {}).get(clf), only_if_present)
            for clf in ("linear-svm", "logreg")]


def _both(label: str, features: str, params: dict | None = None, quick: dict | None = None,
          references: dict[str, Reference] | None = None, clf_params: dict | None = None
          ) -> list[Row]:
    rows = []
    for clf in ("linear-svm", "logreg"):
        p = dict(params or {})
        if clf in (clf_params or {}):
            p[clf] = clf_params[clf]
        rows.append(Row(label, features, clf, "hand-crafted", p, quick or {},
                        (references or {}).get(clf)))
    return rows


CS231N_HOG = {"hog": {"block_norm": None}}
KARPATHY = ("A. Karpathy, ConvNetJS CIFAR-10 demo "
            "(cs.stanford.edu/people/karpathy/convnetjs/demo/cifar10.html)")
#: the lecture's ConvNet trained on CIFAR-10 itself, fp32 like every row (30 epochs; 10
#: under --quick), scored by its own head and by logreg on its 320 penultimate numbers
CONVNETJS = {"convnet:convnetjs": {"precision": "fp32"}}
QUICK_CONVNETJS = {"convnet:convnetjs": {"epochs": 10}}
JORDAN = ("K. Jordan, 94% on CIFAR-10 in 3.29 seconds on a single GPU, arXiv:2404.00498 "
          "(2024), airbench94 (github.com/KellerJordan/cifar10-airbench)")
#: airbench94's recipe in bf16: a row of its own (bf16 on a CPU that has it; fp32 would
#: take twice the 15 minutes on 2 cores); 3 epochs under --quick
AIRBENCH = {"convnet:airbench": {"precision": "bf16"}}
QUICK_AIRBENCH = {"convnet:airbench": {"epochs": 3}}

ROWS = (
    *_both("raw pixels", "raw", clf_params=RAW_C, references={"linear-svm": Reference(
        (0.38, 0.39), CS231N, "val", "raw pixels + multiclass SVM, validation accuracy")}),
    *_both("color histogram", "color-hist"),
    *_both("HOG (Dalal-Triggs)", "hog"),
    *_both("HOG (CS231n)", "hog", CS231N_HOG),
    *_both("HOG + hue (CS231n)", "hog+color-hist", CS231N_HOG, references={
        "linear-svm": Reference((0.42, 0.50), CS231N, "test",
                                "solutions on the first 1,000 test images; ~0.44 validation")}),
    Row("HOG + hue (CS231n)", "hog+color-hist", "mlp", "hand-crafted", CS231N_HOG,
        reference=Reference((0.55, 0.60), CS231N, "test",
                            "two-layer net on HOG + hue features")),
    *_both("bag of words (soft, 3 scales)", "bovw", BEST_BOVW, quick=QUICK_BOVW,
           clf_params=BOVW_C),
    *_both("Fisher vectors (RootSIFT + xy, 3 scales)", "fisher", BEST_FISHER,
           quick=QUICK_FISHER, clf_params=SMALL_C),
    *_both("k-means patches (K=1600)", "kmeans-patches", quick=QUICK_KMEANS,
           clf_params=KMEANS_C, references={"linear-svm": Reference(
               (0.77, 0.78), COATES, "test", "1600 centroids, triangle code, L2-SVM")}),
    *_both("k-means patches (K=4000)", "kmeans-patches", {"kmeans-patches": {"n_centroids": 4000}},
           quick=QUICK_KMEANS_4000, clf_params=KMEANS_C, references={"linear-svm": Reference(
               0.796, COATES, "test", "4000 centroids, triangle code, L2-SVM (their best)")}),
    Row("ConvNetJS net, trained end to end", "convnet:convnetjs", "own-head", "end-to-end",
        CONVNETJS, QUICK_CONVNETJS, Reference(0.80, KARPATHY, "test",
                                              "the demo page's figure, trained in a browser")),
    Row("ConvNetJS net, trained end to end", "convnet:convnetjs", "logreg", "end-to-end",
        CONVNETJS, QUICK_CONVNETJS),
    Row("airbench94 net (bf16), trained end to end", "convnet:airbench", "own-head",
        "end-to-end", AIRBENCH, QUICK_AIRBENCH, Reference(
            0.9401, JORDAN, "test", "on the exact CIFAR-10 (fp16, A100); airbench94's own "
            "code on this JPEG copy reaches 0.9057 (2-core CPU, bf16)")),
    Row("airbench94 net (bf16), trained end to end", "convnet:airbench", "logreg",
        "end-to-end", AIRBENCH, QUICK_AIRBENCH),
    *_cnn("efficientnet-lite0", "EfficientNet-Lite0 (224 px)", 224),
    *_cnn("efficientnet-lite0", "EfficientNet-Lite0 (128 px)", 224, size=128),
    *_cnn("efficientnet-lite1", "EfficientNet-Lite1 (240 px)", 240),
    *_cnn("efficientnet-lite2", "EfficientNet-Lite2 (260 px)", 260),
    *_cnn("resnet50", "ResNet-50 (224 px, IMAGENET1K_V1)", 224, weights="IMAGENET1K_V1",
          reference={"logreg": Reference(0.9147, ERICSSON, "test", "linear probe at 224 px")},
          only_if_present=True),
)


#: the lecture's pictures, from the rows' stored features (``featbench show``)
_SPACES = ("raw pixels/logreg", "HOG (Dalal-Triggs)/logreg", "k-means patches (K=1600)/logreg",
           "ConvNetJS net, trained end to end/logreg")
PICTURES = (
    Picture("hog", ("HOG (Dalal-Triggs)/logreg",)),
    Picture("color-hist", ("color histogram/logreg",)),
    Picture("filters", ("bag of words (soft, 3 scales)/logreg",
                        "k-means patches (K=1600)/logreg",
                        "ConvNetJS net, trained end to end/logreg",
                        "EfficientNet-Lite0 (224 px)/logreg")),
    Picture("neighbors", _SPACES),
    Picture("map", _SPACES),
    Picture("confusion", ("HOG + hue (CS231n)/logreg", "ConvNetJS net, trained end to end/logreg")),
)


@STUDIES.register("cifar10", "CIFAR-10: hand-crafted features vs ImageNet ConvNet embeddings.")
def cifar10_study() -> Study:
    """CS231n Lecture 5's comparison on CIFAR-10."""
    return Study("cifar10", "cifar10", __doc__.splitlines()[0], ROWS, pictures=PICTURES)
