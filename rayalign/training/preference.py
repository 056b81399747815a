"""Preference training (DPO, IPO, SLiC, RSO hinge-norm) on Ray Train workers, each running a DeepSpeed engine.

Workers read pairs from `ray.train.get_dataset_shard("train")`; reference log-probs come
precomputed with the pairs (SLiC needs none), so no reference model is loaded. Rank 0 writes the final HF
checkpoint (model + tokenizer) and the per-step metrics into the reported Ray checkpoint.
"""

from __future__ import annotations

import functools
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
from rayalign.losses import budget_regularizer, dpo_loss, hinge_norm_loss, ipo_loss, slic_loss
from rayalign.training.deepspeed_config import deepspeed_config

METRICS_FILE = "train_metrics.jsonl"


def pair_losses(cfg: TrainConfig, pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor | None,
                rr: torch.Tensor | None, chosen_tokens: torch.Tensor, rejected_tokens: torch.Tensor) -> torch.Tensor:
    """Per-pair loss of the configured method, plus the budget regulariser when enabled."""
    if cfg.loss == "dpo":
        losses = dpo_loss(pc, pr, rc, rr, cfg.beta, cfg.label_smoothing)
    elif cfg.loss == "ipo":
        if cfg.ipo_token_mean:
            losses = ipo_loss(pc / chosen_tokens, pr / rejected_tokens, rc / chosen_tokens, rr / rejected_tokens,
                              cfg.beta)
        else:
            losses = ipo_loss(pc, pr, rc, rr, cfg.beta)
    elif cfg.loss == "slic":
        losses = slic_loss(pc, pr, target_logps=pc, delta=cfg.slic_delta, lam=cfg.slic_lambda)
    else:
        losses = hinge_norm_loss(pc, pr, rc, rr, cfg.hinge_gamma)
    if cfg.budget_lambda > 0:
        losses = losses + budget_regularizer(pc, rc, budget=cfg.budget, lam=cfg.budget_lambda)
    return losses


def preference_batch_loss(model, batch: dict, cfg: TrainConfig, pad_id: int, device,
                          use_reference: bool) -> tuple[torch.Tensor, dict]:
    """Mean preference loss over a batch of pairs, and its statistics.

    With a reference, the implicit rewards are β·(log π − log π_ref); without one (SLiC), the
    statistics use the policy log-probs alone.
    """
    prompts = batch["prompt_token_ids"]
    n = len(prompts)
    tensors = pad_batch(prompts + prompts, batch["chosen_token_ids"] + batch["rejected_token_ids"], pad_id)
    logps = sequence_logprobs(model, *(t.to(device) for t in tensors))
    pc, pr = logps[:n], logps[n:]
    as_tensor = functools.partial(torch.tensor, dtype=logps.dtype, device=device)
    rc = as_tensor(batch["chosen_ref_logprob"]) if use_reference else None
    rr = as_tensor(batch["rejected_ref_logprob"]) if use_reference else None
    lengths = tensors[2].sum(-1).to(device=device, dtype=logps.dtype)
    losses = pair_losses(cfg, pc, pr, rc, rr, lengths[:n], lengths[n:])
    with torch.no_grad():
        chosen = cfg.beta * (pc - rc) if use_reference else pc
        rejected = cfg.beta * (pr - rr) if use_reference else pr
        stats = {
            "loss": losses.mean().item(),
            "reward_accuracy": (chosen > rejected).float().mean().item(),
            "reward_margin": (chosen - rejected).mean().item(),
            "chosen_logratio": chosen.mean().item(),
            "rejected_logratio": rejected.mean().item(),
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
            loss, stats = preference_batch_loss(engine, batch.to_pydict(), cfg, pad_id, device,
                                                use_reference=loop_config["use_reference"])
            engine.backward(loss)
            engine.step()
            accumulated.append(stats)
            # DeepSpeed steps the optimizer every gradient_accumulation_steps micro-batches.
            if len(accumulated) == cfg.gradient_accumulation_steps:
                elapsed = time.perf_counter() - started
                step_stats = {k: sum(s[k] for s in accumulated) / len(accumulated) for k in accumulated[0]}
                step_stats["tokens"] = sum(s["tokens"] for s in accumulated)
                step_stats = _mean_over_ranks(step_stats, device)
                step_stats.update(step=len(history) + 1, epoch=epoch,
                                  tokens_per_s=step_stats["tokens"] / max(elapsed, 1e-9),
                                  learning_rate=float(engine.get_lr()[0]))
                history.append(step_stats)
                ray.train.report(step_stats)
                accumulated, started = [], time.perf_counter()
    if not history:
        raise RuntimeError(
            f"no optimizer step: this worker saw {len(accumulated)} micro-batch(es) of pairs, fewer than "
            f"train.gradient_accumulation_steps={cfg.gradient_accumulation_steps}; lower it, lower "
            "train.micro_batch_size or train.resources.num_workers, or produce more pairs")
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
