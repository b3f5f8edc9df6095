#!/usr/bin/env bash
# GPU check for issue 9, sized for one H100/H200 (well under 8 minutes):
#   rollout tokens/s through plyground vs the bare OpenAI client on the same server and requests,
#   then GRPO steps with rollouts from that server and a full weight push after each update.
# The server is vLLM when it is importable, else plyground's own server on the GPU.
#   bash benchmarks/gpu_check.sh [MODEL_DIR] [extra gpu_check.py flags]
# MODEL_DIR defaults to the embedded SmolLM2-135M-Instruct converted by plyground (its cache
# folder); pass `--random-init` with a folder holding only config.json + tokenizer files to
# measure the same architecture with random weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
MODEL=${1:-}
if [ -z "$MODEL" ]; then
  MODEL=$($PY -c "from plyground.inference.models import load_default_model, _default_cache_folder; load_default_model(); print(_default_cache_folder())")
else
  shift
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec $PY benchmarks/gpu_check.py --model "$MODEL" --out "${OUT_DIR:-benchmarks/results/gpu_check}" "$@"
