"""Arrow schemas of the stage datasets; each stage adds columns to its input's (docs/architecture.md lists them)."""

import pyarrow as pa

TOKEN_IDS = pa.list_(pa.int32())

PROMPTS = pa.schema([
    ("prompt_id", pa.string()),
    ("prompt", pa.string()),       # the model input: chat-templated when data.chat_template
    ("raw_prompt", pa.string()),   # the prompt as the user gave it
    ("split", pa.string()),        # "train" or "heldout"
])

SAMPLE = pa.schema([
    ("prompt_id", pa.string()),
    ("prompt", pa.string()),
    ("prompt_token_ids", TOKEN_IDS),
    ("sample_idx", pa.int32()),
    ("response", pa.string()),
    ("response_token_ids", TOKEN_IDS),
    ("sampler_logprob", pa.float64()),
    ("num_tokens", pa.int32()),
    ("finish_reason", pa.string()),
])

REFERENCE = SAMPLE.append(pa.field("ref_logprob", pa.float64()))

SCORE = REFERENCE.append(pa.field("reward", pa.float64())).append(pa.field("reward_model", pa.string()))

PAIRS = pa.schema([
    ("prompt_id", pa.string()),
    ("prompt", pa.string()),
    ("prompt_token_ids", TOKEN_IDS),
    ("chosen", pa.string()),
    ("rejected", pa.string()),
    ("chosen_token_ids", TOKEN_IDS),
    ("rejected_token_ids", TOKEN_IDS),
    ("chosen_reward", pa.float64()),
    ("rejected_reward", pa.float64()),
    ("chosen_ref_logprob", pa.float64()),
    ("rejected_ref_logprob", pa.float64()),
    ("strategy", pa.string()),
])

# A policy's held-out samples scored by the gold reward (evaluate_sft).
HELDOUT = pa.schema([
    ("prompt_id", pa.string()),
    ("prompt", pa.string()),
    ("sample_idx", pa.int32()),
    ("response", pa.string()),
    ("num_tokens", pa.int32()),
    ("finish_reason", pa.string()),
    ("reward", pa.float64()),
])

EVALUATE = pa.schema([
    ("prompt_id", pa.string()),
    ("prompt", pa.string()),
    ("sample_idx", pa.int32()),
    ("sft_response", pa.string()),
    ("aligned_response", pa.string()),
    ("sft_reward", pa.float64()),
    ("aligned_reward", pa.float64()),
    ("kl", pa.float64()),  # log π_aligned(y) − log π_ref(y), y the aligned response
])


def require_columns(table: pa.Table, schema: pa.Schema, what: str) -> None:
    """Raise a clear error naming the columns `table` lacks for `schema`."""
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {table.column_names}")
