"""Prompt sets, read by real Ray Data reads of files written here (tests/test_sources.py: every
source): conversational prompts, rendering, the split and its caps, errors that name the file and
line, and the built-in set under the presets unchanged."""

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayalign.config import DataConfig
from rayalign.data import schemas
from rayalign.data.errors import data_errors
from rayalign.data.parquet import read_table
from rayalign.data.prompts import PromptDataError, first_prompts, prompts_dataset, write_prompts
from rayalign.data.ray_io import to_table

USER = {"role": "user", "content": "What color is the sky?"}
TEMPLATED = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"  # tests/conftest.py's chat template


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def read(source, tokenizer=None, **data):
    """The prompts table of `source`, as the prompts stage renders and caps it (by default the
    prompts as they are: no instruction, no chat template)."""
    config = DataConfig(prompts=source, **{"chat_template": False, "instruction": "{prompt}", **data})
    with data_errors():
        return pa.concat_tables([schemas.PROMPTS.empty_table(), *first_prompts(config, tokenizer)])


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_builtin_set_has_hundreds_of_unique_prompts(ray_local):
    rows = read("builtin:movie_reviews").to_pylist()
    assert len(rows) >= 300
    assert len({r["prompt_id"] for r in rows}) == len(rows) == len({r["raw_prompt"] for r in rows})


def test_malformed_json_names_the_line(ray_local, tmp_path):
    path = write_lines(tmp_path / "p.jsonl", ['{"prompt": "ok"}', '{"prompt": "broken'])
    with pytest.raises(PromptDataError, match="p.jsonl, line 2: not valid JSON"):
        read(path)


def test_empty_prompt_names_the_line(ray_local, tmp_path):
    path = write_lines(tmp_path / "p.jsonl", ['{"prompt": "ok"}', "", '{"prompt": "   "}'])
    with pytest.raises(PromptDataError, match=r"p.jsonl, line 3: empty prompt; remove the row or give it text$"):
        read(path)
    (tmp_path / "none.jsonl").write_text("\n")
    with pytest.raises(PromptDataError, match="none.jsonl' holds no rows"):
        write_prompts(DataConfig(prompts=str(tmp_path / "none.jsonl"), chat_template=False), None, tmp_path / "out")


def test_missing_column_and_duplicate_ids(ray_local, tmp_path):
    with pytest.raises(PromptDataError, match="line 1: missing column 'prompt'"):
        read(write_lines(tmp_path / "a.jsonl", ['{"text": "hello"}']))
    path = write_lines(tmp_path / "b.jsonl", ['{"prompt_id": "x", "prompt": "a"}', '{"prompt_id": "x", "prompt": "b"}'])
    with pytest.raises(PromptDataError, match="duplicate prompt_id 'x'; prompt ids must be unique"):
        write_prompts(DataConfig(prompts=path, chat_template=False), None, tmp_path / "out")


def test_parquet_prompts_and_generated_ids(ray_local, tmp_path):
    # Rows without an id get one from their text, wherever they sit in the file.
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["one", "two"]}), path)
    ids = ["prompt-" + hashlib.sha256(text.encode()).hexdigest()[:16] for text in ("one", "two")]
    assert read(str(path)).select(["prompt_id", "prompt"]).to_pylist() == [
        {"prompt_id": ids[0], "prompt": "one"}, {"prompt_id": ids[1], "prompt": "two"}]


def test_conversational_prompts_are_templated_not_empty(ray_local, tmp_path, tok):
    # The bug: a list of messages used to fail as an "empty prompt".
    system = {"role": "system", "content": "Answer in one word."}
    lines = [json.dumps({"prompt_id": "q", "prompt": [system, USER]}), json.dumps({"prompt_id": "t", "prompt": "Hi"})]
    path = write_lines(tmp_path / "chat.jsonl", lines)
    with pytest.warns(UserWarning, match="data.instruction wraps every text prompt"):
        rows = read(path, tok, chat_template=True, instruction="Say: {prompt}").to_pylist()
    assert rows[0]["prompt"] == ("<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\n"
                                 "What color is the sky?<|im_end|>\n<|im_start|>assistant\n")
    assert json.loads(rows[0]["raw_prompt"]) == [system, USER]
    assert rows[1]["prompt"] == TEMPLATED.format("Say: Hi")  # the instruction wraps text prompts only
    pq.write_table(pa.Table.from_pylist([{"prompt": [USER]}]), tmp_path / "chat.parquet")  # list<struct> column
    assert read(str(tmp_path / "chat.parquet"), tok, chat_template=True)["prompt"][0].as_py() == TEMPLATED.format(
        USER["content"])
    with pytest.raises(PromptDataError, match="chat.jsonl, line 1: the prompt is a conversation, which needs a chat "
                                              "template, but data.chat_template is false; give the prompt as text"):
        read(path, tok, chat_template=False)


