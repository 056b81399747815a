"""Demonstrations for supervised fine-tuning: read (any source and format of docs/data.md),
chat-template and tokenize (prompt, completion)."""

from __future__ import annotations

from functools import partial
from typing import Any

import pyarrow as pa

from rayalign.config import DataConfig, SFTConfig
from rayalign.data import schemas
from rayalign.data.errors import PromptDataError, data_errors
from rayalign.data.formats import sft_record
from rayalign.data.prompts import prompt_token_ids, render_prompt, warn_instruction
from rayalign.data.ray_io import to_table
from rayalign.data.sources import read_rows

DEMONSTRATIONS = pa.schema([("prompt", pa.string()), ("completion", pa.string())])  # prompt rendered

SFT = pa.schema([
    ("prompt", pa.string()),
    ("response", pa.string()),
    ("prompt_token_ids", schemas.TOKEN_IDS),
    ("response_token_ids", schemas.TOKEN_IDS),  # the response and the end-of-sequence token
    ("num_tokens", pa.int32()),                  # prompt + response tokens after truncation
])


def _demonstration(row: dict[str, Any], data_cfg: DataConfig, tokenizer) -> dict[str, str]:
    record = sft_record(row)
    # Plain text is learned whole, after the BOS token where the model has one.
    prompt = ((tokenizer.bos_token or "") if record["prompt"] is None
              else render_prompt(data_cfg, tokenizer, record["prompt"]))
    return {"prompt": prompt, "completion": record["completion"]}


def build_sft_table(sft_cfg: SFTConfig, data_cfg: DataConfig, tokenizer) -> tuple[pa.Table, int]:
    """(SFT table, examples dropped because the prompt alone exceeds sft.max_seq_len).

    Prompt and completion are tokenized apart, as vLLM continues a tokenized prompt; the
    completion gets the end-of-sequence token so the model learns to stop, and is cut to fit.
    """
    warn_instruction(data_cfg, sft_cfg.data)
    with data_errors():
        rows = to_table(read_rows(sft_cfg.data, "sft", partial(_demonstration, data_cfg=data_cfg, tokenizer=tokenizer),
                                  DEMONSTRATIONS)).to_pylist()
    if not rows:
        raise PromptDataError(f"sft source {sft_cfg.data!r} holds no rows")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out, dropped = [], 0
    for row in rows:
        prompt_ids = prompt_token_ids(tokenizer, [row["prompt"]])[0]
        room = sft_cfg.max_seq_len - len(prompt_ids)
        if room < 1:
            dropped += 1
            continue
        response_ids = (tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + eos)[:room]
        out.append({"prompt": row["prompt"], "response": row["completion"], "prompt_token_ids": prompt_ids,
                    "response_token_ids": response_ids, "num_tokens": len(prompt_ids) + len(response_ids)})
    if not out:
        raise PromptDataError(f"no demonstration in {sft_cfg.data!r} fits sft.max_seq_len={sft_cfg.max_seq_len}: "
                              "every templated prompt is longer; raise sft.max_seq_len")
    return pa.Table.from_pylist(out, schema=SFT), dropped
