"""Preference training (DPO) on Ray Train workers, each running a DeepSpeed engine.

Workers read pairs from `ray.train.get_dataset_shard("train")`; reference log-probs come
precomputed with the pairs, so no reference model is loaded. Rank 0 writes the final HF
checkpoint (model + tokenizer) and the per-step metrics into the reported Ray checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from rayalign.config import TrainConfig
from rayalign.data.ray_io import set_torch_threads
from rayalign.logprobs import pad_batch, sequence_logprobs
from rayalign.losses import dpo_loss
from rayalign.training.deepspeed_config import deepspeed_config

METRICS_FILE = "train_metrics.jsonl"


def dpo_batch_loss(model, batch: dict, cfg: TrainConfig, pad_id: int, device) -> tuple[torch.Tensor, dict]:
    """Mean DPO loss over a batch of pairs, and its statistics (β-scaled implicit rewards)."""
    prompts = batch["prompt_token_ids"]
    n = len(prompts)
    tensors = pad_batch(prompts + prompts, batch["chosen_token_ids"] + batch["rejected_token_ids"], pad_id)
    logps = sequence_logprobs(model, *(t.to(device) for t in tensors))
    policy_chosen, policy_rejected = logps[:n], logps[n:]
    ref_chosen = torch.tensor(batch["chosen_ref_logprob"], dtype=logps.dtype, device=device)
    ref_rejected = torch.tensor(batch["rejected_ref_logprob"], dtype=logps.dtype, device=device)
    losses = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, cfg.beta, cfg.label_smoothing)
    with torch.no_grad():
        chosen_ratio = cfg.beta * (policy_chosen - ref_chosen)
        rejected_ratio = cfg.beta * (policy_rejected - ref_rejected)
        stats = {
            "loss": losses.mean().item(),
            "reward_accuracy": (chosen_ratio > rejected_ratio).float().mean().item(),
            "reward_margin": (chosen_ratio - rejected_ratio).mean().item(),
            "chosen_logratio": chosen_ratio.mean().item(),
            "rejected_logratio": rejected_ratio.mean().item(),
            "tokens": float(tensors[1].sum().item()),
        }
    return losses.mean(), stats


def _mean_over_ranks(stats: dict, device) -> dict:
    # Average every statistic over ranks, except token counts, which add up.
    if not torch.distributed.is_initialized():
        return stats
    keys = sorted(stats)
    t = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    world = torch.distributed.get_world_size()
    return {k: v if k == "tokens" else v / world for k, v in zip(keys, t.tolist())}


def _set_rank_env(ctx) -> None:
    # DeepSpeed reads these even when Ray Train has already set up the process group.
    os.environ.setdefault("RANK", str(ctx.get_world_rank()))
    os.environ.setdefault("WORLD_SIZE", str(ctx.get_world_size()))
    os.environ.setdefault("LOCAL_RANK", str(ctx.get_local_rank()))
    os.environ.setdefault("LOCAL_WORLD_SIZE", str(ctx.get_local_world_size()))


def train_loop(loop_config: dict) -> None:
    """Ray Train worker entry point."""
    import ray.train

    cfg = TrainConfig.model_validate(loop_config["train"])
    set_torch_threads(cfg.resources.torch_threads)
    ctx = ray.train.get_context()
    _set_rank_env(ctx)
    if not cfg.resources.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", loop_config["torch_extensions_dir"])
    import deepspeed
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(cfg.seed)
    device = torch.device(f"cuda:{ctx.get_local_rank()}") if cfg.resources.use_gpu else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    policy_path = loop_config["policy_path"]
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                      config=deepspeed_config(cfg, ctx.get_world_size()))
    shard = ray.train.get_dataset_shard("train")
    history, accumulated, started = [], [], time.perf_counter()
    for epoch in range(cfg.epochs):
        for batch in shard.iter_batches(batch_size=cfg.micro_batch_size, batch_format="pyarrow",
                                        local_shuffle_buffer_size=None):
            loss, stats = dpo_batch_loss(engine, batch.to_pydict(), cfg, pad_id, device)
            engine.backward(loss)
            engine.step()
            accumulated.append(stats)
            if engine.is_gradient_accumulation_boundary() or len(accumulated) == cfg.gradient_accumulation_steps:
                elapsed = time.perf_counter() - started
                step_stats = {k: sum(s[k] for s in accumulated) / len(accumulated) for k in accumulated[0]}
                step_stats["tokens"] = sum(s["tokens"] for s in accumulated)
                step_stats = _mean_over_ranks(step_stats, device)
                step_stats.update(step=len(history) + 1, epoch=epoch,
                                  tokens_per_s=step_stats["tokens"] / max(elapsed, 1e-9),
                                  learning_rate=float(engine.get_lr()[0]))
                history.append(step_stats)
                ray.train.report({k: v for k, v in step_stats.items()})
                accumulated, started = [], time.perf_counter()
    if not history:
        raise RuntimeError("training saw no batch: the pairs dataset is empty on this worker")
    with tempfile.TemporaryDirectory() as tmp:
        _save_hf(engine, tokenizer, Path(tmp), ctx.get_world_rank(), cfg.zero_stage)
        checkpoint = None
        if ctx.get_world_rank() == 0:
            with open(Path(tmp) / METRICS_FILE, "w") as f:
                f.writelines(json.dumps(h) + "\n" for h in history)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({**history[-1], "final": 1}, checkpoint=checkpoint)
    engine.destroy()


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
