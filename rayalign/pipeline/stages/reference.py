"""reference: log π_ref of every sampled response, by a batched forward pass in actors, or the
sampler's own log-probs when the sampler is the reference at temperature 1 and top_p 1, or none
(SLiC needs no reference)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from rayalign.actors.logprobs import SequenceLogprobs
from rayalign.actors.runtime import map_with_actors
from rayalign.config import RunConfig, settings
from rayalign.data import schemas
from rayalign.data.parquet import parquet_rows, read_table
from rayalign.data.ray_io import read_stage
from rayalign.models import resolve_model
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import actor_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import remaining, timed_write, token_metrics
from rayalign.pipeline.stages import sample, sft


def initial_reference(ctx: RunContext) -> str:
    """The run's initial reference, of round 1's training and of every evaluation KL:
    model.reference, or the policy before preference training (RunConfig.reference_is_sampler)."""
    return resolve_model(ctx.cfg.model.reference, "model.reference") if ctx.cfg.model.reference else sft.policy(ctx)


def reference_model(ctx: RunContext) -> str:
    """The reference of the current round's training: the initial one, or after round 1 with
    rounds_reference=previous the previous round's policy (the one this round samples from)."""
    if ctx.round > 1 and ctx.cfg.rounds_reference == "previous":
        return ctx.latest_policy()
    return initial_reference(ctx)


def _reuse_sampler_logprob(batch: pa.Table) -> pa.Table:
    return batch.append_column("ref_logprob", batch["sampler_logprob"])


def _no_reference(batch: pa.Table) -> pa.Table:
    return batch.append_column(pa.field("ref_logprob", pa.float64()), pa.nulls(batch.num_rows, pa.float64()))


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    cfg = ctx.cfg
    ds, resumed = remaining(read_stage(ctx.path(sample.STAGE)), out, ("prompt_id", "sample_idx"))
    if not cfg.needs_reference():  # SLiC without the budget regulariser: no reference model at all
        ds = ds.map_batches(_no_reference, batch_format="pyarrow")
    elif cfg.reuses_sampler_logprobs(ctx.round):
        ds = ds.map_batches(_reuse_sampler_logprob, batch_format="pyarrow")
    else:
        ds = map_with_actors(ds, SequenceLogprobs, {"models": {"ref_logprob": reference_model(ctx)},
                                                    "dtype": cfg.model.dtype,
                                                    "trust_remote_code": cfg.model.trust_remote_code},
                             cfg.reference.resources, shards=True)
        ds = ctx.progress.counted(ds, lambda: parquet_rows(ctx.path(sample.STAGE)) - resumed, "responses")
    _, seconds = timed_write(ds, out, shards=True)
    return {**token_metrics(read_table(out), seconds), "resumed_rows": resumed}


def _runs_actors(cfg: RunConfig) -> bool:
    # Any round that does not reuse the sampler's log-probs runs the forward pass.
    return cfg.needs_reference() and not all(cfg.reuses_sampler_logprobs(r) for r in range(1, cfg.rounds + 1))


STAGE = Stage(
    name="reference",
    run=run,
    active=lambda cfg: not cfg.ppo.enabled,  # the ppo stage samples, scores and trains itself
    reads=(sample.STAGE,),
    per_round=True,
    settings=lambda cfg: [settings(cfg.reference), cfg.model.reference, cfg.model.dtype, cfg.needs_reference()],
    round_settings=lambda cfg: [cfg.rounds_reference],
    resumable=True,
    needs=lambda cfg: actor_bundles(cfg.reference.resources) if _runs_actors(cfg) else [],
    needs_set_by="reference.resources.min_actors / num_gpus / num_cpus (or reference.reuse_sampler_logprobs=true)",
    schema=schemas.REFERENCE,
)
