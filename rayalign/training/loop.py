"""The Ray Train worker loop every training stage shares: a DeepSpeed engine, gradient
accumulation, per-step metrics, resumable checkpoints and the final HF checkpoint.

A stage supplies `build(tokenizer) -> (model, batch_loss)`; batch_loss(engine, batch, device)
returns the mean loss of a micro-batch and its statistics (a "tokens" count among them).
Resumable checkpoints are DeepSpeed checkpoints (weights, optimizer, scheduler) reported to
Ray Train, which keeps the newest N in its storage; a rerun of the same stage (same run name
and storage) or a restarted worker group resumes from the newest one and skips the
micro-batches it had already consumed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from rayalign.config import TrainerConfig
from rayalign.data.ray_io import set_torch_threads
from rayalign.training.deepspeed_config import deepspeed_config

METRICS_FILE = "train_metrics.jsonl"
STATE_FILE = "trainer_state.json"
DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "state"

BatchLoss = Callable[[torch.nn.Module, dict, torch.device], tuple[torch.Tensor, dict]]


def _set_rank_env(ctx) -> None:
    # DeepSpeed reads these even when Ray Train has already set up the process group.
    os.environ.setdefault("RANK", str(ctx.get_world_rank()))
    os.environ.setdefault("WORLD_SIZE", str(ctx.get_world_size()))
    os.environ.setdefault("LOCAL_RANK", str(ctx.get_local_rank()))
    os.environ.setdefault("LOCAL_WORLD_SIZE", str(ctx.get_local_world_size()))


def _mean_over_ranks(stats: dict, device) -> dict:
    # Average every statistic over ranks, except token counts, which add up.
    if not torch.distributed.is_initialized():
        return stats
    keys = sorted(stats)
    t = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    world = torch.distributed.get_world_size()
    return {k: v if k == "tokens" else v / world for k, v in zip(keys, t.tolist())}


def worker_fit(loop_config: dict, cfg: TrainerConfig,
               build: Callable[[object], tuple[torch.nn.Module, BatchLoss]]) -> None:
    """Train on the "train" dataset shard and report checkpoints; call from a Ray Train worker."""
    import ray.train

    set_torch_threads(cfg.resources.torch_threads)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    _set_rank_env(ctx)
    if not cfg.resources.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", loop_config["torch_extensions_dir"])
    import deepspeed
    from transformers import AutoTokenizer

    torch.manual_seed(cfg.seed)
    device = torch.device(f"cuda:{ctx.get_local_rank()}") if cfg.resources.use_gpu else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tokenizer = AutoTokenizer.from_pretrained(loop_config["model_path"])
    model, batch_loss = build(tokenizer)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                      config=deepspeed_config(cfg, ctx.get_world_size()))
    history, final = _resume(engine)
    if final is not None:  # the run had finished; only its final report was lost
        ray.train.report({**history[-1], "final": 1}, checkpoint=final if rank == 0 else None)
        engine.destroy()
        return
    skip = len(history) * cfg.gradient_accumulation_steps
    shard = ray.train.get_dataset_shard("train")
    seen, accumulated, started = 0, [], time.perf_counter()
    for epoch in range(cfg.epochs):
        for batch in shard.iter_batches(batch_size=cfg.micro_batch_size, batch_format="pyarrow",
                                        local_shuffle_buffer_size=None):
            seen += 1
            if seen <= skip:  # consumed before the checkpoint we resumed from
                continue
            loss, stats = batch_loss(engine, batch.to_pydict(), device)
            engine.backward(loss)
            engine.step()
            accumulated.append(stats)
            # DeepSpeed steps the optimizer every gradient_accumulation_steps micro-batches.
            if len(accumulated) < cfg.gradient_accumulation_steps:
                continue
            now = time.perf_counter()
            elapsed, started = now - started, now  # checkpoint time counts against the next step
            step_stats = {k: sum(s[k] for s in accumulated) / len(accumulated) for k in accumulated[0]}
            step_stats["tokens"] = sum(s["tokens"] for s in accumulated)
            step_stats = _mean_over_ranks(step_stats, device)
            step_stats.update(step=len(history) + 1, epoch=epoch, tokens_per_s=step_stats["tokens"] / max(elapsed, 1e-9),
                              learning_rate=float(engine.get_lr()[0]))
            history.append(step_stats)
            # Only checkpoints are reported: ray.train.report waits for the controller's ~2 s poll,
            # which would dominate a GPU step. The step metrics travel in the checkpoints' history.
            if cfg.checkpoint_every_steps and len(history) % cfg.checkpoint_every_steps == 0:
                _report_resumable(engine, history, rank)
            accumulated = []
    if not history:
        raise RuntimeError(
            f"no optimizer step: this worker saw {len(accumulated)} micro-batch(es), fewer than "
            f"gradient_accumulation_steps={cfg.gradient_accumulation_steps}; lower it, lower micro_batch_size "
            "or resources.num_workers, or give the stage more data")
    with tempfile.TemporaryDirectory() as tmp:
        _save_hf(engine, tokenizer, Path(tmp), rank, cfg.zero_stage)
        checkpoint = None
        if rank == 0:
            _write_state(Path(tmp), history, final=True)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({**history[-1], "final": 1}, checkpoint=checkpoint)
    engine.destroy()


def _write_state(folder: Path, history: list[dict], final: bool) -> None:
    (folder / STATE_FILE).write_text(json.dumps({"steps": len(history), "final": final}))
    with open(folder / METRICS_FILE, "w") as f:
        f.writelines(json.dumps(h) + "\n" for h in history)


def read_history(folder: Path) -> list[dict]:
    """The per-step metrics a training stage wrote."""
    return [json.loads(line) for line in (Path(folder) / METRICS_FILE).read_text().splitlines()]


def _report_resumable(engine, history: list[dict], rank: int) -> None:
    """Every rank saves its DeepSpeed shard; Ray Train merges them into one checkpoint directory."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(str(Path(tmp) / DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
        if rank == 0:
            _write_state(Path(tmp), history, final=False)
        ray.train.report(history[-1], checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=f"step_{len(history):06d}")


def _resume(engine) -> tuple[list[dict], object]:
    """(history so far, the final checkpoint if the run had finished) from Ray Train's latest checkpoint."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return [], None
    with checkpoint.as_directory() as folder:
        folder = Path(folder)
        state = json.loads((folder / STATE_FILE).read_text())
        history = read_history(folder)
        if state["final"]:
            keep = Path(tempfile.mkdtemp(prefix="rayalign-final-"))
            shutil.copytree(folder, keep, dirs_exist_ok=True)
            return history, ray.train.Checkpoint.from_directory(str(keep))
        engine.load_checkpoint(str(folder / DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
    print(f"rayalign: resumed training from step {len(history)}", flush=True)
    return history, None


def _save_hf(engine, tokenizer, out: Path, rank: int, zero_stage: int) -> None:
    """Full HF checkpoint from rank 0; under ZeRO-3 every rank joins the parameter gather."""
    import deepspeed

    gather = (deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)
              if zero_stage == 3 else nullcontext())
    with gather:
        if rank == 0:
            state = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}
            engine.module.save_pretrained(out, state_dict=state)
            tokenizer.save_pretrained(out)
