"""What several stage modules share: timed writes and token metrics, sampling prompts with vLLM
actors, the tokenizer of a checkpoint, and the MLflow runs of training stages."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import ray

from rayalign.actors.runtime import map_with_actors
from rayalign.actors.sampler import VLLMSampler, sampler_kwargs
from rayalign.data.parquet import read_table
from rayalign.data.ray_io import write
from rayalign.pipeline.context import RunContext
from rayalign.pretrained import load_tokenizer
from rayalign.training.loop import read_history


def tokenizer(ctx: RunContext, path: str):
    """The tokenizer of a checkpoint directory, with the run's model.trust_remote_code."""
    return load_tokenizer(path, ctx.cfg.model.trust_remote_code)


def timed_write(ds: ray.data.Dataset, out: Path) -> tuple[int, float]:
    """Write `ds` into `out`: (rows, seconds)."""
    start = time.perf_counter()
    rows = write(ds, out)
    return rows, time.perf_counter() - start


def token_metrics(table: pa.Table, seconds: float) -> dict[str, float]:
    """Rows, seconds, tokens/s and mean response length of a table of sampled responses."""
    tokens = pc.sum(table["num_tokens"]).as_py() or 0
    return {"rows": table.num_rows, "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9),
            "mean_response_tokens": tokens / max(table.num_rows, 1)}


def sample_prompts(ctx: RunContext, prompts: ray.data.Dataset, out: Path, n: int, seed: int,
                   stream: str) -> dict[str, float]:
    """Sample n responses per prompt row (prompt_id, prompt) from the current policy with vLLM actors
    into `out`; its metrics. `stream` keeps the draws apart from other stages' with the same seed."""
    cfg = ctx.cfg
    kwargs = sampler_kwargs(ctx.latest_policy(), cfg.sample, cfg.model.dtype, n=n, seed=seed, stream=stream,
                            temperature=cfg.sample.temperature, top_p=cfg.sample.top_p,
                            trust_remote_code=cfg.model.trust_remote_code)
    ds = map_with_actors(prompts, VLLMSampler, kwargs, cfg.sample.resources)
    rows, seconds = timed_write(ds, out)
    table = read_table(out)
    metrics = token_metrics(table, seconds)
    metrics["truncated_fraction"] = pc.sum(pc.equal(table["finish_reason"], "length")).as_py() / max(rows, 1)
    return metrics


def log_history(ctx: RunContext, folder: Path) -> None:
    """A training node's per-step metrics, as '<node>/<metric>' series in the active MLflow run."""
    for row in read_history(folder):
        ctx.tracker.log_metrics({k: v for k, v in row.items() if k not in ("step", "epoch")}, f"{ctx.node.id}/",
                                row["step"])


def training_run(ctx: RunContext, folder: Path, params: dict, consumed: dict[str, str], data: Path | None,
                 data_name: str) -> None:
    """A nested MLflow run for a training node: its settings, step metrics, the dataset and
    checkpoints it consumed and the checkpoint it produced, so chained runs link by lineage.
    `data` is the stage folder whose dataset it trained on (None: a file named in `consumed`)."""
    if data is not None:
        consumed = {**consumed, "data": str(data)}
    node = ctx.node.id
    with ctx.tracker.child_run(node, params=params, consumed=consumed, produced={"model": str(folder / "model")}):
        if data is not None:
            ctx.tracker.log_dataset(read_table(data), data_name, data, context="training")
        log_history(ctx, folder)
        ctx.tracker.log_metrics(ctx.store.manifest(node)["metrics"], f"{node}/")
