"""The security promises (README "Security"): secrets stay out of what rayalign records, checkpoints
are read as data and run no code of their own unless asked, a local Ray listens on 127.0.0.1 with
token authentication and rayalign's Jobs client authenticates, a job gets only the variables named."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from rayalign.cli import build_parser, main
from rayalign.config import ConfigError, SampleConfig, load_config
from rayalign.models import resolve_model
from rayalign.pretrained import ModelNotFoundError
from rayalign.redaction import install_log_redaction, redact_secrets, redact_uri, secret_env_values
from tests.conftest import local_head

REPO = Path(__file__).resolve().parent.parent


# --- redaction: pure functions against exact strings ---------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("https://user:pass@host:5000/path", "https://***@host:5000/path"),
    ("http://token@host", "http://***@host"),
    ("postgresql://u:p@ss@db/x", "postgresql://***@db/x"),  # a raw "@" in the password goes too
    ("failed: GET https://u:p@h/api/2.0/runs (timeout)", "failed: GET https://***@h/api/2.0/runs (timeout)"),
    ("s3://b/k?X-Amz-Signature=abc&x=1&X-Amz-Security-Token=zz#f",
     "s3://b/k?X-Amz-Signature=***&x=1&X-Amz-Security-Token=***#f"),
    ("https://a.blob.core.windows.net/c?sv=2022&sig=c2ln", "https://a.blob.core.windows.net/c?sv=2022&sig=***"),
    ("Protocol=https;AccountName=acc;AccountKey=a2V5;Suffix=core",
     "Protocol=https;AccountName=acc;AccountKey=***;Suffix=core"),
    ("?author=me&design=x&api_key=k1", "?author=me&design=x&api_key=***"),
    # Nothing to redact: left exactly as it was.
    ("sqlite:////tmp/runs/mlflow.db", "sqlite:////tmp/runs/mlflow.db"),
    ("http://host:5000 and bob@example.com", "http://host:5000 and bob@example.com"),
    ("ray://head:10001", "ray://head:10001"),
])
def test_redact_uri_removes_credentials_and_nothing_else(text, expected):
    assert redact_uri(text) == expected


ENV = {"HF_TOKEN": "hf_abcdefghijklmnop", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
       "MLFLOW_TRACKING_PASSWORD": "correct-horse", "RAY_AUTH_TOKEN": "0123456789abcdef0123",
       "PGPASSWORD": "pg-secret-1", "SHORT_TOKEN": "abc1234",  # under 8 characters: not treated as secret
       "TOKENIZERS_PARALLELISM": "falsefalse", "RAY_AUTH_MODE": "token", "HOME": "/home/someone",
       "MLFLOW_TRACKING_USERNAME": "someone-else", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID"}


def test_secret_env_values_are_those_of_secret_names():
    assert set(secret_env_values(ENV)) == {"hf_abcdefghijklmnop", "wJalrXUtnFEMI/K7MDENG", "correct-horse",
                                           "0123456789abcdef0123", "pg-secret-1"}


def test_redact_secrets_walks_a_dump_and_removes_env_secrets_and_uri_credentials():
    value = {"a": ["x https://u:p@h/ y", 3, None, ("hf_abcdefghijklmnop",)], "b": True,
             "c": {"d": "key=wJalrXUtnFEMI/K7MDENG pw=correct-horse ray=0123456789abcdef0123 abc1234 /home/someone"}}
    assert redact_secrets(value, ENV) == {
        "a": ["x https://***@h/ y", 3, None, ("***",)], "b": True,
        "c": {"d": "key=*** pw=*** ray=*** abc1234 /home/someone"}}


@pytest.fixture
def log_redaction():
    saved = logging.getLogRecordFactory()
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    yield
    logging.setLogRecordFactory(saved)


def test_log_records_are_redacted_before_any_handler_sees_them(log_redaction, caplog, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    with caplog.at_level(logging.INFO, logger="rayalign.test"):
        log = logging.getLogger("rayalign.test")
        log.info("tracking to %s with %s", "https://u:pw@h:5000", "hf_abcdefghijklmnop")
        log.info("%d%% plain", 100)
    assert [r.getMessage() for r in caplog.records] == ["tracking to https://***@h:5000 with ***", "100% plain"]


# --- what rayalign records: errors, config.yaml, summary.json, mlflow_run.json, MLflow ------------

def test_cli_errors_redact_credentials(capsys):
    # An unreachable Jobs API given with credentials: the error quotes the address.
    code = main(["submit", "default", "--address", "http://admin:sekret-pw@127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Ray Jobs API at http://***@127.0.0.1:1" in err
    assert "sekret-pw" not in err


def test_a_bug_s_traceback_is_redacted_on_the_console_and_in_run_log(monkeypatch, capsys, tmp_path):
    import rayalign.cli as cli
    from rayalign.console import quiet_console

    monkeypatch.setenv("SERVICE_TOKEN", "tok-1234567890")
    message = "cannot reach https://user:pw-123456@host/x with tok-1234567890"

    def broken(args):
        with quiet_console(tmp_path / "run.log"):
            raise RuntimeError(message)
    monkeypatch.setattr(cli, "_runs", broken)
    assert cli.main(["runs", str(tmp_path)]) == 1
    err, log = capsys.readouterr().err, (tmp_path / "run.log").read_text()
    for shown in (err, log):
        assert "Traceback" in shown and "RuntimeError: cannot reach https://***@host/x with ***" in shown
        assert "pw-123456" not in shown and "tok-1234567890" not in shown


FORWARDING = """
import os, sys, time
from pathlib import Path
import ray
from rayalign.console import quiet_console

