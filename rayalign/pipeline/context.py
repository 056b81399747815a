"""What a stage's run gets: the config, the run directory and its store, the tracker, and where
the other stages of the run put their outputs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rayalign.config import RunConfig
from rayalign.pipeline.graph import Node, latest_policy, resolve
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.store import StageStore
from rayalign.progress import Progress
from rayalign.tracking import Tracker


class StageError(RuntimeError):
    """A stage that cannot produce its output, with the reason and the fix."""


@dataclass(frozen=True)
class RunContext:
    cfg: RunConfig
    run_dir: Path
    store: StageStore
    base_policy: str  # model.policy as a local checkpoint
    tracker: Tracker
    nodes: tuple[Node, ...] = ()  # the run's plan, in order
    keys: dict[str, str] = field(default_factory=dict)  # cache key of every node, by id
    node: Node | None = None  # the node being run
    progress: Progress = field(default_factory=Progress)  # the live progress of the running stage

    def at(self, node: Node) -> RunContext:
        """This context as seen by `node`."""
        return replace(self, node=node)

    @property
    def round(self) -> int:
        return self.node.round if self.node else 0

    def stream(self, name: str) -> str:
        """The random stream of a per-round stage's draws: `name` in round 1, name.rN after, so that
        rounds never share draws (and round 1's stay those of a one-round run)."""
        return name if self.round <= 1 else f"{name}.r{self.round}"

    def _seen(self) -> list[Node]:
        # The nodes up to the current one: what a stage may read.
        return list(self.nodes[:self.nodes.index(self.node) + 1]) if self.node in self.nodes else list(self.nodes)

    def runs(self, stage: Stage) -> bool:
        """Whether this run has `stage` up to the current node (graph.resolve: the current round's
        node of a per-round stage, seen from inside the rounds)."""
        return resolve(stage, self.node, self._seen()) is not None

    def path(self, stage: Stage) -> Path:
        """The output folder of `stage` as the current node sees it (graph.resolve); a stage the plan
        does not have yet keeps its plain name, so a stage can name its own future output."""
        node = resolve(stage, self.node, self._seen()) if self.node else None
        return self.store.path(node.id if node is not None else stage.name)

    def latest_policy(self) -> str:
        """The policy the current node starts from: the model of the last policy-producing node
        before it (the SFT model; in round 2, round 1's aligned model), else model.policy."""
        node = latest_policy(self._seen()[:-1])
        return str(self.store.path(node.id) / "model") if node is not None else self.base_policy

    def train_name(self) -> str:
        """Ray Train run name of the current (training) node: the same node and inputs resume the same run."""
        return f"{self.run_dir.name}-{self.node.id}-{self.keys[self.node.id]}"
