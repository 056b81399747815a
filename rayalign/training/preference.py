"""Preference training (DPO, IPO, SLiC, RSO hinge-norm) on Ray Train workers (rayalign.training.loop).

Workers read pairs from `ray.train.get_dataset_shard("train")`; reference log-probs come
precomputed with the pairs (SLiC needs none), so no reference model is loaded.
"""

from __future__ import annotations

import functools

import torch

from rayalign.config import TrainConfig
from rayalign.logprobs import pad_batch, pair_logprobs, sequence_logprobs
from rayalign.losses import budget_regularizer, dpo_loss, hinge_norm_loss, ipo_loss, slic_loss
from rayalign.pretrained import load_model
from rayalign.training.loop import without_dropout, worker_fit


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


def preference_batch_loss(model, batch: dict, device, cfg: TrainConfig, pad_id: int,
                          use_reference: bool) -> tuple[torch.Tensor, dict]:
    """Mean preference loss over a batch of pairs, and its statistics under TRL DPOTrainer's names:
    rewards/chosen, rewards/rejected (mean implicit rewards β·(log π − log π_ref); without a reference,
    SLiC, the policy log-probs), rewards/accuracies, rewards/margins, and logps/chosen, logps/rejected
    (mean summed response log-probs under the policy).
    """
    prompts, chosen_ids = batch["prompt_token_ids"], batch["chosen_token_ids"]
    rejected_ids = batch["rejected_token_ids"]
    if cfg.share_prompt:
        pc, pr = pair_logprobs(model, prompts, chosen_ids, rejected_ids, pad_id, device)
    else:
        n = len(prompts)
        logps = sequence_logprobs(model, *(t.to(device) for t in pad_batch(prompts + prompts, chosen_ids + rejected_ids,
                                                                            pad_id)))
        pc, pr = logps[:n], logps[n:]
    as_tensor = functools.partial(torch.tensor, dtype=pc.dtype, device=device)
    rc = as_tensor(batch["chosen_ref_logprob"]) if use_reference else None
    rr = as_tensor(batch["rejected_ref_logprob"]) if use_reference else None
    losses = pair_losses(cfg, pc, pr, rc, rr, as_tensor([len(c) for c in chosen_ids]),
                         as_tensor([len(r) for r in rejected_ids]))
    with torch.no_grad():
        chosen = cfg.beta * (pc - rc) if use_reference else pc
        rejected = cfg.beta * (pr - rr) if use_reference else pr
        # Tensors, not floats: the loop reads a step's statistics with one device sync, not one per value.
        stats = {
            "loss": losses.mean(),
            "rewards/chosen": chosen.mean(),
            "rewards/rejected": rejected.mean(),
            "rewards/accuracies": (chosen > rejected).float().mean(),
            "rewards/margins": (chosen - rejected).mean(),
            "logps/chosen": pc.mean(),
            "logps/rejected": pr.mean(),
            # Prompt tokens count once per response however the forward lays them out, so tokens/s
            # compares with TRL's (and with share_prompt off).
            "tokens": float(sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(prompts, chosen_ids, rejected_ids))),
        }
    return losses.mean(), stats


def train_loop(loop_config: dict) -> None:
    """Ray Train worker entry point of the train stage."""
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig.model_validate(loop_config["trainer"])

    def build(tokenizer):
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model = without_dropout(load_model(AutoModelForCausalLM, loop_config["model_path"],
                                           loop_config["trust_remote_code"], dtype=torch.float32))
        return model, functools.partial(preference_batch_loss, cfg=cfg, pad_id=pad_id,
                                        use_reference=loop_config["use_reference"])

    worker_fit(loop_config, cfg, build)
