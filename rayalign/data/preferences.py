"""Preference data for reward-model training: (prompt, chosen, rejected) pairs with a split."""

from __future__ import annotations

import pyarrow as pa

from rayalign.config import DataConfig
from rayalign.data.prompts import PromptDataError, in_heldout, read_records, render_prompt

PREFERENCES = pa.schema([
    ("prompt_id", pa.string()),
    ("prompt", pa.string()),   # the model input: data.instruction, chat-templated when configured
    ("split", pa.string()),    # "train" or "heldout"
    ("chosen", pa.string()),
    ("rejected", pa.string()),
])


def read_preferences(source: str, data_cfg: DataConfig, heldout_fraction: float, tokenizer) -> pa.Table:
    """A .jsonl/.parquet preference file as PREFERENCES; rows without a split are split by a hash of their id."""
    rows = read_records(source, "preferences", ("prompt", "chosen", "rejected"),
                        '{"prompt": "...", "chosen": "...", "rejected": "...", "split": "train"}')
    out = []
    for i, row in enumerate(rows):
        pid = str(row.get("prompt_id") or f"pair-{i:06d}")
        split = row.get("split") or ("heldout" if in_heldout(pid, heldout_fraction, data_cfg.seed) else "train")
        if split not in ("train", "heldout"):
            raise PromptDataError(f"{row['_where']}: split must be 'train' or 'heldout', got {split!r}")
        out.append({"prompt_id": pid, "prompt": render_prompt(data_cfg, tokenizer, row["prompt"]), "split": split,
                    "chosen": row["chosen"], "rejected": row["rejected"]})
    table = pa.Table.from_pylist(out, schema=PREFERENCES)
    for split in ("train", "heldout"):
        if split not in table["split"].to_pylist():
            raise PromptDataError(f"preference file {source!r} has no {split} pairs; add some, set their 'split', "
                                  "or change reward_model.heldout_fraction")
    return table
