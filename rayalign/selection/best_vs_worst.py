"""Best-vs-worst pair construction."""

from collections.abc import Sequence

from rayalign.selection.validation import checked_rewards


def best_vs_worst(rewards: Sequence[float]) -> list[tuple[int, int]]:
    """[(argmax, argmin)] of the rewards (first index on ties), or [] when all rewards tie."""
    r = checked_rewards(rewards)
    if not r:
        return []
    best = max(range(len(r)), key=lambda i: (r[i], -i))
    worst = min(range(len(r)), key=lambda i: (r[i], i))
    return [] if r[best] == r[worst] else [(best, worst)]
