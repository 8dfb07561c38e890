#!/usr/bin/env bash
# The GPU check of the torch engine, sized for about 8 minutes on one GPU machine with PyTorch,
# transformers and safetensors (no network, no vLLM):
#   1. the tests marked `cuda` (tests/engine/test_cuda.py): the engine on the GPU against the CPU;
#   2. bench/gpu_ttft.py: TTFT of `full` against the blend modes on the embedded model and on random
#      weights of Llama-3.1-8B's shape, at 2k, 8k and 32k tokens -> bench/results/gpu_ttft.{json,md,png}.
# Without a GPU it runs what it can (the cuda tests report themselves skipped; the benchmark runs a
# small random model and the embedded one at 2k on the CPU, into bench/results/gpu_ttft_cpu.*) and
# says what it skipped. PYTHON picks the interpreter (default: .venv/bin/python, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "torch is not importable with $PY: set PYTHON to an interpreter that has PyTorch" >&2
  exit 2
fi
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  gpu=1
  echo "GPU: $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')"
else
  gpu=0
  echo "no GPU visible to torch: the cuda tests will be skipped and the benchmark runs on the CPU"
fi

echo "== tests marked cuda"
if "$PY" -c 'import pytest' 2>/dev/null; then
  timeout 240 "$PY" -m pytest -q -rs -m cuda -p no:cacheprovider tests/engine/test_cuda.py || status=1
else
  echo "skipped: pytest is not installed for $PY"
fi

echo "== TTFT benchmark"
if [ "$gpu" = 1 ]; then
  timeout 300 "$PY" -m bench.gpu_ttft --models embedded,llama8b --lengths 2048,8192,32768 --repeats 3 || status=1
else
  echo "skipped: llama8b-shaped weights and 8k/32k prompts (they need a GPU)"
  timeout 900 "$PY" -m bench.gpu_ttft --models tiny,embedded --lengths 2048 --repeats 2 || status=1
fi
exit $status
