"""What several stage modules share: timed writes and token metrics, sampling prompts with vLLM
actors, the tokenizer of a checkpoint, and training nodes' Ray Train runs and MLflow runs."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from rayalign.actors.runtime import map_with_actors
from rayalign.actors.sampler import VLLMSampler, sampler_kwargs
from rayalign.config import TrainerConfig
from rayalign.data.parquet import parquet_files, read_table
from rayalign.data.ray_io import write
from rayalign.pipeline.context import RunContext
from rayalign.pretrained import load_tokenizer
from rayalign.training.live_metrics import step_metrics
from rayalign.training.loop import planned_steps, read_history
from rayalign.training.trainer import fit


def tokenizer(ctx: RunContext, path: str):
    """The tokenizer of a checkpoint directory, with the run's model.trust_remote_code."""
    return load_tokenizer(path, ctx.cfg.model.trust_remote_code)


def timed_write(ds: ray.data.Dataset, out: Path, shards: bool = False) -> tuple[int, float]:
    """Write `ds` into `out` (ray_io.write): (rows in `out`, seconds)."""
    start = time.perf_counter()
    rows = write(ds, out, shards)
    return rows, time.perf_counter() - start


def remaining(ds: ray.data.Dataset, out: Path, keys: tuple[str, ...], per_key: int = 1) -> tuple[ray.data.Dataset, int]:
    """`ds` without the rows whose `keys` an interrupted run of this node already wrote to `out`
    (Stage.resumable: the same cache key), each key with `per_key` rows. Only shard files that read
    back whole count: a torn file, or one holding a key in part, is deleted and its keys are done
    again. Returns (the rest of `ds`, the rows kept in `out`)."""
    files: dict[str, list[tuple]] = {}
    for f in parquet_files(out):
        try:
            table = pq.read_table(f, columns=list(keys))
        except (OSError, pa.ArrowInvalid):  # a writer killed mid-file leaves no footer
            Path(f).unlink()
            continue
        files[f] = list(zip(*(table[c].to_pylist() for c in keys)))
    while True:
        counts = Counter(k for found in files.values() for k in found)
        partial = [f for f, found in files.items() if any(counts[k] != per_key for k in found)]
        if not partial:
            break
        for f in partial:
            Path(f).unlink()
            del files[f]
    done = pa.array(sorted({_joined(k) for found in files.values() for k in found}), pa.string())
    if not len(done):
        return ds, 0

    def drop_done(batch: pa.Table) -> pa.Table:
        joined = pc.binary_join_element_wise(*(pc.cast(batch[c], pa.string()) for c in keys), KEY_SEPARATOR)
        return batch.filter(pc.invert(pc.is_in(joined, value_set=done)))
    return ds.map_batches(drop_done, batch_format="pyarrow"), sum(len(found) for found in files.values())


KEY_SEPARATOR = "\x1f"


def _joined(key: tuple) -> str:
    return KEY_SEPARATOR.join(str(k) for k in key)


def token_metrics(table: pa.Table, seconds: float) -> dict[str, float]:
    """Rows, seconds, tokens/s and mean response length of a table of sampled responses."""
    tokens = pc.sum(table["num_tokens"]).as_py() or 0
    return {"rows": table.num_rows, "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9),
            "mean_response_tokens": tokens / max(table.num_rows, 1)}


def sample_prompts(ctx: RunContext, prompts: ray.data.Dataset, out: Path, n: int, seed: int,
                   stream: str) -> dict[str, float]:
    """Sample n responses per prompt row (prompt_id, prompt) from the current policy with vLLM actors
    into `out`, in shards (resuming from those an interrupted run left); its metrics. `stream` keeps
    the draws apart from other stages' with the same seed."""
    cfg = ctx.cfg
    kwargs = sampler_kwargs(ctx.latest_policy(), cfg.sample, cfg.model.dtype, n=n, seed=seed, stream=stream,
                            temperature=cfg.sample.temperature, top_p=cfg.sample.top_p,
                            trust_remote_code=cfg.model.trust_remote_code)
    prompts, resumed = remaining(prompts, out, ("prompt_id",), per_key=n)
    ds = ctx.progress.counted(map_with_actors(prompts, VLLMSampler, kwargs, cfg.sample.resources, shards=True),
                              lambda: prompts.count() * n, "responses")
    rows, seconds = timed_write(ds, out, shards=True)
    table = read_table(out)
    metrics = {**token_metrics(table, seconds), "resumed_rows": resumed}
    metrics["truncated_fraction"] = pc.sum(pc.equal(table["finish_reason"], "length")).as_py() / max(rows, 1)
    return metrics


def fit_node(ctx: RunContext, loop: Callable[[dict], None], loop_config: dict, cfg: TrainerConfig,
             dataset: ray.data.Dataset, out: Path, steps: int | None = None) -> list[dict]:
    """training.trainer.fit for the current training node: its Ray Train run named by its cache key,
    the run's model.trust_remote_code, its step metrics live into the pipeline's MLflow run as
    '<node>/<metric>', and its `steps` (default: planned_steps of the dataset) on the progress bar.
    Returns the per-step history."""
    tracking = {"uri": ctx.tracker.uri, "run_id": ctx.tracker.run_id, "prefix": f"{ctx.node.id}/"}
    ctx.progress.phase(lambda: steps or planned_steps(dataset.count(), cfg), "steps")
    return fit(loop, {**loop_config, "tracking": tracking, "progress": ctx.progress.board}, cfg, dataset,
               ctx.train_name(), ctx.run_dir, out, trust_remote_code=ctx.cfg.model.trust_remote_code)


def _steps(folder: Path) -> list[tuple[int, dict[str, float]]]:
    return [(row["step"], step_metrics(row)) for row in read_history(folder)]


ALIGNED_MODEL_TAG = "rayalign.aligned_model"
ALIGNED_MODEL_ID_TAG = "rayalign.aligned_model_id"


def training_run(ctx: RunContext, folder: Path, params: dict, consumed: dict[str, str], data: Path | None,
                 data_name: str, aligned: bool = False) -> None:
    """A nested MLflow run for a training node: its settings, step metrics (TRL's names, unprefixed),
    the dataset and checkpoints it consumed and the checkpoint it produced, so chained runs link by
    lineage; and in the pipeline's run, the step metrics its workers could not log live.
    `data` is the stage folder whose dataset it trained on (None: a file named in `consumed`).
    The `aligned` policy is also logged as an MLflow model of the nested run (tracking.log_model),
    registered under tracking.register_model, and named by tags of the pipeline's run."""
    if data is not None:
        consumed = {**consumed, "data": str(data)}
    node, steps = ctx.node.id, _steps(folder)
    ctx.tracker.log_missing_steps(steps, f"{node}/")
    with ctx.tracker.child_run(node, params=params, consumed=consumed, produced={"model": str(folder / "model")}):
        if data is not None:
            ctx.tracker.log_dataset(read_table(data), data_name, data, context="training")
        ctx.tracker.log_missing_steps(steps)  # one training per run: TRL's metric names as they are
        ctx.tracker.log_metrics(ctx.store.manifest(node)["metrics"])
        tracking = ctx.cfg.tracking
        model_id = (ctx.tracker.log_model(folder / "model", "aligned_model", tracking.register_model)
                    if aligned and tracking.log_model else None)
    if aligned:
        ctx.tracker.set_tag(ALIGNED_MODEL_TAG, str(folder / "model"))
    if model_id:
        ctx.tracker.set_tag(ALIGNED_MODEL_ID_TAG, model_id)
