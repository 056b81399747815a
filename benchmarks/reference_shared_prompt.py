"""Response tokens scored per second by the reference stage's log-prob forward, per row (the padded
prompt+response forward, sequence_logprobs) against shared prompts (shared_prompt_logprobs), on the
same inputs in the same process, timed interleaved, and their agreement. "ratio" compares tokens per
CPU second of this process (stable on a CPU shared with other jobs, where wall time is not);
"ratio_wall" compares tokens per wall second.

    python benchmarks/reference_shared_prompt.py --out benchmarks/results/reference_shared_prompt.json
        [--prompts 2] [--ks 8 16] [--repeats 3] [--threads 1]

The model is SmolLM2-135M's shape (LlamaConfig) with random weights from a fixed seed, in fp32 on
CPU: nothing is downloaded. Prompts are ~80 random tokens (the default task's chat-templated prompts
are about that long), responses 40; each call gets the rows of 2 prompts × k, k rows per prompt, as
the reference stage's batches hold them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from record_run import machine, versions  # noqa: E402  (the benchmarks folder is not a package)

from rayalign.logprobs import (pad_batch, sequence_logprobs, shared_prompt_logprobs,  # noqa: E402
                               shared_prompt_token_logprobs, token_logprobs)

PROMPTS_PER_CALL, RESPONSE_TOKENS, PAD_ID = 2, 40, 0


# SmolLM2's shapes (their HF configs): hidden, intermediate, layers, attention heads, KV heads.
SHAPES = {"135m": (576, 1536, 30, 9, 3), "1.7b": (2048, 8192, 24, 32, 32)}


def smollm2_shaped_model(shape: str = "135m"):
    """A random-weight Llama in the shape of SmolLM2-135M (or -1.7B), fp32, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, intermediate, layers, heads, kv_heads = SHAPES[shape]
    config = LlamaConfig(vocab_size=49152, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=2048, tie_word_embeddings=True, pad_token_id=PAD_ID,
                         bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def batches(n_prompts: int, k: int, vocab: int) -> list[tuple[list, list]]:
    """(prompts, responses) per call: 2 prompts of 76-84 tokens, k responses of 40 tokens each."""
    g = torch.Generator().manual_seed(k)
    prompts = [torch.randint(1, vocab, (76 + 2 * (i % 5),), generator=g).tolist() for i in range(n_prompts)]
    calls = []
    for start in range(0, n_prompts, PROMPTS_PER_CALL):
        rows = [p for p in prompts[start:start + PROMPTS_PER_CALL] for _ in range(k)]
        calls.append((rows, [torch.randint(1, vocab, (RESPONSE_TOKENS,), generator=g).tolist() for _ in rows]))
    return calls


def per_row(model, prompts, responses) -> torch.Tensor:
    """The former reference path: one padded forward over every row's prompt+response."""
    return sequence_logprobs(model, *pad_batch(prompts, responses, PAD_ID))


def shared_prompt(model, prompts, responses) -> torch.Tensor:
    """The reference path now: each distinct prompt once, its responses from its KV cache."""
    return shared_prompt_logprobs(model, prompts, responses, PAD_ID)


def token_gap(model, prompts, responses) -> float:
    """Largest |per-row − shared| log-prob of one response token, in nats."""
    ids, attention, response = pad_batch(prompts, responses, PAD_ID)
    padded = token_logprobs(model, ids, attention)[response[:, 1:]]
    shared, mask = shared_prompt_token_logprobs(model, prompts, responses, PAD_ID)
    return (padded - shared[mask]).abs().max().item()


def timed(fn, model, calls) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds of this process for `fn` over all calls, and the row log-probs it gave."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = [fn(model, p, r) for p, r in calls]
    return time.perf_counter() - wall, time.process_time() - cpu, torch.cat(out).tolist()


def speeds(tokens: int, wall: list[float], cpu: list[float]) -> dict:
    """Tokens per wall second and per CPU second of each repeat, and their medians."""
    return {"wall_s": wall, "cpu_s": cpu, "tokens_per_s": [tokens / x for x in wall],
            "tokens_per_cpu_s": [tokens / x for x in cpu], "median_tokens_per_s": tokens / statistics.median(wall),
            "median_tokens_per_cpu_s": tokens / statistics.median(cpu)}


def measure(model, calls, repeats: int) -> dict:
    """Both sides at one k, per row then shared prompt in each repeat: speeds and agreement (per
    token on the first call; per token of the row sums on every timed call)."""
    tokens = sum(len(r) for _, responses in calls for r in responses)
    gap = token_gap(model, *calls[0])  # also the warm-up of both paths
    times = {"per_row": ([], []), "shared_prompt": ([], [])}
    sum_gap = 0.0
    for _ in range(repeats):
        sums = []
        for side, fn in (("per_row", per_row), ("shared_prompt", shared_prompt)):
            wall, cpu, logps = timed(fn, model, calls)
            times[side][0].append(wall)
            times[side][1].append(cpu)
            sums.append(logps)
        sum_gap = max(sum_gap, max(abs(a - b) for a, b in zip(*sums)) / RESPONSE_TOKENS)
    sides = {side: speeds(tokens, *t) for side, t in times.items()}
    new, old = sides["shared_prompt"], sides["per_row"]
    return {"rows": sum(len(p) for p, _ in calls), "response_tokens": tokens, **sides,
            "ratio": new["median_tokens_per_cpu_s"] / old["median_tokens_per_cpu_s"],
            "ratio_wall": new["median_tokens_per_s"] / old["median_tokens_per_s"],
            "max_abs_token_diff_nats": gap, "max_abs_sum_diff_nats_per_token": sum_gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--prompts", type=int, default=2, help="distinct prompts per k (2 per call)")
    parser.add_argument("--ks", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 makes the process's CPU time that of the forward alone")
    parser.add_argument("--note", action="append", default=[], help="how the run went (shared CPUs, ...)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = smollm2_shaped_model()
    with torch.no_grad():
        per_k = {str(k): measure(model, batches(args.prompts, k, model.config.vocab_size), args.repeats)
                 for k in args.ks}
    record = {"command": " ".join(["python", *sys.argv]), "machine": machine(), "versions": versions(),
              "model": "random-weight LlamaForCausalLM in SmolLM2-135M's shape", "dtype": "float32",
              "parameters": sum(p.numel() for p in model.parameters()), "torch_threads": args.threads,
              "prompts": args.prompts, "prompts_per_call": PROMPTS_PER_CALL, "response_tokens": RESPONSE_TOKENS,
              "repeats": args.repeats, "notes": args.note, "per_k": per_k,
              "agreement": {"max_abs_token_diff_nats": max(v["max_abs_token_diff_nats"] for v in per_k.values()),
                            "max_abs_sum_diff_nats_per_token":
                                max(v["max_abs_sum_diff_nats_per_token"] for v in per_k.values())},
              "ratio": per_k[str(args.ks[0])]["ratio"]}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
