"""Training metrics reach MLflow live, each step once, and training never waits on tracking:
a real SQLite store, and a tracking URI where nothing listens."""

from __future__ import annotations

import time

import pytest

from rayalign.config import load_config
from rayalign.training.live_metrics import live_logger, step_metrics
from tests.conftest import free_port


@pytest.fixture
def tracker(tmp_path):
    from rayalign.tracking import Tracker

    (tmp_path / "run").mkdir()
    tracker = Tracker(load_config("default", [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]), tmp_path / "run")
    yield tracker
    tracker.end()


def test_step_metrics_are_the_numbers_of_a_history_row():
    row = {"step": 3, "epoch": 0, "examples": 8, "loss": 0.5, "rewards/chosen": 1, "grad_norm": None}
    assert step_metrics(row) == {"loss": 0.5, "rewards/chosen": 1.0}


def test_steps_logged_live_are_not_logged_again(tracker):
    from mlflow import MlflowClient

    history = [(step, {"loss": 1.0 / step, "grad_norm": 2.0 * step}) for step in (1, 2, 3, 4)]
    log = live_logger({"uri": tracker.uri, "run_id": tracker.run_id, "prefix": "train/"})
    for step, metrics in history[:2]:  # the workers reached MLflow for two steps, then lost it
        log({"step": step, **metrics}, step)
    tracker.log_missing_steps(history, "train/")
    client = MlflowClient(tracker.uri)
    for name in ("loss", "grad_norm"):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(tracker.run_id, f"train/{name}"))
        assert logged == [(step, metrics[name]) for step, metrics in history]


def test_an_unreachable_tracking_server_warns_once_and_training_goes_on(capsys, monkeypatch):
    # Unset, as in a fresh worker: the logger's own short timeout and no retries apply (restored after).
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    log = live_logger({"uri": f"http://127.0.0.1:{free_port()}", "run_id": "0" * 32, "prefix": "train/"})
    start = time.monotonic()
    for step in (1, 2, 3):
        log({"step": step, "loss": 0.1}, step)
    assert time.monotonic() - start < 30  # MLflow's default retries would back off for minutes
    out = capsys.readouterr().out
    assert out.count("WARNING: could not log training metrics to MLflow") == 1
    assert "missing steps are logged after the stage" in out