log = Path(sys.argv[1])
with quiet_console(log):
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING")

    @ray.remote
    def leak():
        print("worker token", os.environ["HF_TOKEN"])
        print("worker store https://user:pw-123456@mlflow/x", file=sys.stderr)

    ray.get(leak.remote())
    deadline = time.time() + 30  # Ray forwards a worker's lines to the driver within a second or so
    while "worker store" not in log.read_text() and time.time() < deadline:
        time.sleep(0.5)
    print("driver token", os.environ["HF_TOKEN"])
    ray.shutdown()
print("late token", os.environ["HF_TOKEN"])
"""


def test_what_ray_workers_forward_reaches_run_log_redacted(tmp_path):
    log = tmp_path / "run.log"
    env = {**os.environ, "HF_TOKEN": "hf_forwarded_secret_1234", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", FORWARDING, str(log)], env=env, capture_output=True, text=True,
                          timeout=180)
    text = log.read_text()
    assert done.returncode == 0, done.stderr + text
    for line in ("worker token ***", "worker store https://***@mlflow/x", "driver token ***", "late token ***"):
        assert line in text, (line, text)
    assert "hf_forwarded_secret_1234" not in text + done.stdout + done.stderr and "pw-123456" not in text


def test_a_recorded_config_with_redacted_credentials_is_refused():
    with pytest.raises(ConfigError, match=r"tracking.uri='https://\*\*\*@mlflow:5000' holds credentials that rayalign "
                                          r"redacted.*MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
        load_config("default", ["tracking.uri=https://***@mlflow:5000"])


HF, AWS, PW = "hf_abcdefghijklmnop", "wJalrXUtnFEMI/K7MDENG", "correct-horse-battery"


def _run_toy(ctx, out):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"value": [1]}), out / "value.parquet")
    return {"rows": 1}


def _track_toy(ctx, folder):
    ctx.tracker.set_tag("rayalign.toy_source", f"s3://reader:{PW}@bucket/toy")
    with ctx.tracker.child_run("toy", params={"source": f"https://reader:{PW}@data.example/x?sig=abc"},
                               consumed={"data": f"s3://reader:{PW}@bucket/in"}, produced={"model": str(folder)}):
        pass


def test_a_run_records_no_secret(tmp_path, tiny_model, ray_local, monkeypatch):
    from mlflow import MlflowClient

    from rayalign.pipeline.runner import run_pipeline
    from rayalign.pipeline.stage import Stage

    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PW)
    toy = Stage(name="toy", run=_run_toy, track=_track_toy,
                summary=lambda folder, metrics: {"toy_source": f"https://reader:{PW}@data.example/x?sig=abc"})
    cfg = load_config("default", [f"model.policy={tiny_model}", f"data.instruction=Token {HF} says {{prompt}}",
                                  f"train.resources.storage_path=s3://AKIAEXAMPLE:{AWS}@bucket/ckpt"])
    run_dir = tmp_path / "runs" / "secret"
    summary = run_pipeline(cfg, run_dir, log=lambda line: None, stages=(toy,))

    config = (run_dir / "config.yaml").read_text()
    assert yaml.safe_load(config)["train"]["resources"]["storage_path"] == "s3://***@bucket/ckpt"
    assert yaml.safe_load(config)["data"]["instruction"] == "Token *** says {prompt}"
    assert summary["toy_source"] == "https://***@data.example/x?sig=***"
    client = MlflowClient(tracking_uri=summary["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params["data.instruction"] == "Token *** says {prompt}"
    child = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")[0]
    assert child.data.tags["rayalign.consumed.data"] == "s3://***@bucket/in"
    recorded = [config, (run_dir / "summary.json").read_text(), (run_dir / "mlflow_run.json").read_text(),
                json.dumps(summary), json.dumps([run.data.params, run.data.tags, child.data.params, child.data.tags])]
    for secret in (HF, AWS, PW, "AKIAEXAMPLE", "sig=abc"):
        assert not [text for text in recorded if secret in text], secret


def test_tracking_uri_credentials_connect_but_are_not_recorded(mlflow_server, tmp_path, monkeypatch, capsys):
    import mlflow
    from mlflow import MlflowClient

    from rayalign.tracking import RUN_FILE, Tracker

    mlflow_server.wait_ready()
    plain = mlflow_server.uri
    secret_uri = plain.replace("http://", f"http://rayalign:{PW}@")
    cfg = load_config("default", [f"tracking.uri={secret_uri}"])
    (tmp_path / "run").mkdir()
    tracker = Tracker(cfg, tmp_path / "run")
    tracker.mlflow.log_metric("m", 1.0)
    assert mlflow.get_tracking_uri() == secret_uri  # the connection uses the real URI, credentials and all
    assert tracker.display_uri == plain.replace("http://", "http://***@")
    tracker.end()
    assert PW not in capsys.readouterr().out  # MLflow's "View run ... at: URL" would carry it
    assert json.loads((tmp_path / "run" / RUN_FILE).read_text())["tracking_uri"] == tracker.display_uri
    run = MlflowClient(tracking_uri=plain).get_run(tracker.run_id)
    assert run.data.params["tracking.uri"] == tracker.display_uri
    assert PW not in json.dumps([run.data.params, run.data.tags])
    again = Tracker(cfg, tmp_path / "run")
    again.end()
    assert again.resumed  # the redacted record still identifies the store

    # MLflow's own variables keep authenticating: rayalign leaves them for MLflow to send.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "rayalign")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PW)
    (tmp_path / "env-run").mkdir()
    tracker = Tracker(load_config("default", [f"tracking.uri={plain}"]), tmp_path / "env-run")
    creds = MlflowClient(tracking_uri=plain)._tracking_client.store.get_host_creds()
    assert (creds.username, creds.password) == ("rayalign", PW)
    tracker.end()
    run = MlflowClient(tracking_uri=plain).get_run(tracker.run_id)
    assert PW not in json.dumps([run.data.params, run.data.tags])


# --- checkpoints are data: safetensors only, no code of their own unless model.trust_remote_code --

@pytest.fixture
def code_checkpoint(tmp_path, monkeypatch) -> Path:
    """A checkpoint whose config and tokenizer name Python modules of its own (auto_map); importing
    evil.py (transformers imports a copy of it) leaves a file `ran` in the checkpoint."""
    from transformers import dynamic_module_utils

    # Where transformers copies a checkpoint's modules to import them: here, not in ~/.cache.
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    path = tmp_path / "evil"
    path.mkdir()
    (path / "evil.py").write_text(
        f"from pathlib import Path\nPath({str(path / 'ran')!r}).touch()\n"
        "from transformers import PretrainedConfig\n\n\nclass EvilConfig(PretrainedConfig):\n"
        "    model_type = 'rayalign_evil'\n")
    (path / "config.json").write_text(json.dumps({
        "model_type": "rayalign_evil", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}}))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "EvilTokenizer", "auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}}))
    (path / "model.safetensors").write_bytes(b"")
    return path


class _Payload:
    """Unpickled, it creates the file `marker`: what a malicious pytorch_model.bin does, harmlessly."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def pickle_checkpoint(path: Path, tiny_model: str) -> Path:
    """The tiny model's config with weights as a pickle that runs code when loaded without weights_only."""
    import torch

    path.mkdir()
    (path / "config.json").write_text((Path(tiny_model) / "config.json").read_text())
    torch.save({"model.embed_tokens.weight": _Payload(str(path / "ran"))}, path / "pytorch_model.bin")
    return path


