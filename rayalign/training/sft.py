"""Supervised fine-tuning: next-token loss on the response tokens only, length-bucketed batches."""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import torch

from rayalign.config import SFTConfig
from rayalign.logprobs import pad_batch
from rayalign.pretrained import load_model
from rayalign.training.loop import worker_fit

IGNORE_INDEX = -100  # positions the HF causal-LM loss skips


def sft_labels(input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Labels for the causal-LM loss: the token ids on response positions, IGNORE_INDEX elsewhere
    (prompt and padding), so only the response is learned."""
    return input_ids.masked_fill(~response_mask, IGNORE_INDEX)


def length_bucketed_order(lengths: Sequence[int], batch_size: int, seed: int, window_batches: int = 16) -> list[int]:
    """A row order whose consecutive runs of `batch_size` rows have similar lengths.

    Rows are shuffled, cut into windows of `window_batches` batches, sorted by length inside
    each window and cut into batches; the full batches are then shuffled (so training does
    not see lengths in order) and the one partial batch, if any, goes last.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * window_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    partial = [b for b in batches if len(b) < batch_size]
    full = [b for b in batches if len(b) == batch_size]
    rng.shuffle(full)
    return [i for b in full + partial for i in b]


def sft_batch_loss(model, batch: dict, device, pad_id: int) -> tuple[torch.Tensor, dict]:
    """Mean token loss over the response tokens of a micro-batch, and its statistics."""
    input_ids, attention_mask, response_mask = pad_batch(batch["prompt_token_ids"], batch["response_token_ids"],
                                                         pad_id)
    labels = sft_labels(input_ids, response_mask)
    out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), labels=labels.to(device))
    positions = attention_mask.numel()
    # The masks are on the host; the loss stays a tensor (the loop reads a step's statistics in one sync).
    return out.loss, {"loss": out.loss.detach(), "tokens": float(response_mask.sum().item()),
                      "padding_fraction": 1.0 - attention_mask.sum().item() / positions}


def train_loop(loop_config: dict) -> None:
    """Ray Train worker entry point of the sft stage."""
    from transformers import AutoModelForCausalLM

    cfg = SFTConfig.model_validate(loop_config["trainer"])

    def build(tokenizer):
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model = load_model(AutoModelForCausalLM, loop_config["model_path"], loop_config["trust_remote_code"],
                           dtype=torch.float32)
        return model, functools.partial(sft_batch_loss, pad_id=pad_id)

    worker_fit(loop_config, cfg, build)
