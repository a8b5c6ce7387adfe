"""``featbench show``: the lecture's pictures of features, for any dataset and extractor.

Each figure is a PNG drawn with matplotlib, with its numbers as CSV where it has any:

- ``hog``: a few seeded images beside their HOG glyphs (scikit-image's
  ``hog(..., visualize=True)`` rendering of the Dalal-Triggs descriptor);
- ``color-hist``: the same images beside their color histograms (the ``color-hist``
  extractor's own numbers, with its parameters);
- ``filters``: what a learned extractor learned: the k-means patch centroids of
  ``kmeans-patches`` (as Coates et al. show them: each 6x6x3 centroid mapped back
  through the inverse whitening and stretched to [0, 1]), the first-layer 5x5
  filters of a trained ``convnet:<arch>``, read from the feature store's fitted state;
  the stem convolution of a pretrained backbone (EfficientNet-Lite's 3x3, ResNet's
  7x7: "AlexNet: 64 filters, each 3x11x11"); and for ``bovw`` / ``vlad``, the training
  patch nearest to each of the most used visual words (a SIFT word has no picture of
  its own);
- ``neighbors``: for a few seeded test images, their 5 nearest training images
  (Euclidean distance) in each feature space side by side (the lecture's retrieval
  figure: raw pixels vs HOG vs CNN), from the stored features;
- ``map``: each feature space in 2-D (scikit-learn's PCA of the standardized features,
  or t-SNE), on a seeded subsample of 2,000 test images, colored by class;
- ``confusion``: for each feature space, the confusion matrix of a classifier tuned and
  refitted as ``featbench run`` does (same split, grid and seed, so the matrix is the
  run record's), and the most confused class pairs with test images of each mistake.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

FIGURES = ("hog", "color-hist", "filters", "neighbors", "map", "confusion")
#: test images a 2-D map shows (a seeded subsample)
MAP_IMAGES = 2000
#: images (queries) a figure shows
N_IMAGES = 6
#: neighbours per query
N_NEIGHBORS = 5
#: filters a figure shows (and its CSV holds): the first ones
MAX_FILTERS = 256
#: most confused class pairs the confusion figure shows, and images per mistake
N_PAIRS, N_EXAMPLES = 3, 4


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def seeded_indices(n: int, k: int, seed: int) -> np.ndarray:
    """``k`` distinct indices of ``range(n)`` drawn with ``seed`` (sorted)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, min(k, n), replace=False))


