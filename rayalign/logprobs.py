"""Summed response log-probs of token sequences under a causal LM (reference stage and training)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int):
    """Right-padded input_ids, attention_mask and response_mask for prompt+response sequences."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    width = max(lengths)
    input_ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
    response_mask = torch.zeros((len(lengths), width), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(list(p) + list(r), dtype=torch.long)
        attention_mask[i, : len(p) + len(r)] = 1
        response_mask[i, len(p): len(p) + len(r)] = True
    return input_ids, attention_mask, response_mask


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, with_entropy: bool = False):
    """log π(x_{j+1} | x_≤j) at every position j, shape [B, L − 1]; differentiable. Position j holds
    the log-prob of token j + 1, so a response's tokens sit where response_mask[:, 1:] is true.
    With `with_entropy`, also the entropy of π(· | x_≤j) at every position (not differentiated)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    log_z = torch.logsumexp(logits, -1)
    logprobs = torch.gather(logits, -1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1) - log_z
    if not with_entropy:
        return logprobs
    with torch.no_grad():
        entropy = log_z - (logits.softmax(-1) * logits).sum(-1)  # H = log Z − E_π[logit]
    return logprobs, entropy


def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      response_mask: torch.Tensor) -> torch.Tensor:
    """Σ log π(y_t | x, y_<t) over response positions, shape [B]; differentiable."""
    return (token_logprobs(model, input_ids, attention_mask) * response_mask[:, 1:]).sum(-1)
