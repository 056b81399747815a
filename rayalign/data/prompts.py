"""Read and validate prompt sets and other JSONL/Parquet data files, apply the chat template, split."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayalign.config import DataConfig
from rayalign.data import schemas
from rayalign.data.errors import PromptDataError


def builtin_sets(kind: str) -> list[str]:
    """Names usable as 'builtin:NAME' for a kind of data: 'prompts', 'sft'."""
    folder = resources.files("rayalign.assets").joinpath(kind)
    return sorted(p.name.removesuffix(".jsonl") for p in folder.iterdir() if p.name.endswith(".jsonl"))


def builtin_prompt_sets() -> list[str]:
    """Names usable as data.prompts=builtin:NAME."""
    return builtin_sets("prompts")


def read_records(source: str, kind: str, columns: tuple[str, ...], example: str) -> list[dict]:
    """Rows of 'builtin:NAME' (rayalign/assets/<kind>), a .jsonl or a .parquet file whose `columns`
    are all non-empty strings; errors name the file, the line and the fix (`example` is a valid row)."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in builtin_sets(kind):
            raise PromptDataError(f"no built-in {kind} set {name!r}; built-in sets: {builtin_sets(kind)}")
        rows = _parse_jsonl(resources.files("rayalign.assets").joinpath(kind, f"{name}.jsonl").read_text(),
                            source, example)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise PromptDataError(f"{kind} file {source!r} does not exist; give a .jsonl or .parquet file"
                                  + (f" or one of builtin:{', builtin:'.join(builtin_sets(kind))}"
                                     if builtin_sets(kind) else ""))
        if path.suffix == ".jsonl":
            rows = _parse_jsonl(path.read_text(), source, example)
        elif path.suffix == ".parquet":
            try:
                rows = pq.read_table(path).to_pylist()
            except (pa.ArrowInvalid, OSError) as exc:
                raise PromptDataError(f"{kind} file {source!r} is not a readable Parquet file: {exc}") from exc
        else:
            raise PromptDataError(f"{kind} file {source!r}: use a .jsonl or .parquet file")
    if not rows:
        raise PromptDataError(f"{kind} file {source!r} holds no rows")
    for i, row in enumerate(rows):
        where = f"{source}, line {row['_line']}" if "_line" in row else f"{source}, row {i}"
        row["_where"] = where
        for column in columns:
            if column not in row:
                raise PromptDataError(f"{where}: missing column {column!r} (has "
                                      f"{sorted(k for k in row if not k.startswith('_'))}); rows look like {example}")
            value = row[column]
            if not isinstance(value, str) or not value.strip():
                raise PromptDataError(f"{where}: empty {column}; remove the row or give it text")
    return rows


def read_prompts(source: str) -> list[dict[str, str]]:
    """Rows {prompt_id, prompt} from 'builtin:NAME', a .jsonl or a .parquet file, validated."""
    rows = read_records(source, "prompts", ("prompt",), '{"prompt_id": "...", "prompt": "..."}')
    out, seen = [], set()
    for i, row in enumerate(rows):
        prompt_id = str(row["prompt_id"]) if row.get("prompt_id") is not None else f"prompt-{i:06d}"
        if prompt_id in seen:
            raise PromptDataError(f"{row['_where']}: duplicate prompt_id {prompt_id!r}; prompt ids must be unique")
        seen.add(prompt_id)
        out.append({"prompt_id": prompt_id, "prompt": row["prompt"]})
    return out


def _parse_jsonl(text: str, source: str, example: str) -> list[dict]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptDataError(f"{source}, line {lineno}: not valid JSON ({exc.msg}); "
                                  f"each line must be {example}") from None
        if not isinstance(row, dict):
            raise PromptDataError(f"{source}, line {lineno}: expected a JSON object, got {type(row).__name__}")
        row["_line"] = lineno
        rows.append(row)
    return rows


def in_heldout(prompt_id: str, fraction: float, seed: int) -> bool:
    # Hash-based so a prompt's split never depends on the file's order or size.
    digest = hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build_prompts_table(config: DataConfig, tokenizer) -> pa.Table:
    """The prompts stage's table: templated prompt, raw prompt and split, capped per split."""
    rows = read_prompts(config.prompts)
    caps = {"train": config.max_train_prompts, "heldout": config.max_heldout_prompts}
    counts = {"train": 0, "heldout": 0}
    out = []
    for row in rows:
        split = "heldout" if in_heldout(row["prompt_id"], config.heldout_fraction, config.seed) else "train"
        if caps[split] is not None and counts[split] >= caps[split]:
            continue
        counts[split] += 1
        out.append({"prompt_id": row["prompt_id"], "prompt": render_prompt(config, tokenizer, row["prompt"]),
                    "raw_prompt": row["prompt"], "split": split})
    for split, n in counts.items():
        if n == 0:
            raise PromptDataError(f"the {split} split is empty ({len(rows)} prompts, heldout_fraction="
                                  f"{config.heldout_fraction}); add prompts or change data.heldout_fraction")
    return pa.Table.from_pylist(out, schema=schemas.PROMPTS)


def render_prompt(config: DataConfig, tokenizer, prompt: str) -> str:
    """The model input for one prompt: the instruction, chat-templated when configured."""
    message = config.instruction.replace("{prompt}", prompt)
    if not config.chat_template:
        return message
    if tokenizer.chat_template is None:
        raise PromptDataError("data.chat_template is true but the policy's tokenizer has no chat template; "
                              "set data.chat_template=false")
    return tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                         add_generation_prompt=True)


def prompt_token_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of rendered prompts, the same for sampling and every training stage: the chat
    template already holds whatever special tokens the model expects, so the tokenizer adds none."""
    return tokenizer(prompts, add_special_tokens=False)["input_ids"]


def split_prompts(table: pa.Table, split: str) -> pa.Table:
    """The prompt_id and prompt columns of one split ('train' or 'heldout') of a prompts table."""
    return table.filter(pc.equal(table["split"], split)).select(["prompt_id", "prompt"])
