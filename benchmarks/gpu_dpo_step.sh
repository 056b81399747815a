#!/usr/bin/env bash
# The DPO step benchmark (benchmarks/dpo_step_memory.py) on a lent GPU, in one device call: every
# variant of the step in bf16 on SmolLM2-135M's shape (32 pairs) and SmolLM2-1.7B's (8 pairs), with
# the GPU's bf16 matmul rate and each variant's MFU. It needs torch and transformers only (the GPU
# image has both; no Ray, DeepSpeed or vLLM), and writes dpo_step_memory-135m-gpu.json and
# dpo_step_memory-1.7b-gpu.json into $OUT (benchmarks/results without it).
#   bash benchmarks/gpu_dpo_step.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 benchmarks/dpo_step_memory.py --device cuda --shape 135m --pairs 32 --steps 5 \
  --out "$out/dpo_step_memory-135m-gpu.json"
python3 benchmarks/dpo_step_memory.py --device cuda --shape 1.7b --pairs 8 --steps 5 \
  --out "$out/dpo_step_memory-1.7b-gpu.json"
