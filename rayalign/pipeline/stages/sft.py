"""sft: supervised fine-tuning of model.policy on demonstrations (loss on the response tokens),
length-bucketed; its model becomes the policy that samples and the reference."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import ray

from rayalign.config import settings
from rayalign.data.sft_data import build_sft_table
from rayalign.evaluation.metrics import mean
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import train_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import fit_node, tokenizer, training_run
from rayalign.training.sft import length_bucketed_order
from rayalign.training.trainer import throughput


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    from rayalign.training.sft import train_loop

    cfg = ctx.cfg.sft
    table, dropped = build_sft_table(cfg, ctx.cfg.data, tokenizer(ctx, ctx.base_policy))
    lengths = table["num_tokens"].to_pylist()
    # Buckets of one are a plain shuffle.
    table = table.take(length_bucketed_order(lengths, cfg.micro_batch_size if cfg.length_bucketing else 1, cfg.seed))
    pq.write_table(table, out / "sft_data.parquet")  # the examples in training order
    start = time.perf_counter()
    history = fit_node(ctx, train_loop, {"model_path": ctx.base_policy}, cfg, ray.data.from_arrow(table), out)
    seconds = time.perf_counter() - start
    return {"rows": table.num_rows, "seconds": seconds, "dropped_examples": dropped,
            "first_loss": history[0]["loss"], "final_loss": history[-1]["loss"],
            "padding_fraction": mean([h["padding_fraction"] for h in history]), **throughput(history, seconds)}


def track(ctx: RunContext, folder: Path) -> None:
    training_run(ctx, folder, ctx.cfg.sft.model_dump(mode="json"), {"policy": ctx.base_policy}, folder,
                 "demonstrations")


def policy(ctx: RunContext) -> str:
    """The policy before any preference training: the SFT model when sft runs, else model.policy."""
    return str(ctx.path(STAGE) / "model") if ctx.runs(STAGE) else ctx.base_policy


STAGE = Stage(
    name="sft",
    run=run,
    settings=lambda cfg: [settings(cfg.sft), settings(cfg.data), cfg.model.policy],
    active=lambda cfg: cfg.sft.enabled,
    needs=lambda cfg: train_bundles(cfg.sft.resources),
    needs_set_by="sft.resources.num_workers / use_gpu / cpus_per_worker",
    track=track,
    summary=lambda folder, metrics: {"sft_model": str(folder / "model")},
    produces_policy=True,
)
