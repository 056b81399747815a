"""Reward-model training: a one-output sequence-classification head on a causal-LM backbone,
trained with the Bradley-Terry loss on (prompt, chosen, rejected) pairs."""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import torch

from rayalign.actors.reward_model import reward_inputs
from rayalign.config import RewardModelConfig
from rayalign.losses import bradley_terry_loss
from rayalign.pretrained import load_model
from rayalign.training.loop import without_dropout, worker_fit


def prompt_grouped_order(prompt_ids: Sequence[str], seed: int) -> list[int]:
    """A row order that shuffles prompts and, inside each prompt, its pairs, keeping a prompt's
    pairs contiguous so a micro-batch holds few prompts whose responses recur across pairs."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, pid in enumerate(prompt_ids):
        groups.setdefault(pid, []).append(i)
    order = []
    for pid in rng.sample(sorted(groups), len(groups)):
        rows = groups[pid]
        order += rng.sample(rows, len(rows))
    return order


def distinct_index(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """The distinct texts, in first-seen order, and each text's position among them."""
    first: dict[str, int] = {}
    index = [first.setdefault(t, len(first)) for t in texts]
    return list(first), index


def rm_batch_loss(model, batch: dict, device, tokenizer) -> tuple[torch.Tensor, dict]:
    """Mean Bradley-Terry loss of a micro-batch of pairs, and its statistics.

    Sequences are prompt + response text encoded by `reward_inputs`, exactly as the reward-model
    scorer encodes them (the tokenizer's model_max_length is the stage's max_seq_len). A sequence
    in several pairs of the micro-batch is scored once and its reward shared, so its gradient sums
    over those pairs.
    """
    n = len(batch["prompt"])
    texts, index = distinct_index([p + c for p, c in zip(batch["prompt"], batch["chosen"])]
                                  + [p + r for p, r in zip(batch["prompt"], batch["rejected"])])
    enc = reward_inputs(tokenizer, texts).to(device)
    rewards = model(**enc).logits[:, 0].float()[torch.tensor(index, device=device)]
    chosen, rejected = rewards[:n], rewards[n:]
    losses = bradley_terry_loss(chosen, rejected)
    with torch.no_grad():
        # Tensors: the loop reads a step's statistics with one device sync.
        stats = {"loss": losses.mean(), "accuracy": (chosen > rejected).float().mean(),
                 "margin": (chosen - rejected).mean(), "tokens": enc["attention_mask"].sum()}
    return losses.mean(), stats


def load_reward_model(path: str, tokenizer, trust_remote_code: bool = False):
    """A causal-LM (or reward-model) checkpoint with a one-output score head; the head is new for an LM."""
    from transformers import AutoModelForSequenceClassification

    model = load_model(AutoModelForSequenceClassification, path, trust_remote_code, num_labels=1, dtype=torch.float32)
    # The score is read at the last non-pad token, which needs the pad id on the config.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def train_loop(loop_config: dict) -> None:
    """Ray Train worker entry point of the reward_model stage."""
    cfg = RewardModelConfig.model_validate(loop_config["trainer"])

    def build(tokenizer):
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # Saved with the checkpoint, so whoever scores with it truncates as training did.
        tokenizer.model_max_length = cfg.max_seq_len
        model = load_reward_model(loop_config["model_path"], tokenizer, loop_config["trust_remote_code"])
        model = without_dropout(model)
        return model, functools.partial(rm_batch_loss, tokenizer=tokenizer)

    worker_fit(loop_config, cfg, build)
