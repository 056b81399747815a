"""sample: the policy samples sample.k responses per training prompt with vLLM actors."""

from __future__ import annotations

from pathlib import Path

from ray.data.expressions import col

from rayalign.config import settings
from rayalign.data import schemas
from rayalign.data.ray_io import read_stage
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import actor_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import sample_prompts
from rayalign.pipeline.stages import prompts


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    # Streamed from the prompts stage's files: a large prompt set never sits in the driver.
    train = (read_stage(ctx.path(prompts.STAGE)).filter(expr=col("split") == "train")
             .select_columns(["prompt_id", "prompt"]))
    return sample_prompts(ctx, train, out, ctx.cfg.sample.k, ctx.cfg.sample.seed, ctx.stream("sample"))


STAGE = Stage(
    name="sample",
    run=run,
    active=lambda cfg: not cfg.ppo.enabled,  # the ppo stage samples, scores and trains itself
    reads=(prompts.STAGE,),
    starts_from_policy=True,
    per_round=True,
    resumable=True,
    settings=lambda cfg: [settings(cfg.sample), cfg.model.policy, cfg.model.dtype],
    needs=lambda cfg: actor_bundles(cfg.sample.resources),
    needs_set_by="sample.resources.min_actors / num_gpus / num_cpus",
    schema=schemas.SAMPLE,
)
