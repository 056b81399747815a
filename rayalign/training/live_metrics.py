"""Step metrics logged into the pipeline's MLflow run while a training stage runs, from rank 0.

The driver passes `{"uri", "run_id", "prefix"}` (stage_tools.live_tracking); each optimizer step
is logged as '<prefix><name>' with its step number. Training never waits on tracking: when the
server cannot be reached the step is kept in the stage's history only, a warning says so once, and
the driver logs the steps MLflow lacks after the stage (Tracker.log_missing_steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Bookkeeping in a step's history row, not a metric.
NOT_METRICS = ("step", "epoch", "examples")


def step_metrics(row: dict) -> dict[str, float]:
    """The metrics of a step's history row (numbers only: a grad norm DeepSpeed did not compute is None)."""
    return {k: float(v) for k, v in row.items() if k not in NOT_METRICS and isinstance(v, (int, float))}


def live_logger(tracking: dict | None) -> Callable[[dict, int], None]:
    """log(row, step) into the run named by `tracking`, or a no-op without one (ranks other than 0)."""
    if not tracking:
        return lambda row, step: None
    import os

    # A step waits for at most one short request: MLflow's default retries back off for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking["uri"])
    warned = False

    def log(row: dict, step: int) -> None:
        nonlocal warned
        now = int(time.time() * 1000)
        try:
            client.log_batch(tracking["run_id"], metrics=[Metric(f"{tracking['prefix']}{k}", v, now, step)
                                                          for k, v in step_metrics(row).items()])
        except Exception as e:  # noqa: BLE001 — any tracking failure; the step's metrics stay in the history
            if not warned:
                print(f"rayalign: WARNING: could not log training metrics to MLflow ({type(e).__name__}: "
                      f"{str(e)[:200]}); training goes on and the missing steps are logged after the stage",
                      flush=True)
                warned = True
    return log
