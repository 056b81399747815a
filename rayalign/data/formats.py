"""The dataset formats users already have (TRL's; docs/data.md): each recognised from a row's
columns and normalised to what rayalign reads. Pure functions over one row: no tokenizer, no I/O."""

from __future__ import annotations

import hashlib
import json
from typing import Any

Message = dict[str, str]
Text = str | list[Message]  # standard text, or a conversation of {role, content} messages

# The formats of each kind of data and the columns that identify them, tried in this order.
FORMATS: dict[str, dict[str, tuple[str, ...]]] = {
    "prompts": {"prompt-only": ("prompt",)},
    "preferences": {"explicit prompt": ("prompt", "chosen", "rejected"), "implicit prompt": ("chosen", "rejected")},
    "sft": {"prompt-completion": ("prompt", "completion"), "prompt-response": ("prompt", "response"),
            "conversational": ("messages",), "language modeling": ("text",)},
}
# One valid row of each kind, for error messages; docs/data.md has one of every format.
EXAMPLES = {
    "prompts": '{"prompt_id": "...", "prompt": "..."}',
    "preferences": '{"prompt": "...", "chosen": "...", "rejected": "..."}',
    "sft": '{"prompt": "...", "completion": "..."}',
}
SPLITS = ("train", "heldout")


class RowError(ValueError):
    """What is wrong with one row; the reader adds where the row is."""


def detect(kind: str, row: dict[str, Any]) -> str:
    """The first format of `kind` whose columns the row has; otherwise a RowError naming the
    column that the nearest format lacks. A null is no value: a Parquet file that mixes formats
    has every column in every row, null where a row's format does not use it."""
    formats, present = FORMATS[kind], {k for k, v in row.items() if v is not None}
    for name, columns in formats.items():
        if present.issuperset(columns):
            return name
    nearest = max(formats.values(), key=lambda columns: len(present.intersection(columns)))
    missing = next(c for c in nearest if c not in present)
    if missing in row:
        raise RowError(f"empty {missing}; remove the row or give it text")
    raise RowError(f"missing column {missing!r} (has {sorted(present)}); rows look like {EXAMPLES[kind]} "
                   "or another format of docs/data.md")


def as_text(value: Any, column: str) -> Text:
    """A column's value as text or as a conversation (messages reduced to role and content)."""
    if value is None or value == "" or value == [] or (isinstance(value, str) and not value.strip()):
        raise RowError(f"empty {column}; remove the row or give it text")
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise RowError(f"{column} must be text or a list of {{role, content}} messages, got {type(value).__name__}")
    messages = []
    for i, message in enumerate(value, 1):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise RowError(f"{column}: message {i} must look like {{\"role\": \"user\", \"content\": \"...\"}}, "
                           f"got {json.dumps(message, default=str)[:80]}")
        if not message["content"].strip():
            raise RowError(f"{column}: message {i} ({message['role']}) is empty; remove it or give it text")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def as_completion(text: Text, column: str) -> str:
    """A completion (chosen, rejected, completion) as the response text: text as given, or the
    content of a conversation's one assistant message."""
    if isinstance(text, str):
        return text
    if len(text) != 1 or text[0]["role"] != "assistant":
        raise RowError(f"{column} must be text or one assistant message, got the roles "
                       f"{[m['role'] for m in text]}")
    return text[0]["content"]


def implicit_prompt(chosen: Text, rejected: Text) -> tuple[Text, Text, Text]:
    """(prompt, chosen, rejected) from two completions that share their prompt: the longest common
    prefix, of characters or of messages. As TRL's extract_prompt, a space just before the point
    where they differ stays with the completions ("The sky is" + " blue.")."""
    if isinstance(chosen, str) != isinstance(rejected, str):
        raise RowError("chosen and rejected must both be text or both be conversations")
    split = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), None)
    if split is None:
        raise RowError("chosen and rejected do not differ after a shared prompt (one is the start of the "
                       "other); give different completions")
    if isinstance(chosen, str) and split > 0 and chosen[split - 1] == " ":
        split -= 1
    if split == 0:
        raise RowError("chosen and rejected share no prompt (they differ from the start); give a prompt column")
    return chosen[:split], chosen[split:], rejected[split:]


def text_id(prefix: str, text: Text) -> str:
    """An id from the text itself, for rows without one: the same wherever and whenever the row
    is read, so a streamed read and the split by id do not depend on the row's position."""
    blob = text if isinstance(text, str) else json.dumps(text, sort_keys=True, ensure_ascii=False)
    return f"{prefix}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def raw_text(text: Text) -> str:
    """A prompt as one string as the user gave it: text, or a conversation as JSON."""
    return text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)


def _given_id(row: dict[str, Any]) -> str | None:
    value = row.get("prompt_id")
    return None if value is None or value == "" else str(value)


def prompt_record(row: dict[str, Any]) -> dict[str, Any]:
    """{prompt_id, prompt} of a prompt-only row: `prompt` text or a conversation."""
    detect("prompts", row)
    prompt = as_text(row["prompt"], "prompt")
    return {"prompt_id": _given_id(row) or text_id("prompt", prompt), "prompt": prompt}


def preference_record(row: dict[str, Any]) -> dict[str, Any]:
    """{prompt_id, prompt, chosen, rejected, split} of a preference row with an explicit or an
    implicit prompt; pairs of one prompt share its id, so a split by id keeps them together."""
    if detect("preferences", row) == "explicit prompt":
        prompt, chosen, rejected = (as_text(row["prompt"], "prompt"), as_text(row["chosen"], "chosen"),
                                    as_text(row["rejected"], "rejected"))
    else:
        prompt, chosen, rejected = implicit_prompt(as_text(row["chosen"], "chosen"),
                                                   as_text(row["rejected"], "rejected"))
    split = row.get("split") or None
    if split is not None and split not in SPLITS:
        raise RowError(f"split must be 'train' or 'heldout', got {split!r}")
    return {"prompt_id": _given_id(row) or text_id("prompt", prompt), "prompt": prompt,
            "chosen": as_completion(chosen, "chosen"), "rejected": as_completion(rejected, "rejected"),
            "split": split}


def sft_record(row: dict[str, Any]) -> dict[str, Any]:
    """{prompt, completion} of a demonstration: prompt-completion (or prompt-response), a
    conversation whose final assistant message is the completion, or plain text (prompt None:
    the whole text is learned)."""
    form = detect("sft", row)
    if form == "language modeling":
        text = as_text(row["text"], "text")
        if not isinstance(text, str):
            raise RowError("text must be a string; a conversation goes in a messages column")
        return {"prompt": None, "completion": text}
    if form == "conversational":
        messages = as_text(row["messages"], "messages")
        if isinstance(messages, str) or messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise RowError("messages must be a conversation that ends with the assistant message to learn, "
                           "after at least one message before it")
        return {"prompt": messages[:-1], "completion": messages[-1]["content"]}
    column = "completion" if form == "prompt-completion" else "response"
    return {"prompt": as_text(row["prompt"], "prompt"),
            "completion": as_completion(as_text(row[column], column), column)}
