"""Ranking from pairwise comparisons (Chen et al. 2024, "Towards Improved Preference Optimization
Pipeline: from Data Generation to Budget-Controlled Regularization", arXiv:2411.05875)."""

import logging
import math
from collections.abc import Callable, Sequence

from rayalign.selection.validation import checked_rewards

logger = logging.getLogger("rayalign.selection")

Compare = Callable[[int, int], bool]


class CountingCompare:
    """Wraps compare(i, j) -> bool and counts its calls in `.calls` (cumulative over its lifetime)."""

    def __init__(self, compare: Compare) -> None:
        self.compare = compare
        self.calls = 0

    def __call__(self, i: int, j: int) -> bool:
        self.calls += 1
        return bool(self.compare(i, j))


def pairwise_ranking(n: int, compare: Compare) -> list[int]:
    """Candidates 0..n−1 ordered best-first using only compare(i, j) (True when i ≻ j).

    A stable merge sort: at most n·⌈log2 n⌉ comparisons, and candidates
    that neither beats keep their index order. Chosen = ranking[0], rejected = ranking[-1].
    The paper's running-winner scan needs only n − 1 comparisons but gives just the winner;
    a full ranking also gives the loser and any number of pairs.

    The comparisons made are logged (DEBUG, logger "rayalign.selection"). To read the count,
    pass a CountingCompare: its `.calls` grows by the number made here; a plain function is
    wrapped in a private one.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    counter = compare if isinstance(compare, CountingCompare) else CountingCompare(compare)
    before = counter.calls
    ranking = _merge_sort(list(range(n)), counter)
    logger.debug("pairwise_ranking: %d candidates ranked with %d comparisons", n, counter.calls - before)
    return ranking


def _merge_sort(items: list[int], better: Compare) -> list[int]:
    if len(items) <= 1:
        return items
    mid = len(items) // 2
    left, right = _merge_sort(items[:mid], better), _merge_sort(items[mid:], better)
    out, a, b = [], 0, 0
    while a < len(left) and b < len(right):
        # Take from the right only when it strictly beats the left: ties keep input order.
        if better(right[b], left[a]):
            out.append(right[b])
            b += 1
        else:
            out.append(left[a])
            a += 1
    return out + left[a:] + right[b:]


def reward_compare(rewards: Sequence[float]) -> Compare:
    """compare(i, j) = r_i > r_j from pointwise rewards (non-finite rewards are refused)."""
    r = checked_rewards(rewards)
    return lambda i, j: r[i] > r[j]


def judge_compare(prob_fn: Callable[[int, int], float], threshold: float = 0.5) -> Compare:
    """compare(i, j) = P(i ≻ j) > threshold, from a pairwise judge prob_fn(i, j) = P(i ≻ j).

    threshold default 0.5, must lie in [0.5, 1): for a judge with P(j ≻ i) = 1 − P(i ≻ j),
    i and j can then never both win. A judge returning a value outside [0, 1] (or NaN) is
    refused with ValueError.
    """
    if not 0.5 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0.5, 1), got {threshold}")

    def compare(i: int, j: int) -> bool:
        p = float(prob_fn(i, j))
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"judge returned P({i} ≻ {j}) = {p}; expected a probability in [0, 1]")
        return p > threshold

    return compare
