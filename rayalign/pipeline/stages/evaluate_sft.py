"""evaluate_sft: the SFT policy (the policy before preference training) on the held-out prompts,
judged by the gold reward; every round's evaluate compares its aligned policy with these responses,
so the SFT side is sampled once per run, not once per round."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from rayalign.config import settings
from rayalign.data import schemas
from rayalign.data.parquet import read_table
from rayalign.evaluation.evaluate import heldout_samples
from rayalign.evaluation.metrics import mean
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import actor_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stages import prompts, sft


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    table = heldout_samples(read_table(ctx.path(prompts.STAGE)), sft.policy(ctx), ctx.cfg, ctx.progress)
    pq.write_table(table, out / "evaluate_sft.parquet")
    return {"rows": table.num_rows, "sft_reward": mean(table["reward"].to_pylist()),
            "sft_response_tokens": mean(table["num_tokens"].to_pylist())}


def track(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "sft_evaluation", folder, context="evaluation")


STAGE = Stage(
    name="evaluate_sft",
    run=run,
    active=lambda cfg: cfg.evaluate.enabled,
    reads=(prompts.STAGE, sft.STAGE),
    # The settings evaluate samples with: both sides of the comparison draw alike.
    settings=lambda cfg: [settings(cfg.evaluate), settings(cfg.sample), settings(cfg.model)],
    needs=lambda cfg: actor_bundles(cfg.sample.resources),
    needs_set_by="sample.resources.min_actors / num_gpus / num_cpus (evaluation samples with them)",
    schema=schemas.HELDOUT,
    track=track,
)
