"""evaluate: the aligned policy on held-out prompts against the SFT policy's responses there
(evaluate_sft), judged by the gold reward (mean reward, win rate), with the aligned policy's KL to
the reference (rayalign.evaluation)."""

from __future__ import annotations

from pathlib import Path

from rayalign.config import settings
from rayalign.data import schemas
from rayalign.data.parquet import read_table
from rayalign.evaluation.evaluate import evaluate
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import actor_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import ALIGNED_MODEL_ID_TAG
from rayalign.pipeline.stages import evaluate_sft, prompts, reference
from rayalign.plots import reward_histogram, save

PLOT = "reward_distribution.png"


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    table, metrics = evaluate(read_table(ctx.path(prompts.STAGE)), read_table(ctx.path(evaluate_sft.STAGE)),
                              ctx.latest_policy(), reference.initial_reference(ctx), ctx.cfg, out, ctx.progress)
    save(figure(ctx, out), out / PLOT)
    return {"rows": table.num_rows, **metrics}


def figure(ctx: RunContext, folder: Path):
    """The held-out reward distributions of the SFT and the aligned policy."""
    table = read_table(folder)
    return reward_histogram(table["sft_reward"].to_pylist(), table["aligned_reward"].to_pylist(),
                            ctx.cfg.evaluate.gold_reward)


def track(ctx: RunContext, folder: Path) -> None:
    # The evaluation consumed the aligned model: its logged model links to the data it was evaluated on.
    ctx.tracker.log_dataset(read_table(folder), "evaluation", folder, context="evaluation",
                            model_id=ctx.tracker.tag(ALIGNED_MODEL_ID_TAG))
    ctx.tracker.log_artifact(folder / "evaluate.parquet", "evaluation")
    ctx.tracker.log_figure(figure(ctx, folder), f"evaluation/{PLOT}")


def summary(folder: Path, metrics: dict) -> dict:
    return {"sft_reward": metrics["sft_reward"], "aligned_reward": metrics["aligned_reward"],
            "win_rate": metrics["win_rate"],
            "kl": metrics.get("kl"),  # None when evaluation sampled at a temperature or top_p other than 1
            "heldout_prompts": int(metrics["heldout_prompts"])}


STAGE = Stage(
    name="evaluate",
    run=run,
    active=lambda cfg: cfg.evaluate.enabled,
    reads=(prompts.STAGE, evaluate_sft.STAGE),
    starts_from_policy=True,  # the aligned policy
    per_round=True,  # the same held-out prompts and seeds after every round
    settings=lambda cfg: [settings(cfg.evaluate), settings(cfg.sample), settings(cfg.model)],
    # Evaluation chains three actor pools (vLLM sampler with the sample settings, the log-prob
    # forward pass, the gold reward). Ray Data provisions pools asynchronously and frees each when
    # its work is done, so they need not fit at once (the 2-CPU demo runs three 1-CPU pools):
    # what evaluation needs to start is the sampler pool.
    needs=lambda cfg: actor_bundles(cfg.sample.resources),
    needs_set_by="sample.resources.min_actors / num_gpus / num_cpus (evaluation samples with them)",
    schema=schemas.EVALUATE,
    track=track,
    summary=summary,
)
