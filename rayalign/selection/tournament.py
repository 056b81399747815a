"""Pairing RSO's accepted samples (Liu et al. 2024): first-round and tournament pairs."""

from collections.abc import Sequence

from rayalign.selection.validation import checked_rewards


def first_round_pairs(indices: Sequence[int], rewards: Sequence[float]) -> list[tuple[int, int]]:
    """n/2 disjoint pairs (indices[0] vs indices[1], indices[2] vs indices[3], …) as (chosen, rejected).

    `indices` are candidate indices into `rewards` (e.g. rso_sample's output). Each pair is
    oriented by reward; a pair whose rewards tie is dropped, and with odd n the last index is
    left out.
    """
    r = checked_rewards(rewards)
    idx = _checked_indices(indices, len(r))
    pairs = []
    for a, b in zip(idx[0::2], idx[1::2]):
        if r[a] != r[b]:
            pairs.append((a, b) if r[a] > r[b] else (b, a))
    return pairs


def tournament_pairs(indices: Sequence[int], rewards: Sequence[float]) -> list[tuple[int, int]]:
    """The n − 1 matches of a single-elimination tournament over `indices`, as (chosen, rejected).

    Each round pairs consecutive entrants (as in first_round_pairs); winners advance in order,
    and with an odd number of entrants the last one gets a bye to the next round. Pairs are
    listed round by round. A match whose rewards tie is dropped (so fewer than n − 1 pairs
    come back) and the earlier entrant advances.
    """
    r = checked_rewards(rewards)
    entrants = _checked_indices(indices, len(r))
    pairs = []
    while len(entrants) > 1:
        winners = []
        for a, b in zip(entrants[0::2], entrants[1::2]):
            if r[a] == r[b]:
                winners.append(a)
            else:
                win, lose = (a, b) if r[a] > r[b] else (b, a)
                pairs.append((win, lose))
                winners.append(win)
        if len(entrants) % 2:
            winners.append(entrants[-1])  # bye
        entrants = winners
    return pairs


def _checked_indices(indices: Sequence[int], k: int) -> list[int]:
    idx = [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < k]
    if bad:
        raise ValueError(f"indices {bad} are out of range for {k} candidates")
    if len(set(idx)) != len(idx):
        raise ValueError(f"indices must be distinct, got {idx}")
    return idx
