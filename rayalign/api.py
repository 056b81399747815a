"""The Python API: `rayalign.run(...)`, what `rayalign run` does, for notebooks and scripts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rayalign.config import RunConfig, load_config


def run(config: str | Path | RunConfig | None = None, overrides: Sequence[str] = (), run_dir: str | Path | None = None,
        tracking_uri: str | None = None, log: Callable[[str], None] = print,
        progress: Callable[[str], None] | None = None) -> dict:
    """Run the pipeline and return its summary (the dict written to summary.json).

    `config` is a preset name, a YAML file, or a RunConfig (default: the 'default' preset);
    `overrides` are dotted `key=value` strings as on the command line (not with a RunConfig).
    Complete stages in `run_dir` (default runs/<name>) are reused, as on the command line.
    `log` gets rayalign's lines; `progress`, if given, the running stage's live progress line
    ('' when the stage ends), twice a second.

        >>> summary = rayalign.run("default", ["sample.k=4"])
        >>> summary["win_rate"], summary["aligned_model"]
    """
    from rayalign.pipeline.runner import run_pipeline

    if isinstance(config, RunConfig):
        if overrides:
            raise ValueError("overrides apply to a preset or YAML file; change a RunConfig with model_copy")
        cfg = config
    else:
        cfg = load_config(config, list(overrides))
    return run_pipeline(cfg, Path(run_dir) if run_dir else Path("runs") / cfg.name, tracking_uri=tracking_uri,
                        log=log, progress=progress)
