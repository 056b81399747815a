"""prompts: the prompt set, rendered with the instruction and chat template, split into training
and held-out prompts."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayalign.config import settings
from rayalign.data import schemas
from rayalign.data.parquet import read_table
from rayalign.data.prompts import build_prompts_table
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import tokenizer


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    table = build_prompts_table(ctx.cfg.data, tokenizer(ctx, ctx.base_policy))
    pq.write_table(table, out / "prompts.parquet")
    train = pc.sum(pc.equal(table["split"], "train")).as_py()
    return {"rows": table.num_rows, "train_prompts": train, "heldout_prompts": table.num_rows - train}


def track(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "prompts", folder, context="prompts")


STAGE = Stage(
    name="prompts",
    run=run,
    settings=lambda cfg: [settings(cfg.data), cfg.model.policy],
    schema=schemas.PROMPTS,
    track=track,
)
