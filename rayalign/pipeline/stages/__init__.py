"""The pipeline's stages, one module each; PIPELINE is their run order. A stage is added by
writing its module (one `STAGE = Stage(...)`, see rayalign.pipeline.stage) and listing it here."""

from rayalign.pipeline.stages import (evaluate, evaluate_sft, label, label_sample, ppo, prompts, reference,
                                      reward_model, sample, score, select, sft, train)

PIPELINE = (
    prompts.STAGE,
    sft.STAGE,
    evaluate_sft.STAGE,
    label_sample.STAGE,
    label.STAGE,
    reward_model.STAGE,
    sample.STAGE,
    reference.STAGE,
    score.STAGE,
    select.STAGE,
    train.STAGE,
    ppo.STAGE,
    evaluate.STAGE,
)
