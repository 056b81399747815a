"""The pipeline's MLflow run on a real SQLite store: system metrics sampled when asked, not otherwise.
tests/test_jobs.py reads a whole run back from a real `mlflow server`."""

from __future__ import annotations

import time

import pytest

from rayalign.config import load_config
from rayalign.tracking import Tracker


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