def test_checkpoint_code_runs_only_with_trust_remote_code(code_checkpoint):
    from transformers import AutoModelForCausalLM

    from rayalign.pretrained import load_model, load_tokenizer

    evil = code_checkpoint
    with pytest.raises(ValueError, match="(?s)contains custom code.*trust_remote_code=True"):
        load_model(AutoModelForCausalLM, evil)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        load_tokenizer(evil)
    assert not (evil / "ran").exists()
    with pytest.raises(Exception):  # the positive control: allowed, the checkpoint's code does run
        load_model(AutoModelForCausalLM, evil, trust_remote_code=True)
    assert (evil / "ran").exists()


def test_trust_remote_code_is_off_by_default_and_warned_about_when_on():
    assert load_config("default").model.trust_remote_code is False
    with pytest.warns(UserWarning, match="model.trust_remote_code=true: Python code inside the run's checkpoints"):
        assert load_config("default", ["model.trust_remote_code=true"]).model.trust_remote_code


def test_vllm_runs_no_checkpoint_code_by_default(code_checkpoint):
    from rayalign.actors.sampler import VLLMSampler, sampler_kwargs

    evil = code_checkpoint
    with pytest.raises(Exception, match="trust_remote_code=True"):
        VLLMSampler(**sampler_kwargs(str(evil), SampleConfig(max_model_len=64), "float32", n=1, seed=0, stream="s",
                                     temperature=1.0, top_p=1.0))
    assert not (evil / "ran").exists()


