#!/usr/bin/env bash
# The sampling and DPO side-by-side benchmarks on a GPU machine, with the gpu preset, on
# SmolLM2-135M's shape and on SmolLM2-1.7B's (random weights, benchmarks/shaped_checkpoint.py):
# sampling_vs_vllm-gpu.json, dpo_vs_trl-gpu.json and their -1.7b twins, into $OUT
# (benchmarks/results without it). SHAPES="135m" runs the first shape only.
#
# It runs where vLLM, Ray, DeepSpeed, MLflow and TRL are importable from /tmp/site. On the lent
# GPU machine (torch 2.11 + CUDA 13 and transformers, none of those) that takes, back to back
# on one warm machine: the three calls of ../shared/gpu/make-vllm-kit.sh, then a call carrying
# [".whl"] and one carrying [".gpw"] (benchmarks/gpu_kit.sh builds both and .gputok here), each
#   python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
# (.gpw/*.whl for the second), then this script with carry [".gputok"]:
#   bash benchmarks/gpu_side_by_side.sh
# Expect minutes per benchmark: each stage run starts Ray and vLLM engines afresh (the first
# engine start compiles, ~3 minutes), so the sampling benchmarks run one repeat.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
export PYTHONPATH=$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTHONUNBUFFERED=1
tokenizer=${TOKENIZER:-.gputok}
for shape in ${SHAPES:-135m 1.7b}; do
  suffix=$([ "$shape" = 135m ] && echo gpu || echo "$shape-gpu")
  model=/tmp/smollm2-$shape-shape
  [ -f "$model/config.json" ] || python3 benchmarks/shaped_checkpoint.py --shape "$shape" --tokenizer "$tokenizer" --out "$model"
  python3 benchmarks/sampling_vs_vllm.py --preset gpu --repeats 1 --root "/tmp/runs/sampling-$shape" \
    --set "model.policy=$model" --out "$out/sampling_vs_vllm-$suffix.json"
  python3 benchmarks/dpo_vs_trl.py --preset gpu --root "/tmp/runs/dpo-$shape" \
    --set "model.policy=$model" tracking.log_model=false \
    --out "$out/dpo_vs_trl-$suffix.json"
done
