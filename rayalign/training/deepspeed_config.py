"""The DeepSpeed config dict for a TrainConfig."""

from __future__ import annotations

from rayalign.config import TrainerConfig


def deepspeed_clips(cfg: TrainerConfig) -> bool:
    """Whether DeepSpeed clips the gradients and reports their norm (its ZeRO and bf16 optimizers);
    with ZeRO-0 in fp32 it would clip without keeping the norm, so the worker loop clips instead."""
    return cfg.zero_stage > 0 or cfg.bf16


def deepspeed_config(cfg: TrainerConfig, world_size: int) -> dict:
    """ZeRO stage, precision and AdamW from the train config; the warm-up schedule is the worker loop's
    (training.loop.warmup_factor)."""
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_batch_size": cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": cfg.max_grad_norm if deepspeed_clips(cfg) else 0.0,
        # The worker loop owns the accumulation boundary (engine.step() after a step's micro-batches),
        # so a shorter last step is still taken; it weights the losses itself (scale_wrt_gas=False).
        "managed_gradient_accumulation": False,
        # torch's AdamW: DeepSpeed's FusedAdam/CPUAdam need a ~60 s JIT build on first use.
        "optimizer": {"type": "AdamW", "params": {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay,
                                                  "betas": list(cfg.adam_betas), "torch_adam": True}},
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.bf16},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
