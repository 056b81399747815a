"""The pipeline's MLflow run on real stores: system metrics sampled when asked, not otherwise; a
server that goes away mid-run costs tracking, not the run; one that never answered is an error.
tests/test_jobs.py reads a whole run back from a real `mlflow server`, tests/test_pipeline_e2e.py
logs a finished run directory with `rayalign track`."""

from __future__ import annotations

import json
import time

import pytest

from rayalign.config import load_config
from rayalign.tracking import RUN_FILE, Tracker, TrackingError
from tests.conftest import MlflowServer, free_port


@pytest.mark.parametrize("enabled", [True, False])
def test_system_metrics_follow_tracking_system_metrics(tmp_path, monkeypatch, enabled):
    from mlflow import MlflowClient

    # A sample a second, logged at once: MLflow's defaults (10 s) would outlast the test.
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    (tmp_path / "run").mkdir()
    cfg = load_config("default", [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                                  f"tracking.system_metrics={str(enabled).lower()}"])
    tracker = Tracker(cfg, tmp_path / "run")
    time.sleep(4)
    tracker.end()
    metrics = MlflowClient(tracker.uri).get_run(tracker.run_id).data.metrics
    assert any(name.startswith("system/cpu_utilization") for name in metrics) == enabled, sorted(metrics)


def test_a_store_that_stops_answering_turns_tracking_off_and_loses_nothing(tmp_path, monkeypatch):
    server = MlflowServer(tmp_path / "server")
    # Each call to a stopped server fails at once, instead of after MLflow's minutes of retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        server.wait_ready()
        cfg = load_config("default", [f"tracking.uri={server.uri}", "tracking.system_metrics=false"])
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "summary.json").write_text("{}")
        tracker = Tracker(cfg, run_dir)
        tracker.log_metrics({"before": 1.0})
        server.stop()
        with pytest.warns(UserWarning) as caught:
            tracker.log_metrics({"after": 2.0})
            tracker.log_artifact(run_dir / "summary.json")
            with tracker.child_run("train", {"lr": 1}, {}, {}) as child:
                tracker.log_metrics({"inside": 3.0})
            assert child is None and tracker.tag("any") is None
            tracker.end()
        [warning] = [w for w in caught if "stopped answering" in str(w.message)]
        assert f"rayalign track {run_dir}" in str(warning.message)
        record = json.loads((run_dir / RUN_FILE).read_text())
        assert record["lost"] is True and record["run_id"] == tracker.run_id
        # Back again: the run that lost its store is not resumed; everything is logged afresh.
        server.start()
        server.wait_ready()
        again = Tracker(cfg, run_dir)
        again.end()
        assert not again.resumed and again.run_id != tracker.run_id
        assert "lost" not in json.loads((run_dir / RUN_FILE).read_text())
    finally:
        server.stop()


def test_a_tracking_server_that_does_not_answer_at_the_start_is_an_error(tmp_path, capsys):
    from rayalign.cli import main

    uri = f"http://user:secret@127.0.0.1:{free_port()}"
    (tmp_path / "run").mkdir()
    with pytest.raises(TrackingError, match="no MLflow tracking server answers at http://\\*\\*\\*@127.0.0.1"):
        Tracker(load_config("default", [f"tracking.uri={uri}"]), tmp_path / "run")
    assert main(["track", str(tmp_path / "nothing")]) == 2
    assert "is not a rayalign run directory" in capsys.readouterr().err
