"""The train stage's DPO step outside Ray: the same pairs, model, loss and optimizer settings in a bare
process, each variant in a fresh one, to tell what DeepSpeed costs and what running in a Ray Train
worker costs (compare with the train stage's per-step times in its train_metrics.jsonl):
- plain_torch: the policy (its layers recomputing as the stage's do) with torch's AdamW and the
  loop's gradient clipping, no DeepSpeed;
- deepspeed: the engine the train stage builds (training.loop.deepspeed_engine);
- deepspeed_allreduce: that engine with DeepSpeed's gradient all-reduce left on, as DeepSpeed has it
  for a world of one (the train stage turns it off for a single ZeRO-0 fp32 worker).

    python benchmarks/deepspeed_step.py --pairs-from runs/dpo_vs_trl/run/select
        [--out benchmarks/results/deepspeed_step.json] [--repeats 2] [--set KEY=VALUE ...]

The pairs are a select stage's output in the train stage's seeded order (trainer.shuffled's
permutation), one optimizer step per micro-batch of the default preset's train section (with
--set overrides); the loss is the stage's (preference.preference_batch_loss). Variants run
alternately, `repeats` times each. "mean_step_seconds" averages steps 3 on (the first two allocate
and warm up); "peak_rss_gib" is the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_run import write_result  # noqa: E402

VARIANTS = ("plain_torch", "deepspeed", "deepspeed_allreduce")


def one_variant(variant: str, pairs_dir: Path, overrides: list[str]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from rayalign.actors.runtime import set_torch_threads
    from rayalign.config import load_config
    from rayalign.data.parquet import read_table
    from rayalign.models import resolve_model
    from rayalign.pretrained import load_model, load_tokenizer
    from rayalign.recompute import recompute_activations
    from rayalign.training.loop import deepspeed_engine, without_dropout
    from rayalign.training.preference import preference_batch_loss

    config = load_config("default", overrides)
    cfg = config.train
    set_torch_threads(cfg.resources.torch_threads)
    path = resolve_model(config.model.policy)
    tokenizer = load_tokenizer(path, False)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    table = read_table(pairs_dir)
    table = table.take(random.Random(cfg.seed).sample(range(table.num_rows), table.num_rows))  # trainer.shuffled's
    model = without_dropout(load_model(AutoModelForCausalLM, path, False, dtype=torch.float32))
    if variant == "plain_torch":
        model.train()
        recompute_activations(model)  # as deepspeed_engine does for the stage
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, betas=cfg.adam_betas,
                                      weight_decay=cfg.weight_decay)
        forward = model
    else:
        import deepspeed

        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", DS_ACCELERATOR="cpu")
        os.environ.setdefault("MASTER_PORT", "29541")
        deepspeed.init_distributed(dist_backend="gloo")
        forward = deepspeed_engine(model, cfg, world=1)
        if variant == "deepspeed_allreduce":
            forward.enable_backward_allreduce = True
    seconds = []
    for start in range(0, table.num_rows - cfg.micro_batch_size + 1, cfg.micro_batch_size):
        batch = table.slice(start, cfg.micro_batch_size).to_pydict()
        began = time.perf_counter()
        loss, _ = preference_batch_loss(forward, batch, torch.device("cpu"), cfg, pad_id, use_reference=True)
        if variant == "plain_torch":
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            forward.backward(loss, scale_wrt_gas=False)
            forward.step()
        seconds.append(time.perf_counter() - began)
    return {"step_seconds": seconds, "mean_step_seconds": sum(seconds[2:]) / max(len(seconds[2:]), 1),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs-from", type=Path, required=True, help="a select stage's output folder")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/deepspeed_step.json"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="extra", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.pairs_from, args.extra)))
        return 0
    runs = {variant: [] for variant in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--variant", variant, "--pairs-from", str(args.pairs_from),
                       "--set", *args.extra]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[variant].append(json.loads(out.splitlines()[-1]))
    summary = {v: {"mean_step_seconds": [r["mean_step_seconds"] for r in rs],
                   "peak_rss_gib": [r["peak_rss_gib"] for r in rs]} for v, rs in runs.items()}
    write_result(args.out, {"pairs_from": str(args.pairs_from), "overrides": args.extra, "runs": runs,
                            "summary": summary}, ("summary",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
