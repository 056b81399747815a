"""label_sample: the (SFT) policy samples label.k responses for every prompt to be labelled, both
splits, from its own random stream."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import ray

from rayalign.config import settings
from rayalign.data import schemas
from rayalign.data.errors import data_errors
from rayalign.data.parquet import read_table
from rayalign.data.prompts import first_prompts
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import actor_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import sample_prompts, tokenizer
from rayalign.pipeline.stages import prompts


def label_prompts(ctx: RunContext) -> pa.Table:
    """The prompts whose samples are labelled: the run's, or as many of data.prompts as the
    label.max_*_prompts caps allow (same train/held-out split)."""
    cfg = ctx.cfg.label
    caps = {k: v for k, v in {"max_train_prompts": cfg.max_train_prompts,
                              "max_heldout_prompts": cfg.max_heldout_prompts}.items() if v is not None}
    if not caps:
        return read_table(ctx.path(prompts.STAGE))
    capped, tok = ctx.cfg.data.model_copy(update=caps), tokenizer(ctx, ctx.base_policy)
    with data_errors():
        tables = first_prompts(capped, tok, ctx.cfg.sample.max_model_len)
        return pa.concat_tables([schemas.PROMPTS.empty_table(), *tables])


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    table = label_prompts(ctx).select(["prompt_id", "prompt"])
    return sample_prompts(ctx, ray.data.from_arrow(table), out, ctx.cfg.label.k, ctx.cfg.label.seed, "label_sample")


def labels_from_samples(cfg) -> bool:
    """Whether the reward model learns from synthetic labels of the policy's samples (not a file)."""
    return cfg.reward_model.enabled and cfg.reward_model.data == "label"


STAGE = Stage(
    name="label_sample",
    resumable=True,
    run=run,
    reads=(prompts.STAGE,),
    starts_from_policy=True,
    settings=lambda cfg: [settings(cfg.sample), settings(cfg.label), cfg.model.policy, cfg.model.dtype],
    active=labels_from_samples,
    needs=lambda cfg: actor_bundles(cfg.sample.resources),  # vLLM with the sample settings
    needs_set_by="sample.resources.min_actors / num_gpus / num_cpus",
    schema=schemas.SAMPLE,
)
