"""The stage runners: each reads its inputs from the run directory and writes one dataset.

Each runner gets the run context and an empty output directory and returns its metrics;
the pipeline handles caching, manifests and tracking around it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from rayalign.context import RunContext, StageError
from rayalign.data import schemas
from rayalign.data.prompts import build_prompts_table, split_prompts
from rayalign.data.ray_io import map_with_actors, read_stage, write
from rayalign.data.store import parquet_rows, read_table
from rayalign.evaluation.evaluate import evaluate
from rayalign.training.loop import read_history
from rayalign.training.trainer import fit, shuffled, throughput
from rayalign.plots import reward_histogram, selection_histograms
from rayalign.reference import SequenceLogprobs
from rayalign.rewards import RewardModelScorer, scorer_for
from rayalign.sampling.vllm_sampler import VLLMSampler, sampler_kwargs
from rayalign.selection.pairs import drop_pairs, explode_pairs, selection_table


def timed_write(ds: ray.data.Dataset, out: Path) -> tuple[int, float]:
    """Write `ds` into `out`: (rows, seconds)."""
    start = time.perf_counter()
    rows = write(ds, out)
    return rows, time.perf_counter() - start


def _token_metrics(table: pa.Table, seconds: float) -> dict[str, float]:
    tokens = pc.sum(table["num_tokens"]).as_py() or 0
    return {"rows": table.num_rows, "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9),
            "mean_response_tokens": tokens / max(table.num_rows, 1)}


def run_prompts(ctx: RunContext, out: Path) -> dict[str, float]:
    from transformers import AutoTokenizer

    table = build_prompts_table(ctx.cfg.data, AutoTokenizer.from_pretrained(ctx.base_policy))
    pq.write_table(table, out / "prompts.parquet")
    train = pc.sum(pc.equal(table["split"], "train")).as_py()
    return {"rows": table.num_rows, "train_prompts": train, "heldout_prompts": table.num_rows - train}


def sample_prompts(ctx: RunContext, prompts: pa.Table, out: Path, n: int, seed: int, stream: str) -> dict[str, float]:
    """Sample n responses per prompt row from the policy with vLLM actors into `out`; its metrics.
    `stream` keeps the draws apart from other stages' with the same seed."""
    cfg = ctx.cfg
    kwargs = sampler_kwargs(ctx.policy_path, cfg.sample, cfg.model.dtype, n=n, seed=seed, stream=stream,
                            temperature=cfg.sample.temperature, top_p=cfg.sample.top_p)
    ds = map_with_actors(ray.data.from_arrow(prompts), VLLMSampler, kwargs, cfg.sample.resources)
    rows, seconds = timed_write(ds, out)
    table = read_table(out)
    metrics = _token_metrics(table, seconds)
    metrics["truncated_fraction"] = pc.sum(pc.equal(table["finish_reason"], "length")).as_py() / max(rows, 1)
    return metrics


def run_sample(ctx: RunContext, out: Path) -> dict[str, float]:
    train = split_prompts(read_table(ctx.store.path("prompts")), "train")
    return sample_prompts(ctx, train, out, ctx.cfg.sample.k, ctx.cfg.sample.seed, "sample")


def _reuse_sampler_logprob(batch):
    return batch.append_column("ref_logprob", batch["sampler_logprob"])


def _no_reference(batch):
    return batch.append_column(pa.field("ref_logprob", pa.float64()), pa.nulls(batch.num_rows, pa.float64()))


def run_reference(ctx: RunContext, out: Path) -> dict[str, float]:
    cfg = ctx.cfg
    ds = read_stage(ctx.store.path("sample"))
    if not cfg.needs_reference():  # SLiC without the budget regulariser: no reference model at all
        ds = ds.map_batches(_no_reference, batch_format="pyarrow")
    elif cfg.reference.reuse_sampler_logprobs:
        ds = ds.map_batches(_reuse_sampler_logprob, batch_format="pyarrow")
    else:
        ds = map_with_actors(ds, SequenceLogprobs, {"models": {"ref_logprob": ctx.reference_path},
                                                    "dtype": cfg.model.dtype}, cfg.reference.resources)
    _, seconds = timed_write(ds, out)
    return _token_metrics(read_table(out), seconds)


def run_score(ctx: RunContext, out: Path) -> dict[str, float]:
    scorer, kwargs = scorer_for(ctx.cfg.score, ctx.reward_model_path)
    ds = map_with_actors(read_stage(ctx.store.path("reference")), scorer, kwargs, ctx.cfg.score.resources)
    rows, seconds = timed_write(ds, out)
    rewards = read_table(out)["reward"]
    mean = pc.mean(rewards).as_py()
    return {"rows": rows, "seconds": seconds, "reward_mean": mean, "reward_std": pc.stddev(rewards).as_py(),
            "reward_min": pc.min(rewards).as_py(), "reward_max": pc.max(rewards).as_py()}


