"""Pair-construction strategies: pure functions over one prompt's scored candidates."""

from rayalign.selection.best_vs_worst import best_vs_worst
from rayalign.selection.pairwise_ranking import CountingCompare, judge_compare, pairwise_ranking, reward_compare
from rayalign.selection.perplexity import perplexity_filter
from rayalign.selection.random_pair import random_pair
from rayalign.selection.rs_dpo import rs_dpo_pairs
from rayalign.selection.rso import rso_sample
from rayalign.selection.tournament import first_round_pairs, tournament_pairs

__all__ = [
    "CountingCompare",
    "best_vs_worst",
    "first_round_pairs",
    "judge_compare",
    "pairwise_ranking",
    "perplexity_filter",
    "random_pair",
    "reward_compare",
    "rs_dpo_pairs",
    "rso_sample",
    "tournament_pairs",
]
