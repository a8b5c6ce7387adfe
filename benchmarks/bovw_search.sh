#!/usr/bin/env bash
# The bag-of-words / Fisher configuration search behind the study's `bovw` and `fisher`
# rows: each configuration with linear-svm on a seeded 10,000-train / 2,000-test subset of
# CIFAR-10 (JPEG copy). One row per configuration is appended to $OUT/summary.csv.
#   bash benchmarks/bovw_search.sh [DATA_DIR] [OUT]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-results/bovw-search}
mkdir -p "$OUT"
run() {
  local name=$1; shift
  featbench run -d cifar10 --data-dir "$DATA" --train-size 10000 --test-size 2000 \
    -c linear-svm -p linear-svm.C=1e-6,1e-5,1e-4,1e-3 "$@" \
    --results-dir "$OUT" -o "$OUT/$name.csv" -q
  [ -f "$OUT/summary.csv" ] || head -1 "$OUT/$name.csv" | sed 's/^/config,/' > "$OUT/summary.csv"
  tail -n +2 "$OUT/$name.csv" | sed "s/^/$name,/" >> "$OUT/summary.csv"
}
SOFT_MS=(-p bovw.assignment=soft -p bovw.patch_sizes=8,12,16)
run hog-hue -f hog+color-hist -p hog.block_norm=none
run bovw-default -f bovw
run bovw-soft -f bovw -p bovw.assignment=soft
run bovw-multiscale -f bovw -p bovw.patch_sizes=8,12,16
run bovw-3-levels -f bovw -p bovw.pyramid_levels=3
run bovw-2048 -f bovw -p bovw.n_words=2048
run bovw-soft-ms -f bovw "${SOFT_MS[@]}"
run bovw-soft-ms-2048 -f bovw "${SOFT_MS[@]}" -p bovw.n_words=2048
run bovw-soft-ms-3-levels -f bovw "${SOFT_MS[@]}" -p bovw.pyramid_levels=3
run bovw-soft-ms-k10 -f bovw "${SOFT_MS[@]}" -p bovw.soft_neighbors=10
run bovw-soft-ms-rootsift -f bovw "${SOFT_MS[@]}" -p bovw.descriptor=rootsift
run bovw-soft-ms-k20 -f bovw "${SOFT_MS[@]}" -p bovw.soft_neighbors=20
run fisher-default -f fisher
run fisher-spatial -f fisher -p fisher.spatial=true
run fisher-spatial-ms -f fisher -p fisher.spatial=true -p fisher.patch_sizes=8,12,16
run fisher-rootsift-spatial-ms -f fisher -p fisher.descriptor=rootsift -p fisher.spatial=true \
  -p fisher.patch_sizes=8,12,16
