"""train: preference training of the policy on the selected pairs (DPO, IPO, SLiC, RSO
hinge-norm) in Ray Train workers running DeepSpeed."""

from __future__ import annotations

import time
from pathlib import Path

from rayalign.config import settings
from rayalign.data.parquet import parquet_rows, read_table
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import train_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import fit_node, training_run
from rayalign.pipeline.stages import reward_model, select
from rayalign.training.trainer import shuffled, throughput


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    from rayalign.training.preference import train_loop

    cfg = ctx.cfg.train
    pairs = shuffled(read_table(ctx.path(select.STAGE)), cfg.seed)
    start = time.perf_counter()
    history = fit_node(ctx, train_loop, {"model_path": ctx.latest_policy(), "use_reference": ctx.cfg.needs_reference()},
                       cfg, pairs, out)
    seconds, last = time.perf_counter() - start, history[-1]
    return {"rows": parquet_rows(ctx.path(select.STAGE)), "seconds": seconds, "final_loss": last["loss"],
            "final_reward_accuracy": last["rewards/accuracies"], "final_reward_margin": last["rewards/margins"],
            **throughput(history, seconds)}


def track(ctx: RunContext, folder: Path) -> None:
    consumed = {"policy": ctx.latest_policy()}
    if reward_model.scoring_model(ctx):
        consumed["reward_model"] = reward_model.scoring_model(ctx)
    training_run(ctx, folder, ctx.cfg.train.model_dump(mode="json"), consumed, ctx.path(select.STAGE), "pairs",
                 aligned=True)


STAGE = Stage(
    name="train",
    run=run,
    active=lambda cfg: not cfg.ppo.enabled,  # the ppo stage samples, scores and trains itself
    reads=(select.STAGE,),
    starts_from_policy=True,
    per_round=True,
    settings=lambda cfg: [settings(cfg.train), cfg.model.policy],
    needs=lambda cfg: train_bundles(cfg.train.resources),
    needs_set_by="train.resources.num_workers / use_gpu / cpus_per_worker",
    track=track,
    summary=lambda folder, metrics: {"aligned_model": str(folder / "model")},
    produces_policy=True,
)