def test_pickled_weights_are_refused_everywhere(tmp_path, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from rayalign.actors.sampler import VLLMSampler, sampler_kwargs
    from rayalign.pretrained import load_model

    bad = pickle_checkpoint(tmp_path / "bin", tiny_model)
    refused = r"has no .safetensors weights \(only pickled ones: pytorch_model.bin\); rayalign loads weights only"
    with pytest.raises(ModelNotFoundError, match=refused):
        resolve_model(str(bad))
    with pytest.raises(ModelNotFoundError, match=refused):
        load_model(AutoModelForCausalLM, bad)
    with pytest.raises(ModelNotFoundError, match=refused):
        VLLMSampler(**sampler_kwargs(str(bad), SampleConfig(), "float32", n=1, seed=0, stream="s",
                                     temperature=1.0, top_p=1.0))
    assert not (bad / "ran").exists()
    torch.load(bad / "pytorch_model.bin", weights_only=False)  # the positive control: the pickle runs code
    assert (bad / "ran").exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            yield node, owner, name, {k.arg: k.value for k in node.keywords}


# A ZeRO-2 DeepSpeed engine on the tiny model saves a resumable checkpoint; a fresh engine loads
# it the way a resumed training stage does; then the optimizer states are replaced by a pickle that
# writes a file when unpickled, and loading again must refuse it before running anything.
RESUME_CHECKPOINT = """
import os, sys
from pathlib import Path
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT=sys.argv[3], DS_ACCELERATOR="cpu")
import torch, torch.distributed
torch.distributed.init_process_group("gloo", rank=0, world_size=1)
from transformers import AutoModelForCausalLM
from rayalign.config import TrainerConfig
from rayalign.training.loop import deepspeed_engine, read_checkpoints_as_data
from tests.test_security import _Payload

def engine():
    return deepspeed_engine(AutoModelForCausalLM.from_pretrained(sys.argv[1]), TrainerConfig(zero_stage=2), 1)

out = Path(sys.argv[2])
first = engine()
x = torch.randint(0, 50, (2, 6))
first.backward(first(input_ids=x, labels=x).loss)
first.step()
first.save_checkpoint(str(out), tag="t")
second = engine()
read_checkpoints_as_data(second)
second.load_checkpoint(str(out), tag="t")
print("loaded", second.global_steps, flush=True)
[optim] = (out / "t").glob("*optim_states.pt")
torch.save({"optimizer_state_dict": _Payload(str(out / "ran"))}, optim)
third = engine()
read_checkpoints_as_data(third)
third.load_checkpoint(str(out), tag="t")
"""


def test_a_resumed_deepspeed_checkpoint_is_read_as_data(tmp_path, tiny_model):
    from tests.conftest import free_port

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", RESUME_CHECKPOINT, tiny_model, str(tmp_path / "ck"),
                           str(free_port())], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert "loaded 1" in done.stdout, done.stderr[-3000:]  # ZeRO-2's optimizer states load as data
    assert done.returncode != 0 and "Weights only load failed" in done.stderr  # the pickle is refused...
    assert not (tmp_path / "ck" / "ran").exists()  # ...before it runs


