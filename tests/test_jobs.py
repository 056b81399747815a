"""`rayalign submit` and `rayalign jobs` against a real Ray head on 127.0.0.1 (Jobs API), tracking
the job's run on a real MLflow tracking server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rayalign.cli import main
from rayalign.data.parquet import read_table
from tests.conftest import assert_vllm_and_transformers_agree, free_port, tiny_overrides

pytestmark = pytest.mark.e2e
RAY = str(Path(sys.executable).parent / "ray")
REGISTERED = "rayalign-tiny-aligned"


@pytest.fixture(scope="module")
def ray_head():
    """A separate Ray head (own ports and temp dir) with the dashboard's Jobs API; no token auth."""
    from ray.job_submission import JobSubmissionClient

    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # head and client alike (Ray 2.60 defaults to token auth)
    temp = tempfile.mkdtemp(prefix="rj-", dir="/tmp")  # short: Ray's socket paths have a length limit
    dashboard = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # As on a real cluster, the Python that runs Ray (and has rayalign's dependencies) is `python`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run([RAY, "start", "--head", f"--port={free_port()}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                    "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats",
                    # Ports of its own: the tests' in-process Ray already holds Ray's default agent ports.
                    *(f"--{flag}={free_port()}" for flag in (
                        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                        "runtime-env-agent-port", "node-manager-port", "object-manager-port",
                        "ray-client-server-port"))],
                   env=env, check=True, timeout=180, capture_output=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 60
    while True:
        try:
            JobSubmissionClient(address)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    yield address
    # Stop only this head's processes: `ray stop` would also end the tests' in-process Ray.
    for line in subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout.split():
        try:
            os.kill(int(line), signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp, ignore_errors=True)
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


def test_tiny_pipeline_succeeds_as_a_job(mlflow_server, ray_head, tiny_qwen2, prompts_file, tmp_path, capsys):
    """The whole pipeline as a job, with a Qwen2 policy: besides jobs and tracking, this is the
    end-to-end run of Qwen2 as a policy (tests/test_pipeline_e2e.py: GPT-2, test_chain_e2e.py: Llama)
    and of RSO selection with the IPO loss."""
    from mlflow import MlflowClient
    from transformers import AutoConfig

    uri = mlflow_server.uri
    mlflow_server.wait_ready()
    run_dir = tmp_path / "job-run"
    # Without evaluation, which tests/test_pipeline_e2e.py checks (and its MLflow records) locally.
    code = main(["submit", "default", *tiny_overrides(tiny_qwen2, prompts_file), "data.instruction='{prompt}'",
                 "evaluate.enabled=false", "select.strategy=rso", "train.loss=ipo", "train.ipo_token_mean=true",
                 f"tracking.uri={uri}", f"tracking.register_model={REGISTERED}",
                 "--address", ray_head, "--run-dir", str(run_dir), "--wait"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "SUCCEEDED" in out and "not evaluated (evaluate.enabled=false)" in out
    assert (run_dir / "summary.json").is_file() and (run_dir / "train" / "model" / "config.json").is_file()
    assert AutoConfig.from_pretrained(run_dir / "train" / "model").model_type == "qwen2"
    assert_vllm_and_transformers_agree(run_dir)

    # The job's run lives on the server: run, params, metrics, inputs, and artifacts in its store.
    saved = json.loads((run_dir / "mlflow_run.json").read_text())
    assert saved["tracking_uri"] == uri
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(saved["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["sample.k"] == "4" and run.data.params["tracking.uri"] == uri
    assert run.data.params["train.loss"] == "ipo"
    assert run.data.metrics["select/rso_acceptance_rate"] == pytest.approx(0.5)  # max(2, k // 4) of k = 4
    pairs = read_table(run_dir / "select")
    assert set(pairs["strategy"].to_pylist()) == {"rso"}
    assert all(c > r for c, r in zip(pairs["chosen_reward"].to_pylist(), pairs["rejected_reward"].to_pylist()))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.data.metrics["pairs"] == pytest.approx(summary["pairs"])
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 1
    assert {"prompts", "pairs"} <= {d.dataset.name for d in run.inputs.dataset_inputs}
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml", "datasets"} <= listed
    stored = mlflow_server.artifacts / run.info.experiment_id / run.info.run_id / "artifacts"
    assert json.loads((stored / "summary.json").read_text()) == summary
    assert list((stored / "datasets" / "pairs").glob("*.parquet"))
    assert not (run_dir.parent / "mlartifacts").exists() and not (run_dir.parent / "mlflow.db").exists()

    # Live training metrics under TRL's names, and the driver machine's system metrics.
    steps = json.loads((run_dir / "train" / "_manifest.json").read_text())["metrics"]["steps"]
    for name in ("grad_norm", "rewards/margins", "logps/chosen"):
        assert len(client.get_metric_history(run.info.run_id, f"train/{name}")) == steps, name
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics), sorted(run.data.metrics)

    # The aligned model: a logged MLflow model of the training's nested run (which trained on the
    # pairs), registered, and loadable from the registry.
    [child] = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}' "
                                                          "and tags.`rayalign.stage` = 'train'")
    [model] = client.search_logged_models([run.info.experiment_id])
    assert model.source_run_id == child.info.run_id and model.name == "aligned_model"
    assert run.data.tags["rayalign.aligned_model_id"] == model.model_id
    assert "pairs" in {d.dataset.name for d in child.inputs.dataset_inputs}
    [version] = client.search_model_versions(f"name = '{REGISTERED}'")
    assert model.model_id in version.source  # models:/<model id>
    import mlflow

    mlflow.set_tracking_uri(uri)  # models:/ resolves in the registry of the global URI (conftest restores it)
    downloaded = Path(mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}/{version.version}"))
    assert {"config.json", "model.safetensors"} <= {p.name for p in downloaded.rglob("*")}


def test_failing_job_reports_the_error_and_exits_non_zero(ray_head, tiny_model, tmp_path, capsys):
    # Valid locally, wrong on the cluster: the prompts file does not exist there.
    code = main(["submit", "default", f"model.policy={tiny_model}", f"data.prompts={tmp_path}/gone.jsonl",
                 "--address", ray_head, "--run-dir", str(tmp_path / "r"), "--wait"])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out and "gone.jsonl" in out and "does not exist" in out
    job_id = out.split("submitted job ")[1].split()[0]
    assert main(["jobs", "status", job_id, "--address", ray_head]) == 1
    assert capsys.readouterr().out.strip() == "FAILED"
    assert main(["jobs", "logs", job_id, "--address", ray_head]) == 1
    assert "does not exist" in capsys.readouterr().out


def test_config_typo_fails_before_submission(ray_head, capsys):
    assert main(["submit", "default", "sample.kk=3", "--address", ray_head]) == 2
    assert "did you mean 'k'" in capsys.readouterr().err


def test_unreachable_jobs_api(capsys):
    port = free_port()  # nothing listens there
    assert main(["submit", "default", "--address", f"http://127.0.0.1:{port}"]) == 1
    assert "cannot reach the Ray Jobs API" in capsys.readouterr().err
