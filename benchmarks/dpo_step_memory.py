"""Peak memory and speed of one DPO training step's forward, backward and AdamW update, each variant
in a fresh process:
- all_positions: chosen and rejected as two padded prompt+response rows, the LM head over every position;
- response_positions: the same rows, the LM head over the response positions only (logits_to_keep;
  the train stage with train.share_prompt=false);
- shared_prompt_full_head: one row per pair, prompt + chosen + rejected, the prompt run once, the
  LM head over every position from the earliest response token on, as one [batch, length, vocab] tensor;
- shared_prompt_no_recompute: that with the LM head on the response tokens' positions only, a chunk
  at a time, recomputed in the backward (pair_logprobs);
- shared_prompt: that with each SwiGLU MLP's activation and product and each RMSNorm's normalised
  input recomputed in the backward instead of kept (recompute.recompute_activations; the train
  stage's default);
- shared_prompt_checkpointing: that with transformers' gradient checkpointing
  (train.gradient_checkpointing=true).

    python benchmarks/dpo_step_memory.py --out benchmarks/results/dpo_step_memory.json
        [--pairs 8] [--steps 3] [--threads 2] [--device cpu|cuda] [--dtype float32|bfloat16]
        [--shape 135m|1.7b]

The model is SmolLM2-135M's shape (or -1.7B's) with random weights, in plain torch with AdamW (no
Ray, no DeepSpeed: it runs wherever torch and transformers do); fp32 on the CPU and bf16 on a GPU
by default (bf16 weights and optimizer state, the naive bf16 loop). A micro-batch is `pairs` pairs
(2·pairs rows) of 52-60-token prompts and 34-40-token responses (the lengths of the default
preset's pairs). "step_peak_gib" is the peak memory during the steps above the memory before them
(activations, logits, gradients and, from the first step on, Adam's state): RSS on the CPU,
torch's allocator peak on a GPU. "tokens_per_s" counts the prompt once for each of chosen and
rejected (the train stage's count; TRL's too), over the steps after the first; "mfu" is
6·params·tokens/s over the matmul rate measured in the same run, device and dtype
(benchmarks/ceiling.py). "ratio" is the old variant's step peak over the train stage's default's
(shared_prompt), "speedup" the old step time over it; "memory_ratios" and "speedups" give every
variant's against all_positions.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ceiling import matmul_flops  # noqa: E402
from record_run import write_result  # noqa: E402
from reference_shared_prompt import SHAPES, smollm2_shaped_model  # noqa: E402

VARIANTS = ("all_positions", "response_positions", "shared_prompt_full_head", "shared_prompt_no_recompute",
            "shared_prompt", "shared_prompt_checkpointing")
DEFAULT = "shared_prompt"
GIB = 2**30


def one_variant(variant: str, args) -> dict:
    import torch

    from rayalign.logprobs import pad_batch, pair_logprobs, sequence_logprobs, token_logprobs
    from rayalign.recompute import recompute_activations

    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    model = smollm2_shaped_model(args.shape).to(device=args.device, dtype=getattr(torch, args.dtype)).train()
    if variant in ("shared_prompt", "shared_prompt_checkpointing"):
        recompute_activations(model)
    if variant.endswith("_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if variant.endswith("_full_head"):
        model._rayalign_plain_head = False  # what lm_head.plain_head answers for a head it cannot split off
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    pairs = args.pairs
    # 52-60 prompt and 34-40 response tokens: the default preset's pairs have 51-63 (mean 56) and 36.5.
    prompts = [torch.randint(1, 49152, (52 + 2 * (i % 5),), generator=g).tolist() for i in range(pairs)]
    responses = [torch.randint(1, 49152, (40 - i % 7,), generator=g).tolist() for i in range(2 * pairs)]
    ids, attention, mask = (t.to(args.device) for t in pad_batch(prompts + prompts, responses, pad_id=0))

    def memory() -> float:
        if cuda:
            return torch.cuda.max_memory_allocated()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    if cuda:
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        import psutil

        before = psutil.Process().memory_info().rss
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        if variant == "all_positions":
            logps = (token_logprobs(model, ids, attention) * mask[:, 1:]).sum(-1)
        elif variant.startswith("shared_prompt"):
            logps = torch.cat(pair_logprobs(model, prompts, responses[:pairs], responses[pairs:], 0, args.device))
        else:
            logps = sequence_logprobs(model, ids, attention, mask)
        logps.float().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    tokens = int(attention.sum())
    steady = seconds[1:] or seconds
    return {"step_peak_gib": (memory() - before) / GIB, "process_peak_gib": memory() / GIB,
            "step_seconds": seconds, "tokens": tokens, "tokens_per_s": tokens * len(steady) / sum(steady),
            "parameters": sum(p.numel() for p in model.parameters())}


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dpo_step_memory.json"))
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="135m")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.variant:
        print(json.dumps(one_variant(args.variant, args)))
        return 0
    results = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--variant", variant, "--pairs", str(args.pairs), "--steps",
                   str(args.steps), "--threads", str(args.threads), "--device", args.device, "--dtype", args.dtype,
                   "--shape", args.shape]
        results[variant] = json.loads(subprocess.run(command, capture_output=True, text=True,
                                                     check=True).stdout.splitlines()[-1])
    # The first step allocates Adam's state; the steps after it are the steady ones.
    pace = {k: min(v["step_seconds"][1:] or v["step_seconds"]) for k, v in results.items()}
    old = results["all_positions"]["step_peak_gib"]
    memory_ratios = {k: v["step_peak_gib"] / old for k, v in results.items()}
    speedups = {k: pace["all_positions"] / pace[k] for k in results}
    threads = None if args.device == "cuda" else args.threads
    rate = matmul_flops(threads, device=args.device, dtype=args.dtype)
    mfu = {k: 6 * v["parameters"] * v["tokens_per_s"] / rate["flops"] for k, v in results.items()}
    write_result(args.out, {"pairs": args.pairs, "threads": args.threads, "device": args.device,
                            "dtype": args.dtype, "shape": args.shape, **results, "matmul": rate, "mfu": mfu,
                            "memory_ratios": memory_ratios, "speedups": speedups,
                            "ratio": 1 / memory_ratios[DEFAULT], "speedup": speedups[DEFAULT]},
                 ("ratio", "speedup", "memory_ratios", "speedups", "mfu"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
