"""The stage graph of a config: which stages run, once or once per round, in what order, and
the cache key of each (its own settings chained with its inputs' keys)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rayalign.config import RunConfig, fingerprint
from rayalign.pipeline.stage import Stage


# Part of every cache key: raised when a change to the code alters what stages produce (a fixed
# bias, a new random stream), so outputs made by older code are recomputed, not reused.
# 2: separate random streams per stage, token-id prompts, the forward-pass evaluation KL, the
#    training loop's warm-up, leftover steps and data order.
OUTPUT_VERSION = 2


@dataclass(frozen=True)
class Node:
    """One run of a stage: the stage, and its round (0 for a stage outside the rounds)."""

    stage: Stage
    round: int = 0

    @property
    def id(self) -> str:
        """Its output folder: the stage name, with .rN for rounds after the first."""
        return self.stage.name if self.round <= 1 else f"{self.stage.name}.r{self.round}"


def plan(cfg: RunConfig, stages: Sequence[Stage]) -> list[Node]:
    """The nodes this config runs, in order: the active stages (of rayalign.pipeline.stages.PIPELINE,
    say), the per-round ones (one contiguous block of the list) repeated for rounds 1..cfg.rounds."""
    rounds = cfg.rounds
    active = [s for s in stages if s.active(cfg)]
    block = [i for i, s in enumerate(active) if s.per_round]
    if block and block != list(range(block[0], block[-1] + 1)):
        raise ValueError("per-round stages must follow each other in the stage list: "
                         + ", ".join(s.name for s in active))
    if not block:
        return [Node(s) for s in active]
    first, last = block[0], block[-1] + 1
    return ([Node(s) for s in active[:first]]
            + [Node(s, r) for r in range(1, rounds + 1) for s in active[first:last]]
            + [Node(s) for s in active[last:]])


def resolve(stage: Stage, node: Node, before: Sequence[Node]) -> Node | None:
    """The node of `stage` that `node` sees among the nodes ahead of it (`before`): from inside the
    rounds, a per-round stage's node of the same round; from outside, its last round's; None when
    the plan has no such node."""
    if stage.per_round and node.stage.per_round:
        found = Node(stage, node.round)
        return found if found in before else None
    return next((n for n in reversed(before) if n.stage is stage), None)


def latest_policy(before: Sequence[Node]) -> Node | None:
    """The last policy-producing node of `before` (the nodes ahead of some node, in order)."""
    producers = [n for n in before if n.stage.produces_policy]
    return producers[-1] if producers else None


def inputs(node: Node, before: Sequence[Node]) -> list[Node]:
    """The nodes `node` reads, of those ahead of it (`before`): its reads, in its round for
    per-round stages, and the latest policy when it starts from one."""
    wanted = [resolve(s, node, before) for s in node.stage.reads]
    if node.stage.starts_from_policy:
        wanted.append(latest_policy(before))
    return list(dict.fromkeys(n for n in wanted if n is not None))


def cache_keys(nodes: Sequence[Node], cfg: RunConfig) -> dict[str, str]:
    """Cache key of every node, by node id: its stage's settings (and, after round 1, its round
    settings) chained with its inputs' keys. Round 1's keys do not depend on the number of rounds."""
    keys: dict[str, str] = {}
    for i, node in enumerate(nodes):
        chained = {n.id: keys[n.id] for n in inputs(node, nodes[:i])}
        settings = node.stage.settings(cfg) + (node.stage.round_settings(cfg) if node.round > 1 else [])
        keys[node.id] = fingerprint(OUTPUT_VERSION, node.id, chained, settings)
    return keys
