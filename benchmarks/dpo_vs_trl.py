"""The train stage (DPO in a Ray Train worker on DeepSpeed) against TRL's DPOTrainer, on the same
model, pairs, micro-batch, learning rate, β, epochs and precision (fp32, or bf16 where the preset's
train.bf16 says so), with reference log-probs computed before training on both sides, one after
the other in one process tree.

    pip install --no-deps -r benchmarks/requirements.txt   # TRL, pinned beside requirements-cpu.lock
    python benchmarks/dpo_vs_trl.py --out benchmarks/results/dpo_vs_trl.json
        [--candidates runs/methods_study/shared] [--root runs/dpo_vs_trl] [--trl-default]
        [--preset default] [--set KEY=VALUE ...]

The pairs are the default preset's select stage (RS-DPO over its scored candidates; --candidates
links the prompts, sample, reference and score stages of a run directory that has them, e.g. the
methods study's shared ones). rayalign's reference log-probs come with the pairs (the reference
stage); TRL computes its own with precompute_ref_log_probs=True, as it builds the trainer, apart
from its training time. Each side runs in a child process whose whole tree (for rayalign: the
driver, the local Ray and its worker) is sampled for peak PSS; the largest process at that peak is
reported too (rayalign's training worker). Tokens are each side's non-padding prompt and response
tokens of chosen and rejected (TRL tokenizes the texts and appends EOS, so its count differs a
little). Steady-state tokens/s leave the first optimizer step out (one-time allocation and
warm-up). TRL runs configured like rayalign (gradient checkpointing as train.gradient_checkpointing
has it, off by default) and, with --trl-default, also with TRL's own default (gradient
checkpointing on: less memory, more compute). "ratio" is rayalign's
steady-state tokens/s over TRL's like-configured run's; "mfu" each side's 6·params·tokens/s over
the matmul rate measured in the same run (benchmarks/ceiling.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ceiling import ceiling, mfu  # noqa: E402
from peak_memory import PeakMemory  # noqa: E402
from record_run import write_result  # noqa: E402

from rayalign.config import load_config  # noqa: E402
from rayalign.data.parquet import read_table  # noqa: E402

UPSTREAM = ("prompts", "sample", "reference", "score")
GIB = 2**30


def config(preset: str, extra: list[str]):
    return load_config(preset, ["evaluate.enabled=false", *extra])


def stages(*names: str):
    # Imported here, as Ray is: TRL's side imports neither, so its memory holds none of theirs.
    from rayalign.pipeline.stages import PIPELINE

    return [s for s in PIPELINE if s.name in names]


def steady(step_tokens: list[float], step_seconds: list[float]) -> float:
    """Tokens per second over the optimizer steps after the first (all of them if there is one)."""
    tokens, seconds = (step_tokens[1:], step_seconds[1:]) if len(step_tokens) > 1 else (step_tokens, step_seconds)
    return sum(tokens) / max(sum(seconds), 1e-9)


def rayalign_side(cfg, run_dir: Path) -> dict:
    from rayalign.pipeline.runner import run_pipeline
    from rayalign.training.loop import read_history

    shutil.rmtree(run_dir / "train", ignore_errors=True)
    summary = run_pipeline(cfg, run_dir, log=lambda line: None, stages=stages(*UPSTREAM, "select", "train"))
    history = read_history(run_dir / "train")
    tokens = [h["tokens"] for h in history]
    seconds = [h["tokens"] / h["tokens_per_s"] for h in history]
    return {"steps": len(history), "tokens": sum(tokens), "step_seconds": sum(seconds),
            "stage_seconds": summary["stage_seconds"]["train"], "steady_tokens_per_s": steady(tokens, seconds),
            "final_loss": history[-1]["loss"]}


def trl_side(cfg, pairs_dir: Path, out_dir: Path, gradient_checkpointing: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from rayalign.models import resolve_model

    t = cfg.train
    torch.set_num_threads(t.resources.torch_threads or torch.get_num_threads())
    path = resolve_model(cfg.model.policy)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows = read_table(pairs_dir).select(["prompt", "chosen", "rejected"]).to_pylist()
    args = DPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate, beta=t.beta,
        loss_type=["sigmoid"], num_train_epochs=t.epochs, warmup_steps=t.warmup_steps,
        lr_scheduler_type="constant_with_warmup", adam_beta1=t.adam_betas[0], adam_beta2=t.adam_betas[1],
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, seed=t.seed, max_length=None,
        precompute_ref_log_probs=True, precompute_ref_batch_size=cfg.reference.resources.batch_size,
        gradient_checkpointing=gradient_checkpointing, bf16=t.bf16, fp16=False, use_cpu=not torch.cuda.is_available(),
        logging_steps=1, report_to="none", save_strategy="no", dataloader_num_workers=0)

    class StepClock(TrainerCallback):
        def __init__(self):
            self.seconds, self.started = [], 0.0

        def on_step_begin(self, *_, **__):
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self.started)

    clock = StepClock()
    start = time.perf_counter()
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[clock])
    built = time.perf_counter()
    # Tokens per example as the collator lays them out: the prompt before each of chosen and rejected.
    per_example = [2 * len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"])
                   for e in trainer.train_dataset]
    metrics = trainer.train().metrics
    batch = t.micro_batch_size * t.gradient_accumulation_steps
    tokens = [sum(per_example[i:i + batch]) for i in range(0, len(per_example), batch)]  # order aside, same sums
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": len(clock.seconds), "tokens": sum(tokens), "step_seconds": sum(clock.seconds),
            "setup_seconds": built - start, "train_runtime": metrics["train_runtime"],
            "steady_tokens_per_s": sum(tokens[1:]) / max(sum(clock.seconds[1:]), 1e-9) if len(tokens) > 1
            else sum(tokens) / max(sum(clock.seconds), 1e-9),
            "final_loss": losses[-1] if losses else None, "gradient_checkpointing": gradient_checkpointing}


def measured(side: str, args) -> dict:
    """Run one side in a child process, sampling its tree's PSS."""
    out = args.root / f"{side}.json"
    command = [sys.executable, __file__, "--side", side, "--root", str(args.root), "--preset", args.preset,
               "--set", *args.extra]
    child = subprocess.Popen(command)
    with PeakMemory(interval=1.0, pid=child.pid) as memory:
        code = child.wait()
    if code:
        raise SystemExit(f"the {side} side failed (exit {code}): {' '.join(command)}")
    result = json.loads(out.read_text())
    result["peak_pss_gib"] = memory.peak / GIB
    result["largest_at_peak"] = [{"pss_gib": p / GIB, "process": n} for p, n in memory.largest]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dpo_vs_trl.json"))
    parser.add_argument("--candidates", type=Path, help="a run directory holding the upstream stages to link")
    parser.add_argument("--root", type=Path, default=Path("runs/dpo_vs_trl"))
    parser.add_argument("--trl-default", action="store_true", help="also run TRL with its default settings")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--side", choices=["rayalign", "trl", "trl_default"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg, run_dir = config(args.preset, args.extra), args.root / "run"
    if args.side == "rayalign":
        result = rayalign_side(cfg, run_dir)
    elif args.side:
        like_rayalign = cfg.train.gradient_checkpointing if args.side == "trl" else True
        result = trl_side(cfg, run_dir / "select", args.root / args.side, gradient_checkpointing=like_rayalign)
    if args.side:
        (args.root / f"{args.side}.json").write_text(json.dumps(result))
        return 0
    if args.candidates:
        from methods_study import link

        link(args.candidates, run_dir, UPSTREAM)
    import ray

    from rayalign.pipeline.runner import run_pipeline

    run_pipeline(cfg, run_dir, log=print, stages=stages(*UPSTREAM, "select"))
    ray.shutdown()  # no second Ray, idle beside the measured sides (each side's tree starts its own)
    machine_ceiling = ceiling(cfg.model.policy, cfg.train.resources.torch_threads)
    sides = {side: measured(side, args) for side in ("rayalign", "trl", "trl_default")[:3 if args.trl_default else 2]}
    result = {
        "preset": args.preset, "overrides": args.extra, "pairs": read_table(run_dir / "select").num_rows,
        "settings": {"micro_batch_size": cfg.train.micro_batch_size, "learning_rate": cfg.train.learning_rate,
                     "beta": cfg.train.beta, "epochs": cfg.train.epochs,
                     "dtype": "bfloat16" if cfg.train.bf16 else "float32",
                     "model": cfg.model.policy, "torch_threads": cfg.train.resources.torch_threads},
        **sides,
        "ceiling": machine_ceiling,
        "mfu": {side: mfu(figures["steady_tokens_per_s"], machine_ceiling, 6) for side, figures in sides.items()},
        "ratio": sides["rayalign"]["steady_tokens_per_s"] / sides["trl"]["steady_tokens_per_s"],
        "memory_ratio": sides["rayalign"]["peak_pss_gib"] / sides["trl"]["peak_pss_gib"],
    }
    write_result(args.out, result, ("ratio", "memory_ratio", "pairs"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