def test_the_package_reads_no_pickle_and_loads_checkpoints_in_one_place():
    """Every from_pretrained is in rayalign/pretrained.py; no torch.load without weights_only=True,
    no pickle/joblib/pandas unpickling, no numpy allow_pickle; vLLM engines load safetensors and
    take trust_remote_code from the caller."""
    found = []
    for file in sorted((REPO / "rayalign").rglob("*.py")):
        where = file.relative_to(REPO)
        for node, owner, name, kw in _calls(ast.parse(file.read_text())):
            line = f"{where}:{node.lineno}"
            literal = {k: v.value for k, v in kw.items() if isinstance(v, ast.Constant)}
            if name == "from_pretrained" and str(where) != "rayalign/pretrained.py":
                found.append(f"{line} from_pretrained outside rayalign/pretrained.py")
            if owner == "torch" and name == "load" and literal.get("weights_only") is not True:
                found.append(f"{line} torch.load without weights_only=True")
            if owner in ("pickle", "cloudpickle", "joblib", "dill") and name in ("load", "loads"):
                found.append(f"{line} {owner}.{name}")
            if name == "read_pickle" or literal.get("allow_pickle") is True:
                found.append(f"{line} unpickling")
            if name == "LLM" and not _engine_kwargs_call(kw.get(None)) and (
                    literal.get("load_format") != "safetensors" or "trust_remote_code" not in kw):
                found.append(f"{line} LLM without load_format='safetensors' and trust_remote_code")
    assert found == []
    # What LLM(**engine_kwargs(...)) gets: the one place that builds rayalign's engine settings.
    sampler = ast.parse((REPO / "rayalign" / "actors" / "sampler.py").read_text())
    [builder] = [f for f in ast.walk(sampler) if isinstance(f, ast.FunctionDef) and f.name == "engine_kwargs"]
    [returned] = [r.value for r in ast.walk(builder) if isinstance(r, ast.Return)]
    keywords = {k.arg: k.value for k in returned.keywords}
    assert getattr(keywords.get("load_format"), "value", None) == "safetensors" and "trust_remote_code" in keywords
    assert getattr(keywords["trust_remote_code"], "id", None) == "trust_remote_code"  # the caller's, not a constant


def _engine_kwargs_call(node) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "engine_kwargs"


# --- local services on 127.0.0.1: Ray with token auth, the Jobs client authenticates, the MLflow UI; job env

def test_mlflow_ui_hint_listens_on_loopback_only():
    from rayalign.pipeline.summary import mlflow_ui_hint

    hint = mlflow_ui_hint({"tracking_uri": "sqlite:////r/mlflow.db", "mlflow_experiment_id": "1",
                           "mlflow_run_id": "ab"})
    assert hint.split(" ", 1)[1] == ("-m mlflow ui --backend-store-uri sqlite:////r/mlflow.db --host 127.0.0.1 "
                                     "--port 5000   # then open http://127.0.0.1:5000/#/experiments/1/runs/ab")


CLIENT = """
import sys
from rayalign import jobs
try:
    jobs.status(sys.argv[1], "raysubmit_nosuchjob")
except jobs.JobError as exc:
    print(exc)
"""