def test_user_prompts_are_used_as_given(ray_local, tmp_path, tok):
    path = write_lines(tmp_path / "p.jsonl", ['{"prompt": "Write a haiku about rain."}'])
    # The default instruction leaves the prompt alone: no movie-review task around user data.
    assert DataConfig().instruction == "{prompt}"
    with data_errors():
        rendered = to_table(prompts_dataset(DataConfig(prompts=path), tok))["prompt"][0].as_py()
    assert rendered == TEMPLATED.format("Write a haiku about rain.")
    # A policy without a chat template gets the text itself.
    tok_plain = tok.__class__.from_pretrained(tok.name_or_path)
    tok_plain.chat_template = None
    with data_errors():
        plain = to_table(prompts_dataset(DataConfig(prompts=path), tok_plain))["prompt"][0].as_py()
    assert plain == "Write a haiku about rain."
    with pytest.warns(UserWarning, match="data.instruction wraps every text prompt of .*p.jsonl"):
        prompts_dataset(DataConfig(prompts=path, instruction="Review: {prompt}"), tok)


def test_split_is_stable_and_capped(ray_local, tmp_path, tok):
    lines = [json.dumps({"prompt_id": f"id{i}", "prompt": f"p {i}"}) for i in range(200)]
    path = write_lines(tmp_path / "p.jsonl", lines)
    full = read(path, heldout_fraction=0.25)
    capped = read(path, heldout_fraction=0.25, max_train_prompts=10)
    split = dict(zip(full["prompt_id"].to_pylist(), full["split"].to_pylist()))
    assert 30 < list(split.values()).count("heldout") < 70
    assert capped["split"].to_pylist().count("train") == 10
    assert all(split[p] == s for p, s in zip(capped["prompt_id"].to_pylist(), capped["split"].to_pylist()))
    # The cap keeps the first training prompts of the file, and the rows keep the file's order.
    ids = full["prompt_id"].to_pylist()
    first_train = [p for p in ids if split[p] == "train"][:10]
    assert capped["prompt_id"].to_pylist() == [p for p in ids if split[p] == "heldout" or p in first_train]
    # The same prompts in four Parquet parts, read as parallel streams: the same rows, splits and caps.
    table = pa.Table.from_pylist([json.loads(line) for line in lines])
    (tmp_path / "parts").mkdir()
    for part in range(4):
        pq.write_table(table.slice(50 * part, 50), tmp_path / "parts" / f"part-{part}.parquet")
    assert read(str(tmp_path / "parts"), heldout_fraction=0.25).equals(full)
    assert read(str(tmp_path / "parts"), heldout_fraction=0.25, max_train_prompts=10).equals(capped)
    counts = write_prompts(DataConfig(prompts=path, heldout_fraction=0.25, max_heldout_prompts=5, chat_template=True),
                           tok, tmp_path / "out")
    written = read_table(tmp_path / "out")
    assert counts == {"train": written.num_rows - 5, "heldout": 5}
    templated = written["prompt"][0].as_py()
    assert templated.startswith("<|im_start|>user\n") and templated.endswith("<|im_start|>assistant\n")
    with pytest.raises(PromptDataError, match=r"split is empty \(1 prompts, heldout_fraction=0.2\)"):
        write_prompts(DataConfig(prompts=write_lines(tmp_path / "one.jsonl", ['{"prompt_id": "id1", "prompt": "x"}']),
                                 chat_template=False), None, tmp_path / "out1")


def test_movie_reviews_prompts_of_the_presets_are_unchanged(ray_local, tmp_path, tok):
    """Prompt ids, text and split of builtin:movie_reviews under the default preset, and the cache keys
    of the presets' prompts and sft stages, as the code before user data formats made them: cached
    runs stay valid and recorded results comparable."""
    from rayalign.config import load_config
    from rayalign.data.sft_data import build_sft_table
    from rayalign.pipeline.graph import cache_keys, plan
    from rayalign.pipeline.stages import PIPELINE

    def digest(rows):
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()

    write_prompts(load_config("default").data, tok, tmp_path / "prompts")
    prompts = read_table(tmp_path / "prompts")
    assert prompts.num_rows == 128
    assert digest(prompts.to_pylist()) == "c5f7b79255fd3d0a0b3cb5d7dc299c342bb9266289e8c18ddeeea13ecd069725"
    chain = load_config("rs_dpo_chain")
    sft, _ = build_sft_table(chain.sft, chain.data, tok)
    assert digest(sft.select(["prompt", "response"]).to_pylist()) == (
        "c653cf18ecc6f4cf4017f85bdae62aece1ff306c28e029be640b02bad39fa245")
    keys = {name: cache_keys(plan(load_config(name), PIPELINE), load_config(name))
            for name in ("default", "gpu", "rs_dpo_chain", "ppo", "ppo_gpu")}
    assert {name: k["prompts"] for name, k in keys.items()} == {
        "default": "416ec028af61ce56", "gpu": "3826258335b1c2e5", "rs_dpo_chain": "416ec028af61ce56",
        "ppo": "416ec028af61ce56", "ppo_gpu": "3826258335b1c2e5"}
    assert keys["rs_dpo_chain"]["sft"] == "97a7ce048f3ca0ea"
