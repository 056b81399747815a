"""Typed run configuration: the sections' schema (sections), loading with overrides (loading),
flat parameters and cache-key hashes (hashing)."""

from rayalign.config.hashing import fingerprint, flatten, flatten_dict, settings
from rayalign.config.loading import ConfigError, apply_override, load_config, preset_names
from rayalign.config.sections import (
    ActorResources,
    DataConfig,
    EvaluateConfig,
    LabelConfig,
    ModelConfig,
    PPOConfig,
    RayConfig,
    ReferenceConfig,
    RewardModelConfig,
    RunConfig,
    SampleConfig,
    ScoreConfig,
    SelectConfig,
    SFTConfig,
    TextTrainerConfig,
    TrackingConfig,
    TrainConfig,
    TrainerConfig,
    TrainResources,
)

__all__ = ["ActorResources", "ConfigError", "DataConfig", "EvaluateConfig", "LabelConfig", "ModelConfig", "PPOConfig",
           "RayConfig", "ReferenceConfig", "RewardModelConfig", "RunConfig", "SFTConfig", "SampleConfig",
           "ScoreConfig", "SelectConfig", "TextTrainerConfig", "TrackingConfig", "TrainConfig", "TrainResources",
           "TrainerConfig", "apply_override", "fingerprint", "flatten", "flatten_dict", "load_config",
           "preset_names", "settings"]
