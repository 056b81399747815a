"""reward_model: a Bradley-Terry score head on the (SFT) policy, trained on labelled pairs (or a
preference file) and checked on held-out pairs; the score stage's default reward model."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from rayalign.actors.rewards import RewardModelScorer
from rayalign.actors.runtime import map_with_actors
from rayalign.annotator import gold_agreement
from rayalign.config import settings
from rayalign.data.parquet import read_table
from rayalign.data.preferences import read_preferences
from rayalign.data.ray_io import to_table
from rayalign.evaluation.metrics import mean
from rayalign.models import resolve_model
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import train_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import fit_node, tokenizer, training_run
from rayalign.pipeline.stages import label
from rayalign.training.reward_model import distinct_index, prompt_grouped_order
from rayalign.training.trainer import shuffled, throughput


def trained(ctx: RunContext) -> str:
    """The checkpoint this stage trains (or trained)."""
    return str(ctx.path(STAGE) / "model")


def scoring_model(ctx: RunContext) -> str | None:
    """The reward model that scores responses (score.reward: reward_model): score.reward_model_path
    or the one this stage trains; None for a rule reward."""
    if ctx.cfg.score.reward != "reward_model":
        return None
    return ctx.cfg.score.reward_model_path or trained(ctx)


def backbone(ctx: RunContext) -> str:
    """The reward model's starting checkpoint: reward_model.base_model or the (SFT) policy."""
    base = ctx.cfg.reward_model.base_model
    return resolve_model(base, "reward_model.base_model") if base else ctx.latest_policy()


def _preferences(ctx: RunContext) -> pa.Table:
    cfg = ctx.cfg.reward_model
    if ctx.runs(label.STAGE):
        return read_table(ctx.path(label.STAGE))
    return read_preferences(cfg.data, ctx.cfg.data, cfg.heldout_fraction, tokenizer(ctx, ctx.latest_policy()))


def score_pairs(pairs: pa.Table, model_path: str, ctx: RunContext) -> tuple[list[float], list[float]]:
    """Reward-model scores of every pair's chosen and rejected response (each distinct one scored once),
    in an actor pool."""
    n = pairs.num_rows
    prompts = pairs["prompt"].to_pylist() * 2
    distinct, index = distinct_index(list(zip(prompts, pairs["chosen"].to_pylist() + pairs["rejected"].to_pylist())))
    rows = pa.table({"row": list(range(len(distinct))), "prompt": [p for p, _ in distinct],
                     "response": [r for _, r in distinct]})
    ds = ctx.progress.counted(map_with_actors(
        ray.data.from_arrow(rows), RewardModelScorer,
        {"model_path": model_path, "trust_remote_code": ctx.cfg.model.trust_remote_code}, ctx.cfg.score.resources),
        rows.num_rows, "held-out responses")
    scored = to_table(ds).sort_by("row")["reward"].to_pylist()
    scores = [scored[i] for i in index]
    return scores[:n], scores[n:]


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    from rayalign.training.reward_model import train_loop

    cfg = ctx.cfg.reward_model
    pairs = _preferences(ctx)
    train = pairs.filter(pc.equal(pairs["split"], "train"))
    heldout = pairs.filter(pc.equal(pairs["split"], "heldout"))
    start = time.perf_counter()
    train = train.select(["prompt", "chosen", "rejected"])
    if cfg.group_by_prompt:
        data = ray.data.from_arrow(train.take(prompt_grouped_order(train["prompt"].to_pylist(), cfg.seed)))
    else:
        data = shuffled(train, cfg.seed)
    history = fit_node(ctx, train_loop, {"model_path": backbone(ctx)}, cfg, data, out)
    seconds = time.perf_counter() - start
    chosen, rejected = score_pairs(heldout, str(out / "model"), ctx)
    heldout = heldout.append_column("chosen_score", pa.array(chosen, pa.float64())).append_column(
        "rejected_score", pa.array(rejected, pa.float64()))
    pq.write_table(heldout, out / "heldout_scores.parquet")
    metrics = {"rows": train.num_rows, "seconds": seconds, "train_pairs": train.num_rows,
               "heldout_pairs": heldout.num_rows, "final_loss": history[-1]["loss"],
               "final_accuracy": history[-1]["accuracy"],
               # Agreement with the labels the model was trained to predict (noisy, for synthetic labels).
               "heldout_accuracy": mean([float(c > r) for c, r in zip(chosen, rejected)]),
               **throughput(history, seconds)}
    if "chosen_gold" in heldout.column_names:
        metrics["rm_gold_agreement"] = gold_agreement(chosen, rejected, heldout["chosen_gold"].to_pylist(),
                                                      heldout["rejected_gold"].to_pylist())
    return metrics


def track(ctx: RunContext, folder: Path) -> None:
    params = ctx.cfg.reward_model.model_dump(mode="json")
    if ctx.runs(label.STAGE):
        training_run(ctx, folder, params, {"backbone": backbone(ctx)}, ctx.path(label.STAGE), "preferences")
    else:
        training_run(ctx, folder, params, {"backbone": backbone(ctx), "data": ctx.cfg.reward_model.data}, None,
                     "preferences")
    ctx.tracker.set_tag("rayalign.reward_model", str(folder / "model"))


def summary(folder: Path, metrics: dict) -> dict:
    return {"reward_model": str(folder / "model"), "rm_heldout_accuracy": metrics["heldout_accuracy"],
            **({"rm_gold_agreement": metrics["rm_gold_agreement"]} if "rm_gold_agreement" in metrics else {})}


STAGE = Stage(
    name="reward_model",
    run=run,
    reads=(label.STAGE,),
    starts_from_policy=True,  # the default backbone
    settings=lambda cfg: [settings(cfg.reward_model), cfg.model.policy],
    active=lambda cfg: cfg.reward_model.enabled,
    # Trains first; scoring its held-out pairs afterwards reuses score.resources.
    needs=lambda cfg: train_bundles(cfg.reward_model.resources),
    needs_set_by="reward_model.resources.num_workers / use_gpu / cpus_per_worker",
    track=track,
    summary=summary,
)
