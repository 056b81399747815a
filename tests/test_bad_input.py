"""What a user really types wrong, table-driven: each case is one `rayalign run` (or `track`) that
stops with one clear message — what is wrong, where (file and line where there is one) and the
fix — exit code 2, no traceback, and the run directory's completed stages untouched."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rayalign.cli import main
from tests.conftest import free_port


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Path, str], list[str]]  # (a folder for the case's files, the tiny model) -> what follows `run`
    says: tuple[str, ...]  # every one of these in the message
    ray: bool = False  # found once the pipeline runs (Ray started), not before


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def default(m: str, *args: str) -> list[str]:
    """The default preset on the tiny policy `m`, and `args`."""
    return ["default", f"model.policy={m}", *args]


def prompts(d: Path, m: str, text: str | bytes, name: str = "p.jsonl", *args: str) -> list[str]:
    return default(m, f"data.prompts={write(d / name, text)}", *args)


def model_dir(d: Path, files: dict[str, str]) -> Path:
    d.mkdir()
    for name, text in files.items():
        write(d / name, text)
    return d


PROMPT_ONLY = '{"prompt": "a film"}\n'  # an SFT example needs a response
LONG_PROMPT = "".join(f'{{"prompt": "{"film " * (300 if i == 3 else 2)}{i}"}}\n' for i in range(12))

CASES = [
    # Data files.
    Case("prompts file missing", lambda d, m: default(m, f"data.prompts={d}/none.jsonl"),
         ("none.jsonl", "does not exist"), ray=True),
    Case("prompts file empty", lambda d, m: prompts(d, m, ""), ("p.jsonl", "holds no rows"), ray=True),
    Case("prompts not UTF-8", lambda d, m: prompts(d, m, '{"prompt": "caf\xe9"}\n'.encode("latin-1")),
         ("p.jsonl", "line 1", "UTF-8"), ray=True),
    Case("prompts not JSON", lambda d, m: prompts(d, m, '{"prompt": "a"}\n{"prompt": "b",\n'),
         ("p.jsonl", "line 2", "not valid JSON"), ray=True),
    Case("prompts row not an object", lambda d, m: prompts(d, m, '["a film"]\n'),
         ("line 1", "expected a JSON object"), ray=True),
    Case("prompts without a prompt column", lambda d, m: prompts(d, m, '{"text": "a film"}\n'),
         ("line 1", "missing column 'prompt'", "rows look like"), ray=True),
    Case("prompt of the wrong type", lambda d, m: prompts(d, m, '{"prompt": 42}\n'),
         ("line 1", "prompt must be text or a list of {role, content} messages, got int"), ray=True),
    Case("empty prompt", lambda d, m: prompts(d, m, '{"prompt": "a film"}\n{"prompt": "  "}\n'),
         ("line 2", "empty prompt", "remove the row"), ray=True),
    Case("duplicate prompt ids",
         lambda d, m: prompts(d, m, '{"prompt_id": "a", "prompt": "x"}\n{"prompt_id": "a", "prompt": "y"}\n'),
         ("duplicate prompt_id 'a'", "must be unique"), ray=True),
    Case("prompts file of an unknown kind", lambda d, m: prompts(d, m, "a film\n", "p.txt"),
         ("p.txt", ".jsonl, .json or .parquet"), ray=True),
    Case("parquet file that is not Parquet", lambda d, m: prompts(d, m, "not parquet", "p.parquet"),
         ("p.parquet", "is not a readable Parquet file"), ray=True),
    Case("a prompt longer than the context",
         lambda d, m: prompts(d, m, LONG_PROMPT, "p.jsonl", "sample.max_model_len=64"),
         ("line 4", "tokens", "sample.max_model_len"), ray=True),
    Case("SFT data without a response",
         lambda d, m: default(m, "sft.enabled=true", f"sft.data={write(d / 's.jsonl', PROMPT_ONLY)}"),
         ("s.jsonl", "line 1", "missing column"), ray=True),
    # Config.
    Case("unknown key", lambda d, m: default(m, "sampel.k=3"), ("unknown key 'sampel'",)),
    Case("misspelt option, no preset named", lambda d, m: ["sample.kk=3"], ("did you mean 'k'",)),
    Case("wrong type", lambda d, m: default(m, "sample.k=four"), ("sample.k", "four")),
    Case("out of range", lambda d, m: default(m, "sample.k=0"), ("sample.k", "got 0")),
    Case("contradictory settings", lambda d, m: default(m, "tracking.register_model=m", "tracking.log_model=false"),
         ("tracking.register_model needs tracking.log_model=true",)),
    Case("override without =", lambda d, m: default(m, "sample.k"), ("section.key=value",)),
    Case("unknown preset", lambda d, m: ["defualt"], ("defualt",)),
    Case("config file not YAML", lambda d, m: [str(write(d / "c.yaml", "sample: [k: 3\n"))], ("c.yaml",)),
    # Models.
    Case("policy path missing", lambda d, m: ["default", f"model.policy={d}/no-such-model"],
         ("no-such-model", "model.policy")),
    Case("policy directory not a checkpoint",
         lambda d, m: ["default", f"model.policy={model_dir(d / 'm', {'README': 'hi'})}"],
         ("has no config.json", "not an HF checkpoint")),
    Case("reward model not a sequence classifier",
         lambda d, m: default(m, "score.reward=reward_model", f"score.reward_model_path={m}"),
         ("score.reward_model_path", "LlamaForCausalLM", "not a reward model", "sequence classification")),
    Case("KV cache too small for max_model_len", lambda d, m: default(m, "sample.max_model_len=4000000"),
         ("sample.max_model_len=4000000", "GiB of vLLM KV cache", "sample.kv_cache_gib=1")),
    # Cluster, tracking, run directory.
    Case("Ray address that does not answer", lambda d, m: default(m, "--address", "127.0.0.1:1"),
         ("no Ray cluster answers at 127.0.0.1:1", "ray start --head")),
    Case("tracking server that does not answer",
         lambda d, m: default(m, "--tracking-uri", f"http://127.0.0.1:{free_port()}"),
         ("no MLflow tracking server answers", "mlflow server")),
    Case("run directory that cannot be written",
         lambda d, m: default(m, "--run-dir", str(write(d / "a-file", "") / "run")),
         ("cannot write the run directory", "--run-dir")),
]


@pytest.fixture
def finished_stage(tmp_path) -> Path:
    """A run directory holding a completed stage's output, as a run that failed later left it."""
    stage = tmp_path / "run" / "sample"
    stage.mkdir(parents=True)
    write(stage / "part-0.parquet", b"rows already sampled")
    write(stage / "_manifest.json", json.dumps({"config_hash": "0" * 16, "rows": 1}))
    return stage


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_message(case, tmp_path, capsys, request, finished_stage, tiny_model):
    if case.ray:
        request.getfixturevalue("ray_local")
    files = tmp_path / "files"
    files.mkdir()
    args = case.args(files, tiny_model)
    if "--run-dir" not in args:
        args += ["--run-dir", str(finished_stage.parent)]
    before = {p.name: p.read_bytes() for p in finished_stage.iterdir()}
    code = main(["run", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "rayalign: error: " in err and "Traceback" not in err, err
    for fragment in case.says:
        assert fragment in err, (fragment, err)
    assert {p.name: p.read_bytes() for p in finished_stage.iterdir()} == before
