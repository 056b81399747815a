"""Driver side of a training stage: a Ray Train TorchTrainer whose run name and storage make a
rerun of the same stage resume from its newest checkpoint, and the final HF model copied out."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import ray

from rayalign.config import TrainerConfig
from rayalign.models import cache_dir
from rayalign.training.loop import METRICS_FILE, STATE_FILE, read_history


def fit(loop: Callable[[dict], None], loop_config: dict, cfg: TrainerConfig, dataset: ray.data.Dataset,
        name: str, run_dir: Path, out: Path, trust_remote_code: bool = False) -> list[dict]:
    """Train with `loop` on Ray Train workers; write out/model (HF) and out/train_metrics.jsonl.

    `name` must identify the stage's inputs and settings (its cache key): a rerun with the same
    name continues from the newest checkpoint in storage, a changed config starts afresh.
    `dataset`'s row order is the training order (see `shuffled`). `trust_remote_code` (model.
    trust_remote_code) reaches the loop as loop_config["trust_remote_code"]. Returns the per-step metrics.
    """
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    res = cfg.resources
    worker = {"CPU": res.cpus_per_worker, **({"GPU": 1} if res.use_gpu else {})}
    run_config = train_run_config(cfg, name, run_dir)
    storage = run_config.storage_path
    trainer = TorchTrainer(
        loop,
        train_loop_config={**loop_config, "trainer": cfg.model_dump(mode="json"),
                           "trust_remote_code": trust_remote_code,
                           "torch_extensions_dir": str(cache_dir() / "torch_extensions")},
        scaling_config=ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu, resources_per_worker=worker),
        run_config=run_config,
        datasets={"train": dataset},
        dataset_config=train_data_config(),
    )
    result = trainer.fit()
    model_dir = out / "model"
    result.checkpoint.to_directory(str(model_dir))
    shutil.move(model_dir / METRICS_FILE, out / METRICS_FILE)
    (model_dir / STATE_FILE).unlink()
    # The stage directory now holds the output; Ray Train's copy only served restarts.
    if "://" not in storage:
        shutil.rmtree(Path(storage) / name, ignore_errors=True)
    return read_history(out)


def train_data_config():
    """How Ray Train hands a stage's dataset to its workers: unsplit and in order. Each worker takes
    its rows of every global micro-batch (loop.rank_slice), so a resumed run skips exactly the
    steps it had taken."""
    from ray.data import ExecutionOptions
    from ray.train import DataConfig

    return DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True))


def shuffled(table: pa.Table, seed: int) -> ray.data.Dataset:
    """`table` in a seeded random row order, fixed in the driver so every run (and every resume) of
    a stage trains in the same order; Ray Data's random_shuffle depends on block completion order."""
    return ray.data.from_arrow(table.take(random.Random(seed).sample(range(table.num_rows), table.num_rows)))


def train_run_config(cfg: TrainerConfig, name: str, run_dir: Path):
    """Ray Train's RunConfig for a stage: where checkpoints live, how many are kept, restarts."""
    from ray.train import CheckpointConfig, FailureConfig
    from ray.train import RunConfig as TrainRunConfig

    # A local path or a URI Ray Train understands (s3://, gs://, ...); shared storage on clusters.
    storage = cfg.resources.storage_path or str((run_dir / "ray_train").resolve())
    return TrainRunConfig(name=name, storage_path=storage,
                          checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
                          failure_config=FailureConfig(max_failures=cfg.resources.max_failures))


def throughput(history: list[dict], seconds: float) -> dict[str, float]:
    """Tokens/s over the optimizer steps alone, and over the whole stage."""
    tokens = sum(h["tokens"] for h in history)
    return {"tokens_per_s": tokens / max(sum(h["tokens"] / h["tokens_per_s"] for h in history), 1e-9),
            "stage_tokens_per_s": tokens / max(seconds, 1e-9), "steps": len(history)}
