"""The prompt set: read from any source and format of docs/data.md, rendered with the instruction
and the chat template, split into training and held-out prompts by a hash of each id."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from rayalign.config import DataConfig
from rayalign.data import schemas
from rayalign.data.errors import PromptDataError, data_errors
from rayalign.data.formats import SPLITS, RowError, Text, prompt_record, raw_text
from rayalign.data.parquet import parquet_rows, read_table
from rayalign.data.ray_io import write
from rayalign.data.sources import read_rows


def in_heldout(prompt_id: str, fraction: float, seed: int) -> bool:
    # Hash-based so a prompt's split never depends on the file's order or size.
    digest = hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def render_prompt(config: DataConfig, tokenizer, prompt: Text) -> str:
    """The model input for one prompt. Text is wrapped in data.instruction; text and conversations
    then go through the policy's chat template when data.chat_template and the policy has one.
    A conversation is used as given: it needs the template, and the instruction does not touch it."""
    templated = config.chat_template and tokenizer.chat_template is not None
    if isinstance(prompt, str):
        message = config.instruction.replace("{prompt}", prompt)
        if not templated:
            return message
        prompt = [{"role": "user", "content": message}]
    elif not templated:
        raise RowError("the prompt is a conversation, which needs a chat template, but "
                       + ("data.chat_template is false" if not config.chat_template
                          else "the policy's tokenizer has none")
                       + "; give the prompt as text or use a policy with a chat template")
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def warn_instruction(config: DataConfig, source: str) -> None:
    """Say so when data.instruction rewrites prompts of the user's own data: the movie-review
    instruction of the presets must not reword other data unnoticed."""
    if config.instruction != "{prompt}" and not source.startswith("builtin:"):
        warnings.warn(f"data.instruction wraps every text prompt of {source!r} in {config.instruction!r}; "
                      "set data.instruction to '{prompt}' to use the prompts as given (on the command line: "
                      "\"data.instruction='{prompt}'\")", stacklevel=3)


def _prompt_row(row: dict[str, Any], config: DataConfig, tokenizer, context: int | None) -> dict[str, str]:
    record = prompt_record(row)
    split = "heldout" if in_heldout(record["prompt_id"], config.heldout_fraction, config.seed) else "train"
    prompt = render_prompt(config, tokenizer, record["prompt"])
    if context is not None:
        # vLLM refuses a prompt that leaves no room in its context, and would fail the whole stage.
        tokens = len(prompt_token_ids(tokenizer, [prompt])[0])
        if tokens >= context:
            raise RowError(f"the prompt is {tokens} tokens (with the instruction and chat template), which leaves "
                           f"no room for a response in sample.max_model_len={context}; shorten or remove it, or "
                           "raise sample.max_model_len")
    return {"prompt_id": record["prompt_id"], "prompt": prompt, "raw_prompt": raw_text(record["prompt"]),
            "split": split}


def prompts_dataset(config: DataConfig, tokenizer, context: int | None = None) -> ray.data.Dataset:
    """Every prompt of data.prompts as a row of the prompts stage (schemas.PROMPTS): a lazy Ray
    dataset in file order; a prompt of `context` tokens or more (sample.max_model_len) is an error.
    Execute it under errors.data_errors()."""
    warn_instruction(config, config.prompts)
    return read_rows(config.prompts, "prompts",
                     partial(_prompt_row, config=config, tokenizer=tokenizer, context=context), schemas.PROMPTS)


def first_prompts(config: DataConfig, tokenizer, context: int | None = None) -> Iterator[pa.Table]:
    """The prompts stage's rows batch by batch in file order, up to data.max_train_prompts and
    data.max_heldout_prompts of each split: the first prompts of each. The rows stream through the
    driver, which stops the read once every split is full. Iterate under errors.data_errors()."""
    caps = {"train": config.max_train_prompts, "heldout": config.max_heldout_prompts}
    taken = dict.fromkeys(SPLITS, 0)
    for batch in prompts_dataset(config, tokenizer, context).iter_batches(batch_format="pyarrow", batch_size=None):
        keep = []
        for split in batch["split"].to_pylist():
            keep.append(caps[split] is None or taken[split] < caps[split])
            taken[split] += keep[-1]
        yield batch.filter(pa.array(keep, pa.bool_()))
        if all(cap is not None and taken[split] >= cap for split, cap in caps.items()):
            return


def write_prompts(config: DataConfig, tokenizer, out: Path, context: int | None = None) -> dict[str, int]:
    """Write the prompts stage's rows into `out` as Parquet and check them (ids unique, neither
    split empty); the number of prompts of each split. Only ids and splits come to the driver,
    and with data.max_*_prompts the rows the caps keep."""
    with data_errors():
        if config.max_train_prompts is None and config.max_heldout_prompts is None:
            write(prompts_dataset(config, tokenizer, context), out)  # in parallel, from the read tasks
        else:
            out.mkdir(parents=True, exist_ok=True)
            with pq.ParquetWriter(out / "prompts.parquet", schemas.PROMPTS) as writer:
                for table in first_prompts(config, tokenizer, context):
                    writer.write_table(table)
    if parquet_rows(out) == 0:
        raise PromptDataError(f"prompts source {config.prompts!r} holds no rows")
    written = read_table(out, columns=["prompt_id", "split"])
    ids = pc.value_counts(written["prompt_id"])
    duplicates = ids.filter(pc.greater(ids.field("counts"), 1))
    if len(duplicates):
        raise PromptDataError(f"prompts source {config.prompts!r}: duplicate prompt_id "
                              f"{duplicates[0]['values'].as_py()!r}; prompt ids must be unique (a row without one gets "
                              "an id from its text, so the same prompt twice has the same id)")
    counts = {split: pc.sum(pc.equal(written["split"], split)).as_py() or 0 for split in SPLITS}
    for split, n in counts.items():
        if n == 0:
            raise PromptDataError(f"the {split} split is empty ({written.num_rows} prompts, heldout_fraction="
                                  f"{config.heldout_fraction}); add prompts or change data.heldout_fraction")
    return counts


def prompt_token_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of rendered prompts, the same for sampling and every training stage: the chat
    template already holds whatever special tokens the model expects, so the tokenizer adds none."""
    return tokenizer(prompts, add_special_tokens=False)["input_ids"]


def split_prompts(table: pa.Table, split: str) -> pa.Table:
    """The prompt_id and prompt columns of one split ('train' or 'heldout') of a prompts table."""
    return table.filter(pc.equal(table["split"], split)).select(["prompt_id", "prompt"])
