"""prompts: the prompt set, read by Ray Data from any source and format of docs/data.md, rendered
with the instruction and chat template, split into training and held-out prompts."""

from __future__ import annotations

from pathlib import Path

from rayalign.config import settings
from rayalign.data import schemas
from rayalign.data.parquet import read_table
from rayalign.data.prompts import write_prompts
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import tokenizer


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    counts = write_prompts(ctx.cfg.data, tokenizer(ctx, ctx.base_policy), out, ctx.cfg.sample.max_model_len)
    return {"rows": sum(counts.values()), "train_prompts": counts["train"], "heldout_prompts": counts["heldout"]}


def track(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "prompts", folder, context="prompts")


STAGE = Stage(
    name="prompts",
    run=run,
    # Not sample.max_model_len, which only adds a check: a valid prompt set's cache key stays as it was.
    settings=lambda cfg: [settings(cfg.data), cfg.model.policy],
    schema=schemas.PROMPTS,
    track=track,
)
