#!/usr/bin/env bash
# The SFT -> reward model -> RS-DPO chain (the `rs_dpo_chain` preset) as a Ray Job on a cluster
# from clusters/, following its logs; exit code 1 if it fails. Overrides are passed through:
#   jobs/rs_dpo_chain.sh [key=value ...]
# RAY_ADDRESS: the cluster's dashboard (default: the tunnel of `ray dashboard` / kubectl port-forward).
# RAYALIGN_RUN_ROOT: a directory every node sees (default: the clusters' shared /srv/rayalign/runs).
# RAYALIGN_GPU=1: on the GPU clusters (the preset itself is sized for CPUs, where vLLM's CPU build
# runs): vLLM engines and the reward model's scorer on half a GPU each, every trainer on one GPU.
set -euo pipefail
address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
run_root="${RAYALIGN_RUN_ROOT:-/srv/rayalign/runs}"
gpu=()
if [[ "${RAYALIGN_GPU:-0}" == 1 ]]; then
    gpu=(sample.resources.num_gpus=0.5 sample.resources.num_cpus=2 sample.resources.max_actors=2
         score.resources.num_gpus=0.5 score.resources.num_cpus=2
         sft.resources.use_gpu=true sft.resources.cpus_per_worker=4
         reward_model.resources.use_gpu=true reward_model.resources.cpus_per_worker=4
         train.resources.use_gpu=true train.resources.cpus_per_worker=4)
fi
# Workers the autoscaler has to start take minutes to boot and set up.
exec rayalign submit rs_dpo_chain ray.resource_wait_s=900 ${gpu[@]+"${gpu[@]}"} "$@" \
    --run-dir "$run_root/rs_dpo_chain" --address "$address" --wait
