"""The machine's ceiling: its dense matmul rate, and the model FLOP utilisation (MFU) of the work
the side-by-side benchmarks measured against it.

    python benchmarks/ceiling.py --out benchmarks/results/ceiling.json
        [--sampling benchmarks/results/sampling_vs_vllm.json] [--dpo benchmarks/results/dpo_vs_trl.json]

benchmarks/sampling_vs_vllm.py and benchmarks/dpo_vs_trl.py call `ceiling()` in their own run
(the rate is measured on the same machine, threads and moment as their figures) and record the
MFU of both their sides; this script collects those figures into one file. MFU counts every
parameter once (a tied embedding is the LM head's matmul): training does 6·N FLOPs per token
(forward and backward), sampling 2·N; attention's own FLOPs are left out, as is usual.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_run import write_result  # noqa: E402


def matmul_flops(threads: int | None = None, n: int = 2048, seconds: float = 3.0, device: str | None = None,
                 dtype: str | None = None) -> dict:
    """The dense matmul rate (FLOP/s) of torch on this machine: n×n products on `device` (the GPU
    when there is one, else the CPU with `threads` threads) in `dtype` (default bf16 on a GPU, fp32
    on the CPU: the dtype of the work it is compared with); the best of repeated timings."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device == "cuda"
    dtype = getattr(torch, dtype) if dtype else torch.bfloat16 if cuda else torch.float32
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            torch.mm(a, b)
            if cuda:
                torch.cuda.synchronize()
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(before)
    return {"flops": best, "device": device, "dtype": str(dtype).removeprefix("torch."), "n": n,
            "threads": threads or before}


def parameters(model: str) -> int:
    """Parameters of an HF causal LM (a checkpoint directory or a rayalign model name), counted on the
    meta device: tied weights once."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from rayalign.models import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(model))
    with torch.device("meta"):
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())


def ceiling(model: str, threads: int | None = None) -> dict:
    """The matmul rate and the model's parameter count, for mfu()."""
    return {"matmul": matmul_flops(threads), "parameters": parameters(model)}


def mfu(tokens_per_s: float, ceiling: dict, flops_per_param_token: int) -> float:
    """Model FLOP utilisation: flops_per_param_token·N·tokens/s over the matmul rate (6 to train, 2 to sample)."""
    return flops_per_param_token * ceiling["parameters"] * tokens_per_s / ceiling["matmul"]["flops"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ceiling.json"))
    parser.add_argument("--sampling", type=Path, default=Path("benchmarks/results/sampling_vs_vllm.json"))
    parser.add_argument("--dpo", type=Path, default=Path("benchmarks/results/dpo_vs_trl.json"))
    args = parser.parse_args()
    collected = {}
    for path in (args.sampling, args.dpo):
        if path.is_file():
            figures = json.loads(path.read_text())
            collected[path.name] = {key: figures[key] for key in ("ceiling", "mfu", "command")}
    write_result(args.out, {"matmul_now": matmul_flops(), "benchmarks": collected}, ("benchmarks",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
