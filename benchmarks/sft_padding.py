"""Padding share of SFT micro-batches with and without length bucketing, on the built-in demonstrations.

    python benchmarks/sft_padding.py [MICRO_BATCH_SIZE]

Tokenizes `sft.data` (builtin:movie_reviews) with the built-in policy's tokenizer exactly as the
sft stage does, orders it as the stage would (length-bucketed, or a plain shuffle) and prints the
share of padded positions in the resulting micro-batches.
"""

from __future__ import annotations

import sys

from transformers import AutoTokenizer

from rayalign.config import SFTConfig
from rayalign.config.loading import load_config
from rayalign.data.sft_data import build_sft_table
from rayalign.models import resolve_model
from rayalign.training.sft import length_bucketed_order


def padding_fraction(lengths: list[int], order: list[int], batch_size: int) -> float:
    """Padded positions / all positions when `order` is cut into right-padded batches."""
    total = real = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start:start + batch_size]]
        total, real = total + max(batch) * len(batch), real + sum(batch)
    return 1 - real / total


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else SFTConfig().micro_batch_size
    cfg = SFTConfig(micro_batch_size=batch)
    # The chain's data settings: its movie-review instruction renders the prompts, as in its sft stage.
    table, _ = build_sft_table(cfg, load_config("rs_dpo_chain").data,
                               AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct")))
    lengths = table["num_tokens"].to_pylist()
    bucketed = padding_fraction(lengths, length_bucketed_order(lengths, batch, cfg.seed), batch)
    shuffled = padding_fraction(lengths, length_bucketed_order(lengths, 1, cfg.seed), batch)
    print(f"{len(lengths)} examples, {min(lengths)}-{max(lengths)} tokens, micro-batch {batch}: "
          f"padding {bucketed:.1%} bucketed, {shuffled:.1%} shuffled")


if __name__ == "__main__":
    main()
