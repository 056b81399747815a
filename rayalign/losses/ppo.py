"""PPO maths for the InstructGPT-style baseline (Ziegler et al. 2019; Ouyang et al. 2022), as in
OpenRLHF's and TRL's PPO trainers: per-token KL-penalised rewards, GAE, whitening, the clipped
policy and value losses, and the adaptive KL controller.

Tensors are [B, T] over response tokens with a 0/1 `mask` (1 on generated tokens, 0 on padding
after them); every function returns 0 where the mask is 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

AllReduce = Callable[[torch.Tensor], torch.Tensor]  # a tensor in, its sum over every worker out


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the last masked token (−1 for a row with none)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values


def masked_mean(x: torch.Tensor, mask: torch.Tensor, all_reduce: AllReduce | None = None) -> torch.Tensor:
    """The mean of x over the entries where mask is 1 (0 for an empty mask). With `all_reduce` (a sum
    over workers), the mean over every worker's masked entries."""
    totals = torch.stack([(x * mask).sum(), mask.sum().to(x.dtype)])
    if all_reduce is not None:
        totals = all_reduce(totals)
    return totals[0] / totals[1].clamp(min=1)


def kl_penalized_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """r_t = −kl_coef·(log π(y_t) − log π_ref(y_t)) on masked tokens, plus scores[b] at the last
    masked token of row b (the EOS or last generated token, never a pad)."""
    mask = mask.to(logprobs.dtype)
    rewards = -kl_coef * (logprobs - ref_logprobs) * mask
    last = _last_index(mask)
    rows = torch.nonzero(last >= 0).squeeze(-1)
    rewards[rows, last[rows]] += scores[rows].to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016): (advantages, returns).

    δ_t = r_t + γ·V_{t+1} − V_t with V = 0 past the last masked token; A_t = δ_t + γλ·A_{t+1};
    returns = A + V."""
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * mask[:, t]
        next_value, next_advantage = values[:, t], advantages[:, t]
    return advantages, (advantages + values) * mask


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  all_reduce: AllReduce | None = None) -> torch.Tensor:
    """(x − μ)/sqrt(σ² + 1e-8) with μ and the population variance σ² over masked entries; μ is added
    back when shift_mean is false. With `all_reduce`, μ and σ² are over every worker's rollout."""
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask, all_reduce)
    var = masked_mean((x - mean) ** 2, mask, all_reduce)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, clip_fraction): the mean over the batch's masked tokens of max(−A·ρ, −A·clip(ρ, 1 − c,
    1 + c)), ρ = exp(log π − log π_old); clip_fraction is the share of masked tokens where the
    clipped term is the larger (its gradient is zero there)."""
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return masked_mean(torch.maximum(unclipped, clipped), mask), masked_mean((clipped > unclipped).to(mask.dtype),
                                                                               mask)


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float = 0.2) -> torch.Tensor:
    """0.5 × the masked token mean of max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)."""
    mask = mask.to(values.dtype)
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


class AdaptiveKLController:
    """The KL coefficient of Ziegler et al. 2019: with a target KL, after each step
    β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n_steps/horizon); without one, β stays fixed."""

    def __init__(self, init_kl_coef: float, target: float | None = None, horizon: int = 10000):
        if not (math.isfinite(init_kl_coef) and init_kl_coef >= 0):
            raise ValueError(f"init_kl_coef must be a finite number >= 0, got {init_kl_coef}")
        if target is not None and not target > 0:
            raise ValueError(f"target must be > 0 (or None for a fixed coefficient), got {target}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.value, self.target, self.horizon = float(init_kl_coef), target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        """Adapt the coefficient to the KL just measured over `n_steps` steps; the new value."""
        if self.target is not None:
            error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
