"""Pure evaluation statistics over the evaluate table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence


def win_rate(prompt_ids: Sequence[str], aligned: Sequence[float], sft: Sequence[float]) -> float:
    """Share of prompts whose mean aligned reward beats the mean SFT reward; a tie counts 1/2."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for pid, a, s in zip(prompt_ids, aligned, sft, strict=True):
        sums[pid][0] += a
        sums[pid][1] += s
    if not sums:
        raise ValueError("win_rate needs at least one prompt")
    wins = sum(1.0 if a > s else 0.5 if a == s else 0.0 for a, s in sums.values())
    return wins / len(sums)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; raises on an empty sequence."""
    if not values:
        raise ValueError("mean of no values")
    return float(sum(values) / len(values))
