"""What every stage runner gets: the config, the run directory, its stage store and the tracker,
and the models the run's stages produced so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rayalign.config import RunConfig
from rayalign.data.store import StageStore
from rayalign.models import resolve_model
from rayalign.tracking import Tracker


class StageError(RuntimeError):
    """A stage that cannot produce its output, with the reason and the fix."""


@dataclass
class RunContext:
    cfg: RunConfig
    run_dir: Path
    store: StageStore
    base_policy: str  # model.policy as a local checkpoint
    tracker: Tracker
    keys: dict[str, str] = field(default_factory=dict)  # cache key of every active stage

    @property
    def policy_path(self) -> str:
        """The policy that samples and is aligned: the SFT model when the sft stage runs."""
        return str(self.store.path("sft") / "model") if self.cfg.sft.enabled else self.base_policy

    @property
    def reference_path(self) -> str:
        """The one reference model: log π_ref of training (reference stage) and of the evaluation KL.
        model.reference, or the policy that samples (RunConfig.reference_is_sampler)."""
        return resolve_model(self.cfg.model.reference) if self.cfg.model.reference else self.policy_path

    @property
    def reward_model_path(self) -> str:
        """The score stage's reward model: score.reward_model_path or the trained one."""
        return self.cfg.score.reward_model_path or self.trained_reward_model

    @property
    def reward_model_backbone(self) -> str:
        """The reward model's starting checkpoint: reward_model.base_model or the (SFT) policy."""
        base = self.cfg.reward_model.base_model
        return resolve_model(base) if base else self.policy_path

    @property
    def trained_reward_model(self) -> str:
        return str(self.store.path("reward_model") / "model")

    def train_name(self, stage: str) -> str:
        """Ray Train run name of a training stage: the same stage and inputs resume the same run."""
        return f"{self.run_dir.name}-{stage}-{self.keys[stage]}"
