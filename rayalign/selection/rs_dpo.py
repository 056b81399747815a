"""RS-DPO pair construction (Khaki et al. 2024)."""

import math
from collections.abc import Sequence

from rayalign.selection.validation import checked_rewards


def rs_dpo_pairs(rewards: Sequence[float], tau: float, eta: float) -> list[tuple[int, int]]:
    """Every ordered pair (j, l), j ≠ l, with σ((r_j − r_l)/τ) > η, as (chosen, rejected).

    Equivalent to a reward gap r_j − r_l > τ·logit(η). With η ≥ 0.5 a pair and its
    reverse can never both pass, so each kept pair is oriented by reward.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not 0.0 < eta < 1.0:
        raise ValueError(f"eta must be in (0, 1), got {eta}")
    r = checked_rewards(rewards)
    pairs = []
    for j, rj in enumerate(r):
        for l, rl in enumerate(r):
            if j != l and _sigmoid((rj - rl) / tau) > eta:
                pairs.append((j, l))
    return pairs


def _sigmoid(x: float) -> float:
    # Split by sign so large |x| never overflows exp.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
