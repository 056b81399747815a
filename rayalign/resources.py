"""Check, before a stage starts, that the Ray cluster can hold what the stage asks for.

A stage whose actors or workers cannot be placed does not fail in Ray: it waits, silently,
for resources that may never come. `ensure_resources(stage_bundles(cfg, stage), wait_s, stage)`
turns that into a prompt `ResourceError` naming the stage, what is missing and the fix, after
asking the cluster's autoscaler (if any) for the missing nodes for up to `wait_s` seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from rayalign.config import ActorResources, RunConfig, TrainResources

Bundle = dict[str, float]


class ResourceError(RuntimeError):
    """The cluster cannot hold a stage's actors or workers: what is missing and how to fix it."""


def actor_bundles(res: ActorResources) -> list[Bundle]:
    """One bundle per actor of the pool's minimum size: Ray Data starts those before any row moves."""
    bundle = {k: float(v) for k, v in (("CPU", res.num_cpus), ("GPU", res.num_gpus)) if v}
    return [dict(bundle) for _ in range(res.min_actors)]


def train_bundles(res: TrainResources) -> list[Bundle]:
    """One bundle per Ray Train worker. Ray Train V2's controller asks for no resources (num_cpus=0)."""
    bundle = {k: float(v) for k, v in (("CPU", res.cpus_per_worker), ("GPU", 1 if res.use_gpu else 0)) if v}
    return [dict(bundle) for _ in range(res.num_workers)]


def _reference_runs_actors(cfg: RunConfig) -> bool:
    return cfg.needs_reference() and not cfg.reference.reuse_sampler_logprobs


def _section_resources(cfg: RunConfig, section: str) -> TrainResources | None:
    """cfg.<section>.resources; None when this config has no such section or it is switched off."""
    part = getattr(cfg, section, None)
    if part is None or not getattr(part, "enabled", True):
        return None
    return getattr(part, "resources", None)


def _train_section(section: str) -> Callable[[RunConfig], list[Bundle]]:
    def bundles(cfg: RunConfig) -> list[Bundle]:
        res = _section_resources(cfg, section)
        return train_bundles(res) if res is not None else []
    return bundles


def _select(cfg: RunConfig) -> list[Bundle]:
    # Pairwise ranking with a reward-model judge scores candidates in a pool with the score settings.
    sel = cfg.select
    if sel.strategy == "pairwise_ranking" and getattr(sel, "judge", "reward") == "reward_model":
        return actor_bundles(cfg.score.resources)
    return []


def _evaluate(cfg: RunConfig) -> list[Bundle]:
    # Evaluation chains three actor pools (vLLM sampler with the sample settings, reference
    # forward pass, gold reward). Ray Data provisions pools asynchronously and frees each when
    # its work is done, so they need not fit at once (the 2-CPU demo runs three 1-CPU pools):
    # what evaluation needs to start is the sampler pool.
    return actor_bundles(cfg.sample.resources)


# Stage name -> the bundles it needs to start. A stage missing here needs no actors or workers.
STAGE_BUNDLES: dict[str, Callable[[RunConfig], list[Bundle]]] = {
    "sft": _train_section("sft"),
    "label_sample": lambda cfg: actor_bundles(cfg.sample.resources),  # vLLM with the sample settings
    "label": lambda cfg: actor_bundles(cfg.score.resources),  # gold-reward actors
    # Trains first; scoring its held-out pairs afterwards reuses score.resources.
    "reward_model": _train_section("reward_model"),
    "sample": lambda cfg: actor_bundles(cfg.sample.resources),
    "reference": lambda cfg: actor_bundles(cfg.reference.resources) if _reference_runs_actors(cfg) else [],
    "score": lambda cfg: actor_bundles(cfg.score.resources),
    "select": _select,
    "train": lambda cfg: train_bundles(cfg.train.resources),
    "evaluate": _evaluate,
}

_POOL = "{}.resources.min_actors / num_gpus / num_cpus"
_WORKERS = "{}.resources.num_workers / use_gpu / cpus_per_worker"
# Where each stage's resources are set, for the error message.
STAGE_SETTINGS: dict[str, str] = {
    "sft": _WORKERS.format("sft"),
    "label_sample": _POOL.format("sample"),
    "label": _POOL.format("score"),
    "reward_model": _WORKERS.format("reward_model"),
    "sample": _POOL.format("sample"),
    "reference": _POOL.format("reference") + " (or reference.reuse_sampler_logprobs=true)",
    "score": _POOL.format("score"),
    "select": _POOL.format("score") + " (the reward-model judge uses them)",
    "train": _WORKERS.format("train"),
    "evaluate": _POOL.format("sample") + " (evaluation samples with them)",
}


