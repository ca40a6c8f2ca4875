#!/usr/bin/env bash
# The GPU measurements of issue #16 as one prepared script, for a machine with a CUDA GPU, torch and
# transformers (the device machine has them; nothing is installed or downloaded here).
#
#   bash tools/gpu_check.sh            # from the repository root; figures land in $OUT (default: gpu_out/)
#
# 1. `llava-mini benchmark --device cuda --json` for the zoo, large and gpu configurations: LlavaMini against
#    transformers on the same weights (fp32), plus our step in bf16, eager and torch.compile'd: tokens/s and MFU.
# 2. A short GPU training: the zoo's stage 1 (recipe.STAGE1_TRAIN: W only, 3000 steps × 64) from the shipped
#    clip-mini and vicuna-mini, in bf16 with torch.compile, timed; then its accuracy on 100 test questions per
#    category, to set beside the CPU build's (manifest: llava-mini-stage1).
#
# Smoke test on CPU (minutes): DEVICE=cpu CONFIGS=tiny BENCH_ARGS="--repeats 1 --batch-size 4 --bf16 --peak-tflops 1"
#   TRAIN_ARGS="--steps 4 --batch-size 8" N=5 bash tools/gpu_check.sh
set -euo pipefail
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
cli() { PYTHONPATH=. "$PYTHON" -m llava_mini.cli "$@"; }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
  "$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
} > "$OUT/env.txt"

for config in ${CONFIGS:-zoo large gpu}; do
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
  cli benchmark --config "$config" --device "$DEVICE" --json ${BENCH_ARGS:-} > "$OUT/benchmark_$config.json"
done

stage1="$OUT/stage1-$DEVICE"
start=$(date +%s)
# shellcheck disable=SC2086
cli train --stage 1 --vision clip-mini --lm vicuna-mini --device "$DEVICE" --compile ${TRAIN_ARGS:-} \
  --out "$stage1" > "$OUT/train_stage1.log" 2>&1
echo "wall seconds $(( $(date +%s) - start ))" >> "$OUT/train_stage1.log"
cli accuracy --model "$stage1" --n "${N:-100}" --json > "$OUT/accuracy_stage1.json"
rm -rf "$stage1"  # the checkpoint itself is not a figure
echo "done: $(ls "$OUT")"
