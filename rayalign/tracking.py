"""MLflow tracking of a pipeline run: params, metrics, datasets and artifacts.

One MLflow run per run directory and config: re-running the same command resumes the
same MLflow run; a changed config starts a new one. The default store is a SQLite
database beside the run directories, with artifacts in a folder next to it. Params, tags,
dataset sources and mlflow_run.json are recorded with their secrets redacted
(rayalign.redaction); the connection itself uses the real tracking URI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rayalign.config import RunConfig, fingerprint, flatten, flatten_dict
from rayalign.redaction import redact_secrets

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

RUN_FILE = "mlflow_run.json"
MAX_PARAM_CHARS = 6000  # MLflow refuses longer param values


def recorded_params(params: dict[str, Any]) -> dict[str, str]:
    """Flat params as MLflow stores them: strings, secrets redacted (before the cut, so no part of
    a secret survives it), cut to MAX_PARAM_CHARS."""
    return {k: redact_secrets(str(v))[:MAX_PARAM_CHARS] for k, v in params.items()}


def default_tracking_uri(run_root: Path) -> str:
    """sqlite:/// store under the run root."""
    return f"sqlite:///{(run_root / 'mlflow.db').resolve()}"


def tracking_target(cfg: RunConfig, run_root: Path, tracking_uri: str | None = None) -> tuple[str, str]:
    """(tracking URI, experiment name) as MLflow users expect: the command line's --tracking-uri, then
    tracking.uri, then MLFLOW_TRACKING_URI, then a SQLite store under the run root; tracking.experiment,
    then MLFLOW_EXPERIMENT_NAME, then "rayalign"."""
    uri = tracking_uri or cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(run_root)
    return uri, cfg.tracking.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "rayalign"


