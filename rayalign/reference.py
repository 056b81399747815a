"""Reference log-probs: a batched forward of π_ref over every sampled response, as a Ray Data actor."""

from __future__ import annotations

import pyarrow as pa
import torch

from rayalign.data.ray_io import set_torch_threads
from rayalign.logprobs import pad_batch, sequence_logprobs


def load_causal_lm(model_path: str, dtype: str, device: str):
    """An eval-mode causal LM and its pad id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return model, pad_id


class ReferenceLogprobs:
    """Callable class for map_batches: adds `column` = log π(response | prompt) under `model_path`."""

    def __init__(self, model_path: str, dtype: str, column: str = "ref_logprob", torch_threads: int | None = None):
        set_torch_threads(torch_threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.pad_id = load_causal_lm(model_path, dtype, self.device)
        self.column = column

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        tensors = pad_batch(batch.column("prompt_token_ids").to_pylist(),
                            batch.column("response_token_ids").to_pylist(), self.pad_id)
        logps = sequence_logprobs(self.model, *(t.to(self.device) for t in tensors))
        return batch.append_column(pa.field(self.column, pa.float64()),
                                   pa.array(logps.double().cpu().numpy()))
