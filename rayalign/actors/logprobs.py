"""Sequence log-probs of sampled responses, as a Ray Data actor: log π_ref for the reference stage,
log π_θ and log π_ref for the evaluation KL. A batch's rows come k per prompt, so each distinct
prompt is run once and its responses continue from its KV cache (shared_prompt_logprobs)."""

from __future__ import annotations

import pyarrow as pa
import torch

from rayalign.actors.runtime import set_torch_threads
from rayalign.logprobs import shared_prompt_logprobs
from rayalign.pretrained import load_model, load_tokenizer


def load_causal_lm(model_path: str, dtype: str, device: str, trust_remote_code: bool = False):
    """An eval-mode causal LM and its pad id."""
    from transformers import AutoModelForCausalLM

    model = load_model(AutoModelForCausalLM, model_path, trust_remote_code, dtype=getattr(torch, dtype))
    model = model.to(device).eval()
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return model, pad_id


class SequenceLogprobs:
    """Callable class for map_batches: for each {column: model_path} in `models`, adds `column` =
    log π(response | prompt) under that model, every model through the same forward-pass code."""

    def __init__(self, models: dict[str, str], dtype: str, torch_threads: int | None = None,
                 trust_remote_code: bool = False):
        set_torch_threads(torch_threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.models = {column: load_causal_lm(path, dtype, self.device, trust_remote_code)
                       for column, path in models.items()}

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        prompts = batch.column("prompt_token_ids").to_pylist()
        responses = batch.column("response_token_ids").to_pylist()
        for column, (model, pad_id) in self.models.items():
            logps = shared_prompt_logprobs(model, prompts, responses, pad_id)
            batch = batch.append_column(pa.field(column, pa.float64()), pa.array(logps.double().cpu().numpy()))
        return batch
