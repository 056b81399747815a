"""Read and validate a prompt set, apply the chat template, split train/held-out."""

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


class PromptDataError(ValueError):
    """A prompt file that is missing or malformed."""


def builtin_prompt_sets() -> list[str]:
    """Names usable as data.prompts=builtin:NAME."""
    folder = resources.files("rayalign.assets").joinpath("prompts")
    return sorted(p.name.removesuffix(".jsonl") for p in folder.iterdir() if p.name.endswith(".jsonl"))


def read_prompts(source: str) -> list[dict[str, str]]:
    """Rows {prompt_id, prompt} from 'builtin:NAME', a .jsonl or a .parquet file, validated."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in builtin_prompt_sets():
            raise PromptDataError(f"no built-in prompt set {name!r}; built-in sets: {builtin_prompt_sets()}")
        text = resources.files("rayalign.assets").joinpath("prompts", f"{name}.jsonl").read_text()
        rows = _parse_jsonl(text, source)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise PromptDataError(f"prompts file {source!r} does not exist; set data.prompts to a .jsonl or "
                                  ".parquet file, or builtin:movie_reviews")
        if path.suffix == ".jsonl":
            rows = _parse_jsonl(path.read_text(), source)
        elif path.suffix == ".parquet":
            try:
                rows = pq.read_table(path).to_pylist()
            except (pa.ArrowInvalid, OSError) as exc:
                raise PromptDataError(f"prompts file {source!r} is not a readable Parquet file: {exc}") from exc
        else:
            raise PromptDataError(f"prompts file {source!r}: use a .jsonl or .parquet file")
    return _validated(rows, source)


def _parse_jsonl(text: str, source: str) -> list[dict]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptDataError(f"{source}, line {lineno}: not valid JSON ({exc.msg}); "
                                  'each line must be {"prompt_id": "...", "prompt": "..."}') from None
        if not isinstance(row, dict):
            raise PromptDataError(f"{source}, line {lineno}: expected a JSON object, got {type(row).__name__}")
        row["_line"] = lineno
        rows.append(row)
    return rows


def _validated(rows: list[dict], source: str) -> list[dict[str, str]]:
    if not rows:
        raise PromptDataError(f"prompts file {source!r} holds no prompts")
    out, seen = [], set()
    for i, row in enumerate(rows):
        where = f"{source}, line {row['_line']}" if "_line" in row else f"{source}, row {i}"
        if "prompt" not in row:
            raise PromptDataError(f"{where}: missing column 'prompt' (has {sorted(k for k in row if k != '_line')})")
        prompt = row["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptDataError(f"{where}: empty prompt; remove the row or give it text")
        prompt_id = str(row["prompt_id"]) if row.get("prompt_id") is not None else f"prompt-{i:06d}"
        if prompt_id in seen:
            raise PromptDataError(f"{where}: duplicate prompt_id {prompt_id!r}; prompt ids must be unique")
        seen.add(prompt_id)
        out.append({"prompt_id": prompt_id, "prompt": prompt})
    return out


def _in_heldout(prompt_id: str, fraction: float, seed: int) -> bool:
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
        split = "heldout" if _in_heldout(row["prompt_id"], config.heldout_fraction, config.seed) else "train"
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


def split_prompts(table: pa.Table, split: str) -> pa.Table:
    """The prompt_id and prompt columns of one split ('train' or 'heldout') of a prompts table."""
    return table.filter(pc.equal(table["split"], split)).select(["prompt_id", "prompt"])
