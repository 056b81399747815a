"""Labelled random pairs: the classic offline DPO setting, as a selection rule."""

import random
from collections.abc import Sequence

from rayalign.annotator import prefers_first
from rayalign.selection.validation import checked_rewards


def random_pair(rewards: Sequence[float], responses: Sequence[str], temperature: float,
                rng: random.Random) -> list[tuple[int, int]]:
    """[(chosen, rejected)]: two distinct responses drawn at random, ordered by an annotator that
    prefers a with P = σ((r_a − r_b)/T) (T = 0: the higher reward, ties by a coin); [] when fewer
    than two responses differ. Unlike every other rule, the chosen one may have the lower reward."""
    r = checked_rewards(rewards)
    candidates = [(a, b) for a in range(len(r)) for b in range(a + 1, len(r)) if responses[a] != responses[b]]
    if not candidates:
        return []
    a, b = rng.choice(candidates)
    return [(a, b)] if prefers_first(r[a], r[b], temperature, rng.random()) else [(b, a)]
