"""Preference data for reward-model training: (prompt, chosen, rejected) pairs with a split, read
from any source and format of docs/data.md (explicit or implicit prompt, text or conversations)."""

from __future__ import annotations

from functools import partial
from typing import Any

import pyarrow as pa

from rayalign.config import DataConfig
from rayalign.data.errors import PromptDataError, data_errors
from rayalign.data.formats import SPLITS, preference_record
from rayalign.data.prompts import in_heldout, render_prompt, warn_instruction
from rayalign.data.ray_io import to_table
from rayalign.data.sources import read_rows

PREFERENCES = pa.schema([
    ("prompt_id", pa.string()),
    ("prompt", pa.string()),   # the model input: data.instruction, chat-templated when configured
    ("split", pa.string()),    # "train" or "heldout"
    ("chosen", pa.string()),
    ("rejected", pa.string()),
])


def _pair(row: dict[str, Any], data_cfg: DataConfig, tokenizer, heldout_fraction: float) -> dict[str, str]:
    record = preference_record(row)
    split = record["split"] or ("heldout" if in_heldout(record["prompt_id"], heldout_fraction, data_cfg.seed)
                                else "train")
    return {"prompt_id": record["prompt_id"], "prompt": render_prompt(data_cfg, tokenizer, record["prompt"]),
            "split": split, "chosen": record["chosen"], "rejected": record["rejected"]}


def read_preferences(source: str, data_cfg: DataConfig, heldout_fraction: float, tokenizer) -> pa.Table:
    """A preference source as PREFERENCES; rows without a split are split by a hash of their
    prompt's id, so all pairs of one prompt land in the same split."""
    warn_instruction(data_cfg, source)
    with data_errors():
        table = to_table(read_rows(source, "preferences", partial(_pair, data_cfg=data_cfg, tokenizer=tokenizer,
                                                                  heldout_fraction=heldout_fraction), PREFERENCES))
    if table.num_rows == 0:
        raise PromptDataError(f"preference source {source!r} holds no rows")
    for split in SPLITS:
        if split not in table["split"].to_pylist():
            raise PromptDataError(f"preference source {source!r} has no {split} pairs; add some, set their 'split', "
                                  "or change reward_model.heldout_fraction")
    return table