def test_a_local_ray_listens_on_loopback_with_token_auth_and_rayalign_jobs_authenticate(tmp_path):
    token = "5eC7e7" * 8
    # A clean environment: nothing tells Ray to enable or disable auth, nor where a cluster is.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_AUTH_TOKEN=token, PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    with local_head(env, tmp_path) as info:
        host, port = info["dashboard"].rsplit(":", 1)
        assert host == "127.0.0.1" and info["token_auth"] is True
        if info["node_ip"] != "127.0.0.1":  # not reachable from the network side
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((info["node_ip"], int(port)), timeout=5).close()
        deadline = time.monotonic() + 60
        while True:  # the dashboard answers shortly after ray.init returns
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/jobs/", timeout=5).close()
                pytest.fail("the Jobs API answered a request without a token")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not answer"
                time.sleep(1)
        # rayalign's client, in a process where RAY_AUTH_MODE is unset (Ray's own client would send no token):
        # it gets past authentication to the Jobs API's answer about the job.
        out = subprocess.run([sys.executable, "-c", CLIENT, f"http://127.0.0.1:{port}"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120).stdout
        assert "raysubmit_nosuchjob" in out and "does not exist" in out and "Authentication" not in out, out


@pytest.fixture
def token_loader(monkeypatch):
    """Ray's process-wide token loader, which caches the token: reloaded once the test has set
    RAY_AUTH_TOKEN, and again after the environment is restored, since the in-process Ray of other
    tests authenticates with it."""
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    yield loader
    monkeypatch.undo()
    loader.reset_cache()


def test_auth_headers_carry_the_local_token(monkeypatch, token_loader):
    from rayalign.jobs import auth_headers

    monkeypatch.setenv("RAY_AUTH_TOKEN", "ab" * 32)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    token_loader.reset_cache()
    assert auth_headers() == {"Authorization": f"Bearer {'ab' * 32}"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user says the cluster has no auth: send nothing
    assert auth_headers() == {}


def test_a_job_gets_no_local_secret_unless_named(monkeypatch, tmp_path):
    import rayalign
    from rayalign.jobs import JobError, job_runtime_env

    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PW)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS)
    monkeypatch.delenv("RAYALIGN_UNSET_VARIABLE", raising=False)
    package = [str(Path(rayalign.__file__).parent)]
    assert job_runtime_env(str(tmp_path)) == {"working_dir": str(tmp_path), "py_modules": package,
                                              "env_vars": {"MLFLOW_DISABLE_TELEMETRY": "true"}}
    assert job_runtime_env(str(tmp_path), ["MLFLOW_TRACKING_PASSWORD"])["env_vars"] == {
        "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_PASSWORD": PW}
    with pytest.raises(JobError, match="--env RAYALIGN_UNSET_VARIABLE: not set in this environment"):
        job_runtime_env(str(tmp_path), ["RAYALIGN_UNSET_VARIABLE"])
    args = build_parser().parse_args(["submit", "--address", "http://h:8265", "--env", "A", "--env", "B"])
    assert args.env == ["A", "B"]  # what `rayalign submit` hands to jobs.submit


def test_a_local_ray_writes_its_new_token_for_its_owner_only(tmp_path):
    """Ray writes ~/.ray/auth_token with the umask (0644 here): rayalign creates it 0600 first."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH",
                                                            "RAY_AUTH_TOKEN")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    with local_head(env, tmp_path) as info:
        assert info["token_auth"] is True
        token = home / ".ray" / "auth_token"
        assert token.stat().st_mode & 0o777 == 0o600
        assert re.fullmatch(r"[0-9a-f]{64}", token.read_text())  # the cluster runs with it: Ray did not rewrite it


def test_an_existing_token_is_kept_and_a_readable_one_named(tmp_path, monkeypatch):
    from rayalign.pipeline.runner import private_ray_token

    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("a" * 64)
    token.chmod(0o644)
    with pytest.warns(UserWarning, match=r"readable by other users.*chmod 600"):
        assert private_ray_token() == token
    assert token.read_text() == "a" * 64 and token.stat().st_mode & 0o777 == 0o644  # the user's file, untouched
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    token.unlink()
    assert private_ray_token() is None and not token.exists()