def run_select(ctx: RunContext, out: Path) -> dict[str, float]:
    cfg = ctx.cfg.select
    scored = read_stage(ctx.store.path("score"))
    if cfg.strategy == "pairwise_ranking" and cfg.judge == "reward_model":
        scored = map_with_actors(scored, RewardModelScorer, {
            "model_path": cfg.judge_model_path or ctx.trained_reward_model, "column": "judge_reward"},
            ctx.cfg.score.resources)
    start = time.perf_counter()
    selection = scored.groupby("prompt_id").map_groups(selection_table, fn_kwargs={"cfg": cfg},
                                                       batch_format="pyarrow").materialize()
    rows = write(selection.map_batches(explode_pairs, batch_format="pyarrow"), out)
    seconds = time.perf_counter() - start
    (out / "stats").mkdir()
    write(selection.map_batches(drop_pairs, batch_format="pyarrow"), out / "stats")
    if rows == 0:
        gap = f"a reward gap above τ·logit(η) = {cfg.tau * math.log(cfg.eta / (1 - cfg.eta)):.3f}"
        raise StageError(
            "select produced no pairs: no prompt had two samples with "
            + (gap if cfg.strategy == "rs_dpo" else "different rewards")
            + "; lower select.tau or select.eta, raise sample.k or sample.temperature, widen the "
            "perplexity range, or use select.strategy=best_vs_worst")
    pairs, stats = read_table(out), read_table(out / "stats")
    gaps = pc.subtract(pairs["chosen_reward"], pairs["rejected_reward"])
    selection_histograms(stats["pairs"].to_pylist(), gaps.to_pylist(), out / "selection.png", cfg.strategy)
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


def run_train(ctx: RunContext, out: Path) -> dict[str, float]:
    from rayalign.training.preference import train_loop

    cfg = ctx.cfg.train
    pairs = shuffled(read_table(ctx.store.path("select")), cfg.seed)
    start = time.perf_counter()
    history = fit(train_loop, {"model_path": ctx.policy_path, "use_reference": ctx.cfg.needs_reference()},
                  cfg, pairs, ctx.train_name("train"), ctx.run_dir, out)
    seconds, last = time.perf_counter() - start, history[-1]
    return {"rows": parquet_rows(ctx.store.path("select")), "seconds": seconds, "final_loss": last["loss"],
            "final_reward_accuracy": last["reward_accuracy"], "final_reward_margin": last["reward_margin"],
            **throughput(history, seconds)}


def run_evaluate(ctx: RunContext, out: Path) -> dict[str, float]:
    prompts = read_table(ctx.store.path("prompts"))
    aligned = str(ctx.store.path("train") / "model")
    table, metrics = evaluate(prompts, ctx.policy_path, aligned, ctx.reference_path, ctx.cfg, out)
    reward_histogram(table["sft_reward"].to_pylist(), table["aligned_reward"].to_pylist(),
                     out / "reward_distribution.png", ctx.cfg.evaluate.gold_reward)
    return {"rows": table.num_rows, **metrics}


# Tracking of a committed stage directory: run after the stage, and again for a cached
# stage when a new MLflow run starts, so every run holds its full lineage.
def track_prompts(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "prompts", folder, context="prompts")


def track_select(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "pairs", folder, context="training")
    ctx.tracker.log_artifact(folder, "datasets/pairs")
    ctx.tracker.log_artifact(folder / "selection.png", "selection")


def track_train(ctx: RunContext, folder: Path) -> None:
    log_history(ctx, "train", folder)
    ctx.tracker.set_tag("rayalign.aligned_model", str(folder / "model"))
    consumed = {"policy": ctx.policy_path}
    if ctx.cfg.score.reward == "reward_model":
        consumed["reward_model"] = ctx.reward_model_path
    training_run(ctx, "train", folder, consumed, "select", "pairs")


def log_history(ctx: RunContext, stage: str, folder: Path) -> None:
    """A training stage's per-step metrics, as '<stage>/<metric>' series in the active MLflow run."""
    for row in read_history(folder):
        ctx.tracker.log_metrics({k: v for k, v in row.items() if k not in ("step", "epoch")}, f"{stage}/",
                                row["step"])


def training_run(ctx: RunContext, stage: str, folder: Path, consumed: dict[str, str], data_stage: str | None,
                 data_name: str) -> None:
    """A nested MLflow run for a training stage: its settings, step metrics, the dataset and
    checkpoints it consumed and the checkpoint it produced, so chained runs link by lineage.
    `data_stage` is the stage whose dataset it trained on (None: a file named in `consumed`)."""
    if data_stage is not None:
        consumed = {**consumed, "data": str(ctx.store.path(data_stage))}
    with ctx.tracker.child_run(stage, params=getattr(ctx.cfg, stage).model_dump(mode="json"), consumed=consumed,
                               produced={"model": str(folder / "model")}):
        if data_stage is not None:
            ctx.tracker.log_dataset(read_table(ctx.store.path(data_stage)), data_name, ctx.store.path(data_stage),
                                    context="training")
        log_history(ctx, stage, folder)
        ctx.tracker.log_metrics(ctx.store.manifest(stage)["metrics"], f"{stage}/")


def track_evaluate(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "evaluation", folder, context="evaluation")
    ctx.tracker.log_artifact(folder / "evaluate.parquet", "evaluation")
    ctx.tracker.log_artifact(folder / "reward_distribution.png", "evaluation")


TRACKERS = {"prompts": track_prompts, "select": track_select, "train": track_train, "evaluate": track_evaluate}

RUNNERS = {
    "prompts": run_prompts,
    "sample": run_sample,
    "reference": run_reference,
    "score": run_score,
    "select": run_select,
    "train": run_train,
    "evaluate": run_evaluate,
}

# Every dataset's required columns, for schema checks in tests and on resume.
STAGE_SCHEMAS = {"prompts": schemas.PROMPTS, "sample": schemas.SAMPLE, "reference": schemas.REFERENCE,
                 "score": schemas.SCORE, "select": schemas.PAIRS, "evaluate": schemas.EVALUATE}
