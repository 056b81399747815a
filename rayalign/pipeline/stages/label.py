"""label: a gold reward labels random pairs of the label samples under Bradley-Terry noise, the
synthetic annotator of the offline setup (rayalign.annotator)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from rayalign.actors.rewards import GOLD_REWARDS
from rayalign.actors.runtime import map_with_actors
from rayalign.annotator import LABELS, label_group
from rayalign.config import settings
from rayalign.data.parquet import parquet_rows, read_table
from rayalign.data.ray_io import grouped, read_stage
from rayalign.pipeline.context import RunContext, StageError
from rayalign.pipeline.resources import actor_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import timed_write
from rayalign.pipeline.stages import label_sample


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    cfg = ctx.cfg.label
    prompts = label_sample.label_prompts(ctx)
    splits = dict(zip(prompts["prompt_id"].to_pylist(), prompts["split"].to_pylist()))
    responses = ctx.path(label_sample.STAGE)
    scored = map_with_actors(read_stage(responses), GOLD_REWARDS[cfg.gold_reward], {}, ctx.cfg.score.resources)
    scored = ctx.progress.counted(scored, lambda: parquet_rows(responses), "responses")
    ds = grouped(scored, "prompt_id").map_groups(label_group, fn_kwargs={"cfg": cfg, "splits": splits},
                                                 batch_format="pyarrow")
    rows, seconds = timed_write(ds, out)
    if rows == 0:
        raise StageError("label produced no pairs: every prompt's samples were identical; raise label.k or "
                         "sample.temperature")
    table = read_table(out)
    gaps = pc.subtract(table["chosen_gold"], table["rejected_gold"])
    train = pc.sum(pc.equal(table["split"], "train")).as_py()
    return {"rows": rows, "seconds": seconds, "train_pairs": train, "heldout_pairs": rows - train,
            # Share of labels that contradict the gold reward: the Bradley-Terry noise actually drawn.
            "flipped_fraction": pc.mean(pc.less(gaps, 0).cast(pa.float64())).as_py(),
            "mean_abs_gold_gap": pc.mean(pc.abs(gaps)).as_py()}


def track(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "labelled_pairs", folder, context="reward_model")


STAGE = Stage(
    name="label",
    run=run,
    reads=(label_sample.STAGE,),
    settings=lambda cfg: [settings(cfg.label)],
    active=label_sample.labels_from_samples,
    needs=lambda cfg: actor_bundles(cfg.score.resources),  # gold-reward actors
    needs_set_by="score.resources.min_actors / num_gpus / num_cpus",
    schema=LABELS,
    track=track,
)
