"""select: preference pairs from each prompt's scored samples by the configured rule (RS-DPO,
best-vs-worst, RSO, pairwise ranking), after the optional perplexity filter."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pyarrow.compute as pc

from rayalign.actors.rewards import RewardModelScorer
from rayalign.actors.runtime import map_with_actors
from rayalign.config import RunConfig, settings
from rayalign.data import schemas
from rayalign.data.parquet import parquet_rows, read_table
from rayalign.data.ray_io import grouped, read_stage, write
from rayalign.pipeline.context import RunContext, StageError
from rayalign.pipeline.resources import actor_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stages import reward_model, score
from rayalign.plots import save, selection_histograms
from rayalign.selection.pairs import drop_pairs, explode_pairs, selection_table

PLOT = "selection.png"


def judged(cfg: RunConfig) -> bool:
    """Whether a reward-model judge orders the pairs (pairwise ranking with select.judge=reward_model)."""
    return cfg.select.strategy == "pairwise_ranking" and cfg.select.judge == "reward_model"


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    cfg = ctx.cfg.select
    scored = read_stage(ctx.path(score.STAGE))
    if judged(ctx.cfg):
        scored = ctx.progress.counted(map_with_actors(scored, RewardModelScorer, {
            "model_path": cfg.judge_model_path or reward_model.trained(ctx), "column": "judge_reward",
            "trust_remote_code": ctx.cfg.model.trust_remote_code},
            ctx.cfg.score.resources), lambda: parquet_rows(ctx.path(score.STAGE)), "responses")
    start = time.perf_counter()
    selection = grouped(scored, "prompt_id").map_groups(selection_table, fn_kwargs={"cfg": cfg},
                                                        batch_format="pyarrow").materialize()
    rows = write(selection.map_batches(explode_pairs, batch_format="pyarrow"), out)
    seconds = time.perf_counter() - start
    (out / "stats").mkdir()
    write(selection.map_batches(drop_pairs, batch_format="pyarrow"), out / "stats")
    if rows == 0:
        gap = f"a reward gap above τ·logit(η) = {cfg.tau * math.log(cfg.eta / (1 - cfg.eta)):.3f}"
        raise StageError(
            "select produced no pairs: no prompt had two samples with "
            + {"rs_dpo": gap, "random_pair": "different responses"}.get(cfg.strategy, "different rewards")
            + "; lower select.tau or select.eta, raise sample.k or sample.temperature, widen the "
            "perplexity range, or use select.strategy=best_vs_worst")
    pairs, stats = read_table(out), read_table(out / "stats")
    gaps = pc.subtract(pairs["chosen_reward"], pairs["rejected_reward"])
    save(figure(ctx, out), out / PLOT)
    candidates, kept = pc.sum(stats["candidates"]).as_py(), pc.sum(stats["kept"]).as_py()
    metrics = {"rows": rows, "seconds": seconds, "pairs": rows, "prompts": stats.num_rows,
               "prompts_with_pairs": pc.sum(pc.greater(stats["pairs"], 0)).as_py(),
               "pairs_per_prompt": rows / stats.num_rows, "candidates": candidates,
               "kept_fraction": kept / candidates, "mean_reward_gap": pc.mean(gaps).as_py()}
    for q, v in zip((10, 50, 90), pc.quantile(gaps, q=[0.1, 0.5, 0.9]).to_pylist()):
        metrics[f"reward_gap_p{q}"] = v
    if cfg.strategy == "rso":
        metrics["rso_acceptance_rate"] = pc.sum(stats["accepted"]).as_py() / max(kept, 1)
    if cfg.strategy == "pairwise_ranking":
        metrics["comparisons_per_prompt"] = pc.mean(stats["comparisons"]).as_py()
    return metrics


def figure(ctx: RunContext, folder: Path):
    """Pairs kept per prompt and their reward gaps."""
    pairs, stats = read_table(folder), read_table(folder / "stats")
    gaps = pc.subtract(pairs["chosen_reward"], pairs["rejected_reward"])
    return selection_histograms(stats["pairs"].to_pylist(), gaps.to_pylist(), ctx.cfg.select.strategy)


def track(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "pairs", folder, context="training")
    ctx.tracker.log_artifact(folder, "datasets/pairs")
    ctx.tracker.log_figure(figure(ctx, folder), f"selection/{PLOT}")


STAGE = Stage(
    name="select",
    run=run,
    active=lambda cfg: not cfg.ppo.enabled,  # the ppo stage samples, scores and trains itself
    reads=(score.STAGE, reward_model.STAGE),
    per_round=True,
    settings=lambda cfg: [settings(cfg.select)],
    # Pairwise ranking with a reward-model judge scores candidates in a pool with the score settings.
    needs=lambda cfg: actor_bundles(cfg.score.resources) if judged(cfg) else [],
    needs_set_by="score.resources.min_actors / num_gpus / num_cpus (the reward-model judge uses them)",
    schema=schemas.PAIRS,
    track=track,
    summary=lambda folder, metrics: {"pairs": int(metrics["pairs"])},
)
