#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on one CUDA GPU, cut off after 8 minutes.
#     benchmarks/gpu_check.sh [OUT]    OUT: where gpu_check.json / .md go (default: outputs/gpu_check in the repo)
# Runs from the repository root with the source tree on PYTHONPATH, so the package need not be
# installed; PYTHON picks the interpreter (default: python3), which needs torch and torchvision with
# CUDA, numpy, pillow, pycocotools and tqdm. What a step measured is written as soon as it ends, so a
# run stopped by the time limit still leaves its figures in OUT. Exit code: 0 when every step passed.
set -uo pipefail
OUT=$(realpath -m "${1:-$(dirname "$0")/../outputs/gpu_check}")  # before the cd: OUT as given
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/nvidia_smi.txt"
timeout 480 "$PYTHON" benchmarks/gpu_check.py --device cuda --out "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
[[ $rc -eq 124 ]] && echo "gpu_check.sh: stopped after 480 s; $OUT/gpu_check.json holds the finished steps" >&2
exit "$rc"
