"""Check, before a stage starts, that the Ray cluster can hold what the stage asks for.

A stage whose actors or workers cannot be placed does not fail in Ray: it waits, silently,
for resources that may never come. `ensure_resources(stage.needs(cfg), wait_s, stage, set_by)`
turns that into a prompt `ResourceError` naming the stage, what is missing and the fix, after
asking the cluster's autoscaler (if any) for the missing nodes for up to `wait_s` seconds.
"""

from __future__ import annotations

import time
from collections import Counter

from rayalign.config import ActorResources, TrainResources

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


def _explain(bundles: list[Bundle], nodes: list[Bundle], stage: str, set_by: str, wait_s: float) -> str:
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
            f"{set_by or 'the stage resources'}, add nodes (or an autoscaler worker type) "
            "that offer them, or raise ray.resource_wait_s to give the autoscaler time")


def ensure_resources(bundles: list[Bundle], wait_s: float, stage: str, set_by: str = "",
                     poll_s: float = 1.0) -> None:
    """Return once the cluster's nodes can hold `bundles`; raise ResourceError if they cannot,
    naming `stage` and the config keys that size its bundles (`set_by`).

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
    raise ResourceError(_explain(bundles, nodes, stage, set_by, wait_s))