def stage_bundles(cfg: RunConfig, stage: str) -> list[Bundle]:
    """The resource bundles `stage` needs to start ([] for stages that run no actors or workers)."""
    return [b for b in STAGE_BUNDLES[stage](cfg) if b] if stage in STAGE_BUNDLES else []


def node_totals() -> list[Bundle]:
    """Total resources of every alive node of the connected Ray cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def fits(bundles: list[Bundle], nodes: list[Bundle]) -> bool:
    """Whether the bundles pack onto the nodes' totals, each bundle on a single node (first fit, largest first)."""
    free = [dict(node) for node in nodes]
    for bundle in sorted(bundles, key=lambda b: (b.get("GPU", 0), b.get("CPU", 0), sorted(b.items())), reverse=True):
        for node in free:
            if all(node.get(k, 0.0) >= v for k, v in bundle.items()):
                for k, v in bundle.items():
                    node[k] = node.get(k, 0.0) - v
                break
        else:
            return False
    return True


def _fmt(bundle: Bundle) -> str:
    keys = sorted(bundle, key=lambda k: ({"GPU": 0, "CPU": 1}.get(k, 2), k))
    return "{" + ", ".join(f"{k}: {bundle[k]:g}" for k in keys) + "}"


def _explain(bundles: list[Bundle], nodes: list[Bundle], stage: str, wait_s: float) -> str:
    shapes = Counter(_fmt(b) for b in bundles)
    needs = " + ".join(f"{n} × {shape}" for shape, n in shapes.items())
    keys = sorted({k for b in bundles for k in b})
    largest = {k: max((node.get(k, 0.0) for node in nodes), default=0.0) for k in keys}
    total = {k: sum(node.get(k, 0.0) for node in nodes) for k in keys}
    too_big = [k for k in keys if any(b.get(k, 0.0) > largest[k] for b in bundles)]
    if too_big:
        have = {k: v for k, v in largest.items() if v}
        what = (f"the cluster has at most {_fmt(have) if have else 'nothing'} per node"
                + "".join(f"; no node has {k}" for k in too_big if not largest[k]))
    else:
        what = f"they do not fit on its {len(nodes)} node(s) together (in total {_fmt(total)})"
    waited = (f"no node offering them joined within ray.resource_wait_s={wait_s:g} s" if wait_s > 0 else
              "ray.resource_wait_s=0, so the autoscaler was not asked")
    return (f"stage {stage!r} needs {needs}; {what} ({waited}). Fix: lower "
            f"{STAGE_SETTINGS.get(stage, 'the stage resources')}, add nodes (or an autoscaler worker type) "
            "that offer them, or raise ray.resource_wait_s to give the autoscaler time")


def ensure_resources(bundles: list[Bundle], wait_s: float, stage: str, poll_s: float = 1.0) -> None:
    """Return once the cluster's nodes can hold `bundles`; raise ResourceError if they cannot.

    The check is on the nodes' total resources (what is busy now frees up later). When the
    bundles do not fit and `wait_s` > 0, the autoscaler is asked for them
    (ray.autoscaler.sdk.request_resources) and the nodes are polled every `poll_s` seconds for
    up to `wait_s`. The request is withdrawn afterwards either way so that idle nodes can be
    scaled down again; the stage's own actors or workers then keep the nodes busy.

    The request is one cluster-wide slot, last writer wins: Ray Data and Ray Train write their
    own merged requests into it while they run, so on a cluster shared with another running
    pipeline this request may be overwritten before the nodes arrive.
    """
    bundles = [b for b in bundles if any(v > 0 for v in b.values())]
    if not bundles or fits(bundles, nodes := node_totals()):
        return
    if wait_s > 0:
        from ray.autoscaler import sdk

        sdk.request_resources(bundles=bundles)
        try:
            deadline = time.monotonic() + wait_s
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(poll_s, left))
                if fits(bundles, nodes := node_totals()):
                    return
        finally:
            sdk.request_resources(bundles=[])
    raise ResourceError(_explain(bundles, nodes, stage, wait_s))
