"""Demonstrations for supervised fine-tuning: read, chat-template and tokenize (prompt, response)."""

from __future__ import annotations

import pyarrow as pa

from rayalign.config import DataConfig, SFTConfig
from rayalign.data import schemas
from rayalign.data.prompts import PromptDataError, prompt_token_ids, read_records, render_prompt

SFT = pa.schema([
    ("prompt", pa.string()),
    ("response", pa.string()),
    ("prompt_token_ids", schemas.TOKEN_IDS),
    ("response_token_ids", schemas.TOKEN_IDS),  # the response and the end-of-sequence token
    ("num_tokens", pa.int32()),                  # prompt + response tokens after truncation
])


def build_sft_table(sft_cfg: SFTConfig, data_cfg: DataConfig, tokenizer) -> tuple[pa.Table, int]:
    """(SFT table, examples dropped because the prompt alone exceeds sft.max_seq_len).

    Prompt and response are tokenized apart, as vLLM continues a tokenized prompt; the
    response gets the end-of-sequence token so the model learns to stop, and is cut to fit.
    """
    rows = read_records(sft_cfg.data, "sft", ("prompt", "response"), '{"prompt": "...", "response": "..."}')
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out, dropped = [], 0
    for row in rows:
        prompt = render_prompt(data_cfg, tokenizer, row["prompt"])
        prompt_ids = prompt_token_ids(tokenizer, [prompt])[0]
        room = sft_cfg.max_seq_len - len(prompt_ids)
        if room < 1:
            dropped += 1
            continue
        response_ids = (tokenizer(row["response"], add_special_tokens=False)["input_ids"] + eos)[:room]
        out.append({"prompt": prompt, "response": row["response"], "prompt_token_ids": prompt_ids,
                    "response_token_ids": response_ids, "num_tokens": len(prompt_ids) + len(response_ids)})
    if not out:
        raise PromptDataError(f"no demonstration in {sft_cfg.data!r} fits sft.max_seq_len={sft_cfg.max_seq_len}: "
                              "every templated prompt is longer; raise sft.max_seq_len")
    return pa.Table.from_pylist(out, schema=SFT), dropped
