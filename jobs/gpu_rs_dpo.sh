#!/usr/bin/env bash
# RS-DPO with the `gpu` preset as a Ray Job on an autoscaling GPU cluster (clusters/aws-gpu.yaml,
# gcp-gpu.yaml or kuberay/raycluster.yaml), following its logs; exit code 1 if it fails.
#   jobs/gpu_rs_dpo.sh [key=value ...]
# RAY_ADDRESS: the cluster's dashboard (default: the tunnel of `ray dashboard` / kubectl port-forward).
# RAYALIGN_RUN_ROOT: a directory every node sees (default: the clusters' shared /srv/rayalign/runs).
set -euo pipefail
address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
run_root="${RAYALIGN_RUN_ROOT:-/srv/rayalign/runs}"
# GPU workers start from zero: give the autoscaler time to boot and set up a node (minutes).
exec rayalign submit gpu ray.resource_wait_s=900 "$@" \
    --run-dir "$run_root/gpu" --address "$address" --wait
