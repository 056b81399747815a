"""RSO statistical rejection sampling (Liu et al. 2024, "Statistical Rejection Sampling
Improves Preference Optimization", ICLR 2024)."""

import math
import random
from collections.abc import Sequence

from rayalign.selection.validation import checked_rewards


def rso_sample(rewards: Sequence[float], num_samples: int, beta: float, rng: random.Random) -> list[int]:
    """Indices of the accepted candidates, in order of acceptance.

    Draws (approximately) from π*(y) ∝ π_sft(y)·exp(r(y)/β) given N candidates drawn from π_sft.
    Repeat until num_samples are accepted or no candidate remains: m = max reward of the
    remaining candidates; visit the remaining candidates in a random order and accept each
    with probability exp((r_c − m)/β), removing it once accepted (without replacement).
    The maximum is always accepted, so every round accepts at least one candidate.

    β → 0 gives the top-n by reward (among candidates tied at the cut-off, the random visiting
    order decides); β → ∞ a uniform sample without replacement. num_samples > k returns all k.
    Paper defaults: N = 64 candidates, n = 8 accepted, β = 0.5.

    rng must be a stdlib `random.Random` (only `.random()` and `.shuffle()` are used);
    seed it for reproducible selections.
    """
    if not beta > 0:  # also refuses NaN; β = inf is allowed (uniform sampling)
        raise ValueError(f"beta must be > 0, got {beta}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    r = checked_rewards(rewards)
    remaining = list(range(len(r)))
    accepted: list[int] = []
    while remaining and len(accepted) < num_samples:
        m = max(r[i] for i in remaining)
        rng.shuffle(remaining)
        kept = []
        for c in remaining:
            if len(accepted) < num_samples and rng.random() < math.exp((r[c] - m) / beta):
                accepted.append(c)
            else:
                kept.append(c)
        remaining = kept
    return accepted
