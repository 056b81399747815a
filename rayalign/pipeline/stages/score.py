"""score: a reward for every sampled response, from VADER or a reward model, in actors."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from rayalign.actors.rewards import scorer_for
from rayalign.actors.runtime import map_with_actors
from rayalign.config import settings
from rayalign.data import schemas
from rayalign.data.parquet import parquet_rows, read_table
from rayalign.data.ray_io import read_stage
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import actor_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import remaining, timed_write
from rayalign.pipeline.stages import reference, reward_model


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    scorer, kwargs = scorer_for(ctx.cfg.score, reward_model.scoring_model(ctx), ctx.cfg.model.trust_remote_code)
    responses = ctx.path(reference.STAGE)
    todo, resumed = remaining(read_stage(responses), out, ("prompt_id", "sample_idx"))
    ds = ctx.progress.counted(map_with_actors(todo, scorer, kwargs, ctx.cfg.score.resources, shards=True),
                              lambda: parquet_rows(responses) - resumed, "responses")
    rows, seconds = timed_write(ds, out, shards=True)
    rewards = read_table(out)["reward"]
    return {"rows": rows, "seconds": seconds, "resumed_rows": resumed, "reward_mean": pc.mean(rewards).as_py(),
            "reward_std": pc.stddev(rewards).as_py(), "reward_min": pc.min(rewards).as_py(),
            "reward_max": pc.max(rewards).as_py()}


STAGE = Stage(
    name="score",
    run=run,
    active=lambda cfg: not cfg.ppo.enabled,  # the ppo stage samples, scores and trains itself
    reads=(reference.STAGE, reward_model.STAGE),
    per_round=True,
    resumable=True,
    settings=lambda cfg: [settings(cfg.score)],
    needs=lambda cfg: actor_bundles(cfg.score.resources),
    needs_set_by="score.resources.min_actors / num_gpus / num_cpus",
    schema=schemas.SCORE,
)
