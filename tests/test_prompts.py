import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayalign.config import DataConfig
from rayalign.data.prompts import PromptDataError, build_prompts_table, read_prompts


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_builtin_set_has_hundreds_of_unique_prompts():
    rows = read_prompts("builtin:movie_reviews")
    assert len(rows) >= 300
    assert len({r["prompt_id"] for r in rows}) == len(rows) == len({r["prompt"] for r in rows})


def test_missing_file(tmp_path):
    with pytest.raises(PromptDataError, match="does not exist"):
        read_prompts(str(tmp_path / "nope.jsonl"))


def test_malformed_json_names_the_line(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", ['{"prompt": "ok"}', '{"prompt": "broken'])
    with pytest.raises(PromptDataError, match="line 2: not valid JSON"):
        read_prompts(path)


def test_empty_prompt_names_the_line(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", ['{"prompt": "ok"}', '{"prompt": "   "}'])
    with pytest.raises(PromptDataError, match="line 2: empty prompt"):
        read_prompts(path)


def test_missing_column_and_duplicate_ids(tmp_path):
    with pytest.raises(PromptDataError, match="missing column 'prompt'"):
        read_prompts(write_lines(tmp_path / "a.jsonl", ['{"text": "hello"}']))
    with pytest.raises(PromptDataError, match="duplicate prompt_id 'x'"):
        read_prompts(write_lines(tmp_path / "b.jsonl", ['{"prompt_id": "x", "prompt": "a"}',
                                                        '{"prompt_id": "x", "prompt": "b"}']))


def test_parquet_prompts_and_generated_ids(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["one", "two"]}), path)
    assert read_prompts(str(path)) == [{"prompt_id": "prompt-000000", "prompt": "one"},
                                       {"prompt_id": "prompt-000001", "prompt": "two"}]
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(PromptDataError, match="not a readable Parquet"):
        read_prompts(str(tmp_path / "bad.parquet"))


def test_split_is_stable_and_capped(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    path = write_lines(tmp_path / "p.jsonl", [json.dumps({"prompt_id": f"id{i}", "prompt": f"p {i}"})
                                              for i in range(200)])
    full = build_prompts_table(DataConfig(prompts=path, heldout_fraction=0.25), tok)
    capped = build_prompts_table(DataConfig(prompts=path, heldout_fraction=0.25, max_train_prompts=10), tok)
    split = dict(zip(full["prompt_id"].to_pylist(), full["split"].to_pylist()))
    assert 30 < list(split.values()).count("heldout") < 70
    assert capped["split"].to_pylist().count("train") == 10
    assert all(split[p] == s for p, s in zip(capped["prompt_id"].to_pylist(), capped["split"].to_pylist()))
    templated = full["prompt"][0].as_py()
    assert templated.startswith("<|im_start|>user\n") and templated.endswith("<|im_start|>assistant\n")
