"""Pair-construction strategies: pure functions over one prompt's scored candidates."""

from rayalign.selection.best_vs_worst import best_vs_worst
from rayalign.selection.rs_dpo import rs_dpo_pairs

__all__ = ["best_vs_worst", "rs_dpo_pairs"]