def hog_glyphs(images: np.ndarray, out: Path, **hog_params: Any) -> Path:
    """Images beside their HOG glyphs (scikit-image's rendering); ``hog_params`` as
    ``skimage.feature.hog`` takes them (default: featbench's ``hog`` defaults)."""
    from skimage.color import rgb2gray
    from skimage.feature import hog

    params = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (2, 2),
              **hog_params}
    plt = _plt()
    fig, axes = plt.subplots(2, len(images), figsize=(1.6 * len(images), 3.4), squeeze=False)
    for k, im in enumerate(images):
        _, glyph = hog(rgb2gray(im), visualize=True, **params)
        axes[0][k].imshow(im)
        axes[1][k].imshow(glyph, cmap="gray")
        for ax in axes[:, k]:
            ax.set_axis_off()
    fig.suptitle("images and their HOG glyphs", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def color_hist_figure(images: np.ndarray, hists: np.ndarray, out: Path, title: str) -> Path:
    """Images (top) above bar charts of their histograms (bottom)."""
    plt = _plt()
    fig, axes = plt.subplots(2, len(images), figsize=(1.8 * len(images), 3.6), squeeze=False)
    for k, (im, h) in enumerate(zip(images, hists, strict=True)):
        axes[0][k].imshow(im)
        axes[0][k].set_axis_off()
        axes[1][k].bar(np.arange(len(h)), h, width=0.9, color="#4c72b0")
        axes[1][k].set_xticks([])
        axes[1][k].tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def first_conv(model: Any) -> np.ndarray:
    """The weights ``(out, 3, kh, kw)`` of a torch model's first convolution on the 3
    color channels (its stem): the first 4-D parameter, in the order the model holds
    them, that reads 3 channels (this also reads TorchScript modules)."""
    for _, weight in model.named_parameters():
        if weight.ndim == 4 and weight.shape[1] == 3:
            return weight.detach().float().cpu().numpy()
    raise ValueError(f"{type(model).__name__} has no convolution on the color channels")


def learned_filters(est: Any) -> np.ndarray:
    """``(n, h, w, 3)`` filters in [0, 1] of a fitted extractor: k-means centroids
    unwhitened to pixel space, a trained ConvNet's first convolution, or the stem
    convolution of a pretrained backbone (``cnn:``, ``timm:``, ...), each stretched to
    [0, 1] on its own."""
    if hasattr(est, "centroids_"):
        p = int(est.patch_size)
        # back from the whitened space: x = z W^-1 + mean (W is symmetric)
        pix = est.centroids_ @ np.linalg.pinv(est.whiten_) + est.mean_
        filters = pix.reshape(len(pix), 3, p, p).transpose(0, 2, 3, 1)
    elif hasattr(est, "weights_"):
        first = next(v for k, v in est.weights_.items() if np.asarray(v).ndim == 4)
        filters = np.asarray(first).transpose(0, 2, 3, 1)
    elif hasattr(est, "_network"):
        loaded = est._network()[0]
        filters = first_conv(loaded.tap_root or loaded.model).transpose(0, 2, 3, 1)
    else:
        raise ValueError(f"{type(est).__name__} learns no filters to show")
    lo = filters.min(axis=(1, 2, 3), keepdims=True)
    hi = filters.max(axis=(1, 2, 3), keepdims=True)
    return (filters - lo) / np.maximum(hi - lo, 1e-12)


def word_patches(est: Any, images: np.ndarray, n_words: int = 64
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """What the visual words of a fitted ``bovw`` / ``vlad`` codebook look like: for the
    ``n_words`` words most descriptors of ``images`` fall in, the image patch whose
    descriptor is nearest (Euclidean) to the word.

    Returns the rows ``(word, image, x0, y0, size, squared distance)`` (``x0, y0`` the
    patch's top-left pixel) and the patches (uint8, each its own size).
    """
    from .features.bovw import squared_distances
    from .features.local import grid_centers

    desc, _ = est._descriptors(images)
    n, m, dim = desc.shape
    h, w = images.shape[1:3]
    sizes = [int(p) for p in np.atleast_1d(est.patch_sizes)]
    centers = np.concatenate([grid_centers(h, w, int(est.step), p) for p in sizes])
    size_of = np.concatenate([np.full(len(grid_centers(h, w, int(est.step), p)), p)
                              for p in sizes])
    d2 = squared_distances(desc.reshape(n * m, dim), est.codebook_)
    counts = np.bincount(d2.argmin(1), minlength=len(est.codebook_))
    words = np.argsort(-counts, kind="stable")[:n_words]
    rows, patches = [], []
    for word in words:
        best = int(np.argmin(d2[:, word]))  # (ties: the first patch)
        i, j = divmod(best, m)
        p = int(size_of[j])
        x0, y0 = (int(round(c - p / 2)) for c in centers[j])
        rows.append((int(word), i, x0, y0, p, float(d2[best, word])))
        patches.append(images[i, y0:y0 + p, x0:x0 + p])
    return np.asarray(rows, dtype=object), patches


def grid_figure(images, out: Path, title: str, cell: float = 0.5) -> Path:
    """A square-ish grid of small images (filters in [0, 1], or uint8 patches of any
    sizes, each scaled to its cell), drawn pixel for pixel."""
    plt = _plt()
    cols = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 1, cell * rows + 1),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, im in zip(axes.ravel(), images, strict=False):
        ax.imshow(im, interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def filters_figure(filters: np.ndarray, out: Path, title: str,
                   max_filters: int | None = None) -> Path:
    """A grid of the first filters (each stretched to [0, 1])."""
    return grid_figure(filters[:max_filters or MAX_FILTERS], out, title)


def patches_figure(patches: list[np.ndarray], out: Path, title: str) -> Path:
    """A grid of image patches (each shown at its own size, scaled to its cell)."""
    return grid_figure(patches, out, title, cell=0.6)


def nearest_neighbors(train: np.ndarray, queries: np.ndarray, k: int = N_NEIGHBORS
                      ) -> np.ndarray:
    """Row indices of the ``k`` training vectors nearest (Euclidean) to each query,
    nearest first (ties: the lower index), computed a block of queries at a time."""
    train = np.asarray(train, np.float64)
    sq = (train * train).sum(1)
    out = []
    for start in range(0, len(queries), 256):
        q = np.asarray(queries[start:start + 256], np.float64)
        d = sq[None, :] - 2.0 * q @ train.T
        out.append(np.argsort(d, axis=1, kind="stable")[:, :k])
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def neighbors_figure(query_images: np.ndarray, rows: dict[str, np.ndarray],
                     train_image, out: Path) -> Path:
    """For each query image, its nearest training images in each feature space:
    ``rows[spec]`` holds the neighbours' training indices per query."""
    plt = _plt()
    specs = list(rows)
    n_q, k = len(query_images), next(iter(rows.values())).shape[1] if rows else 0
    fig, axes = plt.subplots(n_q, 1 + len(specs) * k,
                             figsize=(0.9 * (1 + len(specs) * k), 0.95 * n_q + 0.6),
                             squeeze=False)
    for i in range(n_q):
        axes[i][0].imshow(query_images[i], interpolation="nearest")
        for s, spec in enumerate(specs):
            for j in range(k):
                ax = axes[i][1 + s * k + j]
                ax.imshow(train_image(int(rows[spec][i, j])), interpolation="nearest")
                if i == 0 and j == 0:
                    ax.set_title(spec, fontsize=7, loc="left")
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0][0].set_title("query", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def embed_2d(F: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(n, 2)`` coordinates of standardized features: PCA (scikit-learn's, exact SVD) or
    t-SNE (PCA initialization, seeded)."""
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(np.asarray(F, np.float64))
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, svd_solver="full").fit_transform(Z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, init="pca", random_state=seed,
                    perplexity=min(30.0, max(1.0, (len(Z) - 1) / 3))).fit_transform(Z)
    raise ValueError(f"map method must be 'pca' or 'tsne'; got {method!r}")


def map_figure(coords: dict[str, np.ndarray], labels: np.ndarray, classes, out: Path,
               method: str) -> Path:
    """One scatter plot per feature space, colored by class."""
    plt = _plt()
    specs = list(coords)
    fig, axes = plt.subplots(1, len(specs), figsize=(4.2 * len(specs), 4.2), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, spec in zip(axes[0], specs, strict=True):
        xy = coords[spec]
        for c in range(len(classes)):
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(c % cmap.N), label=str(classes[c]))
        ax.set_title(f"{spec} ({method.upper()})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confused_pairs(confusion, n_pairs: int = N_PAIRS) -> list[tuple[int, int, int, int]]:
    """The ``n_pairs`` class pairs ``(a, b, a_as_b, b_as_a)`` with the most test images
    mistaken for each other (both directions summed; ties: the lower pair first),
    ``a < b``; pairs never confused are left out."""
    m = np.asarray(confusion, dtype=np.int64)
    a, b = np.triu_indices(len(m), 1)
    both = m[a, b] + m[b, a]
    order = np.lexsort((b, a, -both))  # most confused first, then by (a, b)
    return [(int(a[k]), int(b[k]), int(m[a[k], b[k]]), int(m[b[k], a[k]]))
            for k in order[:n_pairs] if both[k] > 0]


def mistakes(y_true: np.ndarray, y_pred: np.ndarray, true: int, pred: int,
             n: int = N_EXAMPLES) -> np.ndarray:
    """The first ``n`` test indices of class ``true`` predicted as ``pred``."""
    return np.flatnonzero((y_true == true) & (y_pred == pred))[:n]


def confusion_figure(confusion, classes, pairs, examples: dict[tuple[int, int], list],
                     out: Path, title: str) -> Path:
    """The row-normalized confusion matrix (counts written in), and beside it one row per
    confused pair: test images of ``a`` taken for ``b``, then of ``b`` taken for ``a``."""
    plt = _plt()
    m = np.asarray(confusion, dtype=float)
    n = len(m)
    k = N_EXAMPLES
    fig = plt.figure(figsize=(5.2 + 0.85 * 2 * k, max(4.6, 1.15 * max(1, len(pairs)) + 0.8)))
    grid = fig.add_gridspec(max(1, len(pairs)), 1 + 2 * k,
                            width_ratios=[5.2 / 0.85] + [1] * (2 * k))
    ax = fig.add_subplot(grid[:, 0])
    rows = m / np.maximum(m.sum(1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=5,
                        color="white" if rows[i, j] > 0.5 else "black")
    names = [str(c) for c in classes]
    ax.set_xticks(range(n), names, rotation=90, fontsize=6)
    ax.set_yticks(range(n), names, fontsize=6)
    ax.set_xlabel("predicted", fontsize=7)
    ax.set_ylabel("true", fontsize=7)
    for r, (a, b, ab, ba) in enumerate(pairs):
        for side, (t, p, count) in enumerate(((a, b, ab), (b, a, ba))):
            shown = examples.get((t, p), [])
            for j in range(k):
                cell = fig.add_subplot(grid[r, 1 + side * k + j])
                cell.set_axis_off()
                if j < len(shown):
                    cell.imshow(shown[j], interpolation="nearest")
                if j == 0:
                    cell.set_title(f"{names[t]} as {names[p]} ({count})", fontsize=6,
                                   loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def predictions(ds, feats, spec: str, clf_name: str, params: dict[str, dict[str, Any]],
                split, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Test labels, test predictions and chosen hyperparameters of ``clf_name`` tuned and
    refitted on the stored features as ``featbench run`` does (its split, grid, solver and
    seed): the confusion of these predictions is the run record's."""
    from sklearn.base import clone

    from .classifiers.tuning import tune_and_fit
    from .parallel import get_n_jobs, progress
    from .runner import fit_data, n_grid_fits, placed_classifier

    X, y, val_mask, X_test, y_test, _ = fit_data(ds, feats, split)
    pipe, grid, _, _ = placed_classifier(clf_name, params.get(clf_name, {}), seed, X.shape)
    with progress(total=n_grid_fits(grid), desc=f"fit {clf_name} on {spec}",
                  unit="fit") as bar:
        tuned = tune_and_fit(clone(pipe), grid, X, y, val_mask, n_jobs=get_n_jobs(), bar=bar)
    return y_test, tuned.estimator.predict(X_test), tuned.best_params


#: what each figure shows, by the start of its file name
CAPTIONS = {
    "hog": "Images and their HOG glyphs (scikit-image's rendering of the descriptor).",
    "color-hist": "Images above their color histograms (the color-hist extractor's numbers).",
    "filters-kmeans-patches": "Learned k-means patch filters (centroids mapped back to "
                              "pixels, as Coates et al. show them).",
    "filters-convnet": "First-layer filters of the ConvNet trained end to end.",
    "filters": "First-layer (stem) filters of a pretrained backbone.",
    "words": "Visual words of a codebook, each shown as the training patch whose descriptor "
             "is nearest to it (the most used words).",
    "neighbors": "Six test images (left) and their five nearest training images in each "
                 "feature space.",
    "map": "Test images in 2-D (PCA of the standardized features), colored by class.",
    "confusion": "Confusion matrix and the most confused class pairs, with test images of "
                 "each mistake.",
}


def file_slug(text: str) -> str:
    """A file-name part for a feature or pair name (``hog+color-hist`` ->
    ``hog_color-hist``, ``hf:org/model`` -> ``hf-org-model``): no path separators."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("+", "_")).strip("-.") or "x"


def caption(file_name: str) -> str:
    """The caption of a figure file ``featbench show`` wrote (by its name)."""
    stem = Path(file_name).stem
    for prefix in sorted(CAPTIONS, key=len, reverse=True):
        if stem == prefix or stem.startswith(prefix + "-"):
            return f"{CAPTIONS[prefix]} ({stem})" if stem != prefix else CAPTIONS[prefix]
    return stem


def write_csv(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def render_show(ds, figures: list[str], feature_specs: list[str],
                params: dict[str, dict[str, Any]], store, out_dir: Path, *, seed: int = 0,
                echo=print, map_method: str = "pca", classifier: str = "logreg") -> list[Path]:
    """Draw ``figures`` for ``ds`` into ``out_dir``; return the files written.

    Features and fitted extractors come from ``store`` (computed and stored there
    first when missing); the query images are ``N_IMAGES`` seeded test images;
    ``confusion`` tunes and refits ``classifier`` on each feature space.
    """
    from .end_to_end import fitted_extractor
    from .engines.base import decode
    from .extraction import extract_features, is_learned, view_for
    from .features import build_extractor, set_params_checked, split_spec
    from .splits import tuning_split

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    queries = seeded_indices(len(ds.test), N_IMAGES, seed)
    working = ds.working_view()

    def image(source, i: int) -> np.ndarray:
        return decode(source, working, int(i))

    query_images = np.stack([image(ds.test, i) for i in queries])
    if "hog" in figures:
        hog = set_params_checked(build_extractor("hog"), params.get("hog", {}), "feature 'hog'")
        written.append(hog_glyphs(query_images, out_dir / "hog.png",
                                  orientations=int(hog.orientations),
                                  pixels_per_cell=tuple(np.broadcast_to(
                                      hog.pixels_per_cell, 2).tolist()),
                                  cells_per_block=tuple(np.broadcast_to(
                                      hog.cells_per_block, 2).tolist())))
        echo(f"hog: {written[-1]}")
    if "color-hist" in figures:
        hist = set_params_checked(build_extractor("color-hist"), params.get("color-hist", {}),
                                  "feature 'color-hist'")
        hists = hist.fit(query_images).transform(query_images)
        written.append(color_hist_figure(
            query_images, hists, out_dir / "color-hist.png",
            f"images and their color histograms ({hist.color_space}, {hist.bins} bins)"))
        written.append(write_csv(out_dir / "color-hist.csv",
                                 ["test_image", *[f"bin{i}" for i in range(hists.shape[1])]],
                                 ([int(q), *np.round(h, 6).tolist()]
                                  for q, h in zip(queries, hists, strict=True))))
        echo(f"color-hist: {written[-2]}")
    split = tuning_split(ds, seed)
    if "filters" in figures:
        for name in dict.fromkeys(n for spec in feature_specs for n in split_spec(spec)):
            est = set_params_checked(build_extractor(name), params.get(name, {}),
                                     f"feature {name!r}")
            slug = file_slug(name)
            if name in ("bovw", "vlad"):  # words as the training patches nearest to them
                view_for(est, ds)
                fitted = fitted_extractor(name, ds, params, store, seed=seed, split=split,
                                          n_workers=None).estimator
                sample = seeded_indices(len(ds.train), 200, seed)
                imgs = np.stack([image(ds.train, i) for i in sample])
                rows, patches = word_patches(fitted, imgs)
                rows[:, 1] = sample[rows[:, 1].astype(int)]  # training image indices
                written.append(patches_figure(
                    patches, out_dir / f"words-{slug}.png",
                    f"{name}: the training patch nearest to each of its {len(patches)} most "
                    f"used words (of {len(fitted.codebook_)})"))
                written.append(write_csv(out_dir / f"words-{slug}.csv",
                                         ["word", "train_image", "x0", "y0", "size",
                                          "squared_distance"], rows.tolist()))
                echo(f"words of {name}: {written[-2]}")
                continue
            backbone = hasattr(est, "_network") and not is_learned(est)
            if not backbone and (not is_learned(est) or not (
                    name.startswith("convnet:") or name == "kmeans-patches")):
                continue
            view_for(est, ds)  # (the same checks as extraction)
            fitted = est if backbone else fitted_extractor(
                name, ds, params, store, seed=seed, split=split, n_workers=None).estimator
            filters = learned_filters(fitted)
            shown = filters[:MAX_FILTERS]  # (the figure and its CSV: the first ones)
            what = f"{len(filters)} learned filters" if len(shown) == len(filters) else \
                f"the first {len(shown)} of {len(filters)} learned filters"
            written.append(filters_figure(shown, out_dir / f"filters-{slug}.png",
                                          f"{name}: {what}"))
            written.append(write_csv(out_dir / f"filters-{slug}.csv",
                                     ["filter", *[f"v{i}" for i in range(filters[0].size)]],
                                     ([k, *f.ravel().round(6).tolist()]
                                      for k, f in enumerate(shown))))
            echo(f"filters of {name}: {written[-2]}")
    if "neighbors" in figures:
        rows: dict[str, np.ndarray] = {}
        csv_rows = []
        for spec in feature_specs:
            feats = extract_features(spec, ds, params, store, seed=seed, split=split)
            nn = nearest_neighbors(feats.train, feats.test[queries])
            rows[spec] = nn
            csv_rows += [[spec, int(q), rank, int(t)] for q, row in zip(queries, nn, strict=True)
                         for rank, t in enumerate(row)]
        written.append(neighbors_figure(query_images, rows,
                                        lambda i: image(ds.train, i), out_dir / "neighbors.png"))
        written.append(write_csv(out_dir / "neighbors.csv",
                                 ["features", "test_image", "rank", "train_image"], csv_rows))
        echo(f"neighbors: {written[-2]}")
    if "map" in figures and len(ds.test) < 4:
        echo(f"map: skipped: {len(ds.test)} test image(s); a 2-D map needs at least 4 "
             f"(--test-size)")
    elif "map" in figures:
        sample = seeded_indices(len(ds.test), MAP_IMAGES, seed)
        labels = np.asarray(ds.test.labels)[sample]
        coords, csv_rows = {}, []
        for spec in feature_specs:
            feats = extract_features(spec, ds, params, store, seed=seed, split=split)
            if feats.test.shape[1] < 2:
                echo(f"map: {spec} skipped: {feats.test.shape[1]} number per image")
                continue
            coords[spec] = embed_2d(feats.test[sample], map_method, seed)
            csv_rows += [[spec, int(i), int(c), *np.round(xy, 6).tolist()]
                         for i, c, xy in zip(sample, labels, coords[spec], strict=True)]
        if coords:
            written.append(map_figure(coords, labels, ds.classes, out_dir / "map.png",
                                      map_method))
            written.append(write_csv(out_dir / "map.csv",
                                     ["features", "test_image", "label", "x", "y"], csv_rows))
            echo(f"map: {written[-2]}")
    if "confusion" in figures:
        from .results import confusion_matrix

        for spec in feature_specs:
            feats = extract_features(spec, ds, params, store, seed=seed, split=split)
            echo(f"confusion: fitting {classifier} on {spec}")
            y_test, pred, chosen = predictions(ds, feats, spec, classifier, params, split, seed)
            m = confusion_matrix(y_test, pred, len(ds.classes))
            pairs = confused_pairs(m)
            examples = {(t, p): mistakes(y_test, pred, t, p)
                        for a, b, _, _ in pairs for t, p in ((a, b), (b, a))}
            slug = file_slug(f"{spec}-{classifier}")
            acc = float(np.mean(y_test == pred))
            hyper = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in chosen.items())
            written.append(confusion_figure(
                m, ds.classes, pairs,
                {k: [image(ds.test, i) for i in v] for k, v in examples.items()},
                out_dir / f"confusion-{slug}.png",
                f"{spec} + {classifier} ({hyper}): test accuracy {acc:.4f}; "
                f"the most confused pairs"))
            names = [str(c) for c in ds.classes]
            written.append(write_csv(out_dir / f"confusion-{slug}.csv", ["true", *names],
                                     ([names[i], *row] for i, row in enumerate(m))))
            written.append(write_csv(
                out_dir / f"confused-pairs-{slug}.csv",
                ["rank", "true", "predicted", "count", "test_images"],
                ([r, names[t], names[p], m[t][p], " ".join(map(str, examples[(t, p)]))]
                 for r, (a, b, _, _) in enumerate(pairs, 1)
                 for t, p in ((a, b), (b, a)))))
            echo(f"confusion of {spec} + {classifier}: {written[-3]}")
    return written
