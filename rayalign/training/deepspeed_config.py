"""The DeepSpeed config dict for a TrainConfig."""

from __future__ import annotations

from rayalign.config import TrainerConfig


def deepspeed_config(cfg: TrainerConfig, world_size: int) -> dict:
    """ZeRO stage, precision, AdamW and warm-up from the train config."""
    config = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_batch_size": cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": cfg.max_grad_norm,
        # torch's AdamW: DeepSpeed's FusedAdam/CPUAdam need a ~60 s JIT build on first use.
        "optimizer": {"type": "AdamW", "params": {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay,
                                                  "betas": list(cfg.adam_betas), "torch_adam": True}},
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.bf16},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if cfg.warmup_steps:
        config["scheduler"] = {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": cfg.learning_rate,
            "warmup_num_steps": cfg.warmup_steps, "warmup_type": "linear"}}
    return config
