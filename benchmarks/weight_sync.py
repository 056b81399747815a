"""Seconds of PPO's weight sync into a vLLM engine, in memory against the checkpoint fallback,
for one policy, measured in the same process (ppo.weight_sync = memory | checkpoint).

    python benchmarks/weight_sync.py --out result.json [--model smollm2-135m-instruct] [--repeats 3]

Each repeat perturbs the policy's weights, syncs them, and checks that vLLM's log-probs of a
fixed sequence moved to the trainer's (the sync took effect).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from record_run import machine, versions  # noqa: E402  (the benchmarks folder is not a package)


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import SamplingParams

    from rayalign.actors.sampler import VLLMSampler, sampler_kwargs
    from rayalign.config import SampleConfig
    from rayalign.models import resolve_model
    from rayalign.training.ppo import sync_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write (vLLM logs to stdout)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    text = "The film was a quiet, patient study of grief, and the ending"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).eval()
    sampler = VLLMSampler(**sampler_kwargs(path, SampleConfig(), args.dtype, n=1, seed=0, stream="bench",
                                           temperature=1.0, top_p=1.0))

    def gap() -> float:
        """Largest per-token gap between vLLM's and the trainer's log-probs of `ids`."""
        out = sampler.llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                                   use_tqdm=False)[0]
        ours = torch.log_softmax(policy(input_ids=torch.tensor([ids])).logits[0, :-1].double(), -1)
        theirs = [step[tok].logprob for tok, step in zip(ids[1:], out.prompt_logprobs[1:])]
        return max(abs(a - b) for a, b in zip(theirs, ours.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()))

    results = {}
    with torch.no_grad(), tempfile.TemporaryDirectory() as scratch:
        for mode in ("memory", "checkpoint"):
            seconds, gaps = [], []
            for _ in range(args.repeats):
                for p in policy.parameters():
                    p.add_(torch.randn_like(p) * 1e-3)
                started = time.perf_counter()
                sync_weights(sampler, policy.state_dict(), mode, Path(scratch))
                seconds.append(time.perf_counter() - started)
                gaps.append(gap())
            results[mode] = {"seconds": seconds, "median_s": statistics.median(seconds),
                             "max_logprob_gap_after_sync": max(gaps)}
    params = sum(p.numel() for p in policy.parameters())
    record = {"command": " ".join(["python", *sys.argv]), "machine": machine(), "versions": versions(),
              "model": args.model, "dtype": args.dtype, "parameters": params, "results": results,
              "checkpoint_over_memory": results["checkpoint"]["median_s"] / results["memory"]["median_s"]}
    Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
