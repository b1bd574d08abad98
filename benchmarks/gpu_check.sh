#!/usr/bin/env bash
# The GPU check: install offline, profile ResNet-50 at realistic settings, write
# everything under $OUT, print a summary table last. Must finish within 6 minutes.
#
#   bash benchmarks/gpu_check.sh              # on a CUDA machine (device tool: $OUT is set)
#   bash benchmarks/gpu_check.sh --device cpu # dry run of every step on the CPU, small sizes
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
[ "${1:-}" = "--device" ] && DEVICE="${2:-cuda}"
OUT="${OUT:-out/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# Offline install: the device has torch, torchvision, rich, nvidia-ml-py; the nvtx
# wheel travels in .whl/ (see benchmarks/README.md).
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null

if [ "$DEVICE" = cpu ]; then
  SIZE=(--device cpu --image-size 64 --batch-size 2 --steps 2 --warmup 1)
else
  SIZE=(--device "$DEVICE" --batch-size 128 --steps 20 --warmup 5)
fi

step() {  # step NAME CMD...: run, keep its output, never stop the whole check
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  if "$@" >"$OUT/$name.txt" 2>&1; then echo "   ok ($((SECONDS - t0)) s)"; else echo "   FAILED ($((SECONDS - t0)) s), see $name.txt"; tail -5 "$OUT/$name.txt"; fi
}

# --- core (issue 2) ---
step r50_bf16 tlprof profile --arch resnet50 --freeze 45 --precision bf16 --channels-last \
  "${SIZE[@]}" --json "$OUT/r50_bf16.json"
step r50_fp32 tlprof profile --arch resnet50 --freeze 45 --precision fp32 \
  "${SIZE[@]}" --json "$OUT/r50_fp32.json"

# --- kernels (issue 4) ---

# --- NVTX, NVML, energy (issue 5) ---

# --- summary, last ---
python3 benchmarks/summarize.py "$OUT"/*.json | tee "$OUT/summary.txt"