class Tracker:
    """The MLflow run of one pipeline run. `uri` is the tracking URI it connects to (credentials
    included: PPO's workers log through it), `display_uri` the same with its secrets redacted, for
    everything shown or written."""

    def __init__(self, cfg: RunConfig, run_dir: Path, tracking_uri: str | None = None):
        import mlflow

        self.mlflow = mlflow
        self.run_dir = run_dir
        run_root = run_dir.parent
        self.uri, name = tracking_target(cfg, run_root, tracking_uri)
        self.display_uri = redact_secrets(self.uri)
        if self.display_uri != self.uri:
            # MLflow prints each run's URL, built from the raw URI, when the run ends.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        mlflow.set_tracking_uri(self.uri)
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            artifacts = (run_root / "mlartifacts").resolve().as_uri() if self.uri.startswith("sqlite:") else None
            experiment_id = mlflow.create_experiment(name, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        config_hash = fingerprint(cfg.model_dump(mode="json"))
        previous = self._previous_run(config_hash)
        self.resumed = previous is not None
        self.run = mlflow.start_run(run_id=previous, experiment_id=None if previous else experiment_id,
                                    run_name=None if previous else f"{cfg.name}-{config_hash[:6]}",
                                    log_system_metrics=cfg.tracking.system_metrics)
        self.run_id = self.run.info.run_id
        (run_dir / RUN_FILE).write_text(json.dumps({"run_id": self.run_id, "config_hash": config_hash,
                                                   "tracking_uri": self.display_uri}))
        if not self.resumed:
            mlflow.log_params(recorded_params(flatten(cfg)))
            self.set_tag("rayalign.run_dir", str(run_dir.resolve()))

    def _previous_run(self, config_hash: str) -> str | None:
        file = self.run_dir / RUN_FILE
        if not file.is_file():
            return None
        saved = json.loads(file.read_text())
        if saved.get("config_hash") != config_hash or saved.get("tracking_uri") != self.display_uri:
            return None
        from mlflow.exceptions import MlflowException

        try:
            self.mlflow.get_run(saved["run_id"])
        except MlflowException:  # the store was deleted or moved: start afresh
            return None
        return saved["run_id"]

    def log_metrics(self, metrics: dict[str, float], prefix: str = "", step: int | None = None) -> None:
        self.mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()}, step=step)

    def log_missing_steps(self, steps: list[tuple[int, dict[str, float]]], prefix: str = "") -> None:
        """(step, metrics) series into the active run as '<prefix><name>', but the steps the run already
        has (logged live by a training stage's workers), so neither a rerun nor a tracking outage
        during training leaves a step missing or twice."""
        if not steps:
            return
        probe = f"{prefix}{next(iter(steps[0][1]))}"
        run_id = self.mlflow.active_run().info.run_id
        have = {m.step for m in self.mlflow.MlflowClient().get_metric_history(run_id, probe)}
        for step, metrics in steps:
            if step not in have:
                self.log_metrics(metrics, prefix, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.mlflow.log_artifacts(str(path), artifact_path)
        else:
            self.mlflow.log_artifact(str(path), artifact_path)

    def log_model(self, model_dir: Path, name: str, registered_name: str | None = None) -> str:
        """The HF checkpoint at `model_dir` as an MLflow transformers model (text generation) of the
        active run, registered under `registered_name` when given; returns its model id."""
        import importlib.metadata

        import mlflow.transformers

        # Pinned from this environment: MLflow would otherwise load the model to infer them.
        requirements = [f"{p}=={importlib.metadata.version(p)}" for p in ("transformers", "torch", "safetensors")]
        info = mlflow.transformers.log_model(str(model_dir), name=name, task="text-generation",
                                             pip_requirements=requirements, registered_model_name=registered_name)
        return info.model_id

    def log_figure(self, fig, artifact_file: str) -> None:
        """A matplotlib figure as an image artifact of the active run; the figure is closed."""
        import matplotlib.pyplot as plt

        self.mlflow.log_figure(fig, artifact_file)
        plt.close(fig)

    def log_dataset(self, table, name: str, source: Path, context: str, model_id: str | None = None) -> None:
        """Record a stage dataset as an MLflow input (lineage), with its schema and digest; with
        `model_id`, as the data that logged model was evaluated on."""
        import mlflow.data

        frame = table.to_pandas()
        # MLflow's schema inference rejects list columns; lineage needs only the scalar ones.
        scalar = [c for c in frame.columns if not str(table.schema.field(c).type).startswith("list")]
        dataset = mlflow.data.from_pandas(frame[scalar], source=redact_secrets(str(source.resolve())), name=name)
        from mlflow.entities import LoggedModelInput

        self.mlflow.log_input(dataset, context=context, model=LoggedModelInput(model_id) if model_id else None)

    @contextmanager
    def child_run(self, name: str, params: dict[str, Any], consumed: dict[str, str],
                  produced: dict[str, str]) -> Iterator[str]:
        """A nested run under the pipeline's run (e.g. one per training stage); yields its id.

        Its tags `rayalign.consumed.*` and `rayalign.produced.*` name the checkpoints and
        datasets it read and wrote: a run that consumed what another produced is its descendant.
        """
        with self.mlflow.start_run(run_name=name, nested=True, experiment_id=self.run.info.experiment_id) as run:
            self.mlflow.log_params(recorded_params(flatten_dict(params)))
            self.mlflow.set_tags(redact_secrets({"rayalign.stage": name,
                                                 **{f"rayalign.consumed.{k}": v for k, v in consumed.items()},
                                                 **{f"rayalign.produced.{k}": v for k, v in produced.items()}}))
            yield run.info.run_id

    def tag(self, key: str) -> str | None:
        """A tag of the pipeline's run."""
        return self.mlflow.get_run(self.run_id).data.tags.get(key)

    def set_tag(self, key: str, value: Any) -> None:
        """A tag on the pipeline's run (on the active nested run inside child_run), secrets redacted."""
        self.mlflow.set_tag(key, redact_secrets(str(value)))

    def end(self, status: str = "FINISHED") -> None:
        while self.mlflow.active_run() is not None:  # a failing child run first, then the pipeline's
            self.mlflow.end_run(status=status)
