"""The stage runners: each reads its inputs from the run directory and writes one dataset.

Each runner gets the run context and an empty output directory and returns its metrics;
the pipeline handles caching, manifests and tracking around it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from rayalign.config import RunConfig
from rayalign.data import schemas
from rayalign.data.prompts import build_prompts_table, split_prompts
from rayalign.data.ray_io import map_with_actors, read_stage, write
from rayalign.data.store import StageStore, parquet_rows, read_table
from rayalign.evaluation.evaluate import evaluate
from rayalign.models import cache_dir
from rayalign.plots import reward_histogram, selection_histograms
from rayalign.reference import ReferenceLogprobs
from rayalign.rewards import scorer_for
from rayalign.sampling.vllm_sampler import VLLMSampler, sampler_kwargs
from rayalign.selection.pairs import pairs_table, stats_table
from rayalign.tracking import Tracker


class StageError(RuntimeError):
    """A stage that cannot produce its output, with the reason and the fix."""


@dataclass
class RunContext:
    cfg: RunConfig
    run_dir: Path
    store: StageStore
    policy_path: str
    reference_path: str
    tracker: Tracker


def _timed_write(ds: ray.data.Dataset, out: Path) -> tuple[int, float]:
    start = time.perf_counter()
    rows = write(ds, out)
    return rows, time.perf_counter() - start


def _token_metrics(table: pa.Table, seconds: float) -> dict[str, float]:
    tokens = pc.sum(table["num_tokens"]).as_py() or 0
    return {"rows": table.num_rows, "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9),
            "mean_response_tokens": tokens / max(table.num_rows, 1)}


def run_prompts(ctx: RunContext, out: Path) -> dict[str, float]:
    from transformers import AutoTokenizer

    table = build_prompts_table(ctx.cfg.data, AutoTokenizer.from_pretrained(ctx.policy_path))
    pq.write_table(table, out / "prompts.parquet")
    train = pc.sum(pc.equal(table["split"], "train")).as_py()
    return {"rows": table.num_rows, "train_prompts": train, "heldout_prompts": table.num_rows - train}


def run_sample(ctx: RunContext, out: Path) -> dict[str, float]:
    cfg = ctx.cfg
    train = split_prompts(read_table(ctx.store.path("prompts")), "train")
    ds = map_with_actors(ray.data.from_arrow(train), VLLMSampler,
                         sampler_kwargs(ctx.policy_path, cfg.sample, cfg.model.dtype, n=cfg.sample.k,
                                        seed=cfg.sample.seed), cfg.sample.resources)
    rows, seconds = _timed_write(ds, out)
    table = read_table(out)
    metrics = _token_metrics(table, seconds)
    metrics["truncated_fraction"] = pc.sum(pc.equal(table["finish_reason"], "length")).as_py() / max(rows, 1)
    return metrics


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
        ds = map_with_actors(ds, ReferenceLogprobs, {"model_path": ctx.reference_path, "dtype": cfg.model.dtype},
                             cfg.reference.resources)
    _, seconds = _timed_write(ds, out)
    return _token_metrics(read_table(out), seconds)


def run_score(ctx: RunContext, out: Path) -> dict[str, float]:
    scorer, kwargs = scorer_for(ctx.cfg.score)
    ds = map_with_actors(read_stage(ctx.store.path("reference")), scorer, kwargs, ctx.cfg.score.resources)
    rows, seconds = _timed_write(ds, out)
    rewards = read_table(out)["reward"]
    mean = pc.mean(rewards).as_py()
    return {"rows": rows, "seconds": seconds, "reward_mean": mean, "reward_std": pc.stddev(rewards).as_py(),
            "reward_min": pc.min(rewards).as_py(), "reward_max": pc.max(rewards).as_py()}


def run_select(ctx: RunContext, out: Path) -> dict[str, float]:
    cfg = ctx.cfg.select
    groups = read_stage(ctx.store.path("score")).groupby("prompt_id")
    ds = groups.map_groups(pairs_table, fn_kwargs={"cfg": cfg}, batch_format="pyarrow")
    rows, seconds = _timed_write(ds, out)
    (out / "stats").mkdir()
    write(groups.map_groups(stats_table, fn_kwargs={"cfg": cfg}, batch_format="pyarrow"), out / "stats")
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
    from ray.train import RunConfig as TrainRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from rayalign.training.preference import METRICS_FILE, train_loop

    cfg = ctx.cfg.train
    res = cfg.resources
    pairs = read_stage(ctx.store.path("select")).random_shuffle(seed=cfg.seed)
    # A local path or a URI Ray Train understands (s3://, gs://, ...); shared storage on clusters.
    storage = res.storage_path or str((ctx.run_dir / "ray_train").resolve())
    worker = {"CPU": res.cpus_per_worker, **({"GPU": 1} if res.use_gpu else {})}
    name = f"train-{ctx.run_dir.name}-{int(time.time())}"
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"train": cfg.model_dump(mode="json"), "policy_path": ctx.policy_path,
                           "use_reference": ctx.cfg.needs_reference(),
                           "torch_extensions_dir": str(cache_dir() / "torch_extensions")},
        scaling_config=ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu, resources_per_worker=worker),
        run_config=TrainRunConfig(name=name, storage_path=storage),
        datasets={"train": pairs},
    )
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    model_dir = out / "model"
    result.checkpoint.to_directory(str(model_dir))
    # The copy in the stage directory is the output; Ray Train's own copy is only for its restarts.
    if "://" not in storage:
        shutil.rmtree(Path(storage) / name, ignore_errors=True)
    shutil.move(model_dir / METRICS_FILE, out / METRICS_FILE)
    history = _train_history(out)
    last, tokens = history[-1], sum(h["tokens"] for h in history)
    return {"rows": parquet_rows(ctx.store.path("select")), "steps": len(history), "seconds": seconds, "final_loss": last["loss"],
            "final_reward_accuracy": last["reward_accuracy"], "final_reward_margin": last["reward_margin"],
            "tokens_per_s": tokens / sum(h["tokens"] / h["tokens_per_s"] for h in history),
            "stage_tokens_per_s": tokens / seconds}


def run_evaluate(ctx: RunContext, out: Path) -> dict[str, float]:
    prompts = read_table(ctx.store.path("prompts"))
    aligned = str(ctx.store.path("train") / "model")
    table, metrics = evaluate(prompts, ctx.policy_path, aligned, ctx.reference_path, ctx.cfg, out)
    reward_histogram(table["sft_reward"].to_pylist(), table["aligned_reward"].to_pylist(),
                     out / "reward_distribution.png", ctx.cfg.evaluate.gold_reward)
    return {"rows": table.num_rows, **metrics}


def _train_history(folder: Path) -> list[dict]:
    from rayalign.training.preference import METRICS_FILE

    return [json.loads(line) for line in (folder / METRICS_FILE).read_text().splitlines()]


# Tracking of a committed stage directory: run after the stage, and again for a cached
# stage when a new MLflow run starts, so every run holds its full lineage.
def track_prompts(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "prompts", folder, context="prompts")


def track_select(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "pairs", folder, context="training")
    ctx.tracker.log_artifact(folder, "datasets/pairs")
    ctx.tracker.log_artifact(folder / "selection.png", "selection")


def track_train(ctx: RunContext, folder: Path) -> None:
    for row in _train_history(folder):
        ctx.tracker.log_metrics({k: v for k, v in row.items() if k not in ("step", "epoch")}, "train/", row["step"])
    ctx.tracker.set_tag("rayalign.aligned_model", str(folder / "model"))


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
