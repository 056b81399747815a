"""A stage, declared once: what it reads, which settings key its cache, how it runs, what it needs
from the cluster, what it tracks and what it adds to the run's summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from rayalign.config import RunConfig
from rayalign.pipeline.resources import Bundle

def _always(cfg: RunConfig) -> bool:
    return True


def _nothing(cfg: RunConfig) -> list:
    return []


@dataclass(frozen=True, eq=False)
class Stage:
    """One pipeline stage; each module of rayalign.pipeline.stages declares one as `STAGE`.

    name      the stage's output folder and its name in logs, manifests and MLflow.
    run       run(ctx, out) -> metrics: read the inputs through ctx, write the output into `out`
              (an empty folder; the runner commits it with a manifest), return the metrics.
    reads     the stages whose outputs it reads; their cache keys, when they run, chain into its own.
    settings  settings(cfg) -> the config parts that decide its output (config.settings(section)
              leaves resources out), hashed into its cache key.
    active    active(cfg) -> whether this config runs it (SFT and the reward-model chain are optional,
              an online trainer replaces the offline pair → train path).
    needs     needs(cfg) -> the resource bundles its actors or workers need to start;
              needs_set_by names the config keys that size them, for the error when they do not fit.
    schema    the columns its dataset must hold (None: its output is not one dataset).
    track     track(ctx, folder): MLflow logging of a committed output; also run for a reused
              output when a new MLflow run starts, so every run holds its whole lineage.
    summary   summary(folder, metrics) -> the entries it adds to summary.json.
    per_round it runs once per round of iterative training (output folders name.r2, name.r3, ...).
    round_settings  round_settings(cfg) -> the settings that decide only its rounds after the first
              (rounds_reference), hashed into those rounds' keys alone.
    resumable it writes its dataset in shards as its actor batches complete, and its run computes only
              what an interrupted run of the same cache key left undone (stage_tools.remaining):
              the runner keeps that run's partial folder instead of emptying it.
    produces_policy  its output folder holds a policy checkpoint (model/).
    starts_from_policy  it reads the latest policy: the model of the last policy-producing node
              before it (RunContext.latest_policy; model.policy when there is none), whose cache
              key chains into its own. In round 2 that is round 1's aligned model.
    """

    name: str
    run: Callable[..., dict[str, float]]  # run(ctx: RunContext, out: Path)
    reads: tuple[Stage, ...] = ()
    settings: Callable[[RunConfig], list[Any]] = _nothing
    active: Callable[[RunConfig], bool] = _always
    needs: Callable[[RunConfig], list[Bundle]] = _nothing
    needs_set_by: str = ""
    schema: pa.Schema | None = None
    track: Callable[..., None] | None = None  # track(ctx: RunContext, folder: Path)
    summary: Callable[[Path, dict], dict[str, Any]] | None = None
    per_round: bool = False
    round_settings: Callable[[RunConfig], list[Any]] = _nothing
    resumable: bool = False
    produces_policy: bool = False
    starts_from_policy: bool = False

    def bundles(self, cfg: RunConfig) -> list[Bundle]:
        """The bundles it needs to start under `cfg`: none when the config does not run it, and none
        for actors that reserve nothing."""
        return [b for b in self.needs(cfg) if b] if self.active(cfg) else []

    def __repr__(self) -> str:
        return f"Stage({self.name!r})"
