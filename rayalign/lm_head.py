"""Log-probs of chosen tokens with the LM head run on the positions that predict them only, a chunk
of positions at a time, so no [batch, length, vocab] logits tensor exists in forward or backward.

A causal LM's logits are its output embeddings applied to the decoder's last hidden state. The
decoder runs through the model's own forward (a DeepSpeed engine's too: its hooks and ZeRO-3
gathers stay in place) with the LM head kept to no position (`logits_to_keep` an empty index);
a forward hook on the decoder hands over its last hidden state. The head then runs on the gathered
positions in chunks of about LOGITS_CHUNK_BYTES of fp32 logits, each under activation
checkpointing: the backward recomputes a chunk's logits instead of keeping them. A model whose
logits are more than that (soft-capped or scaled logits, say) fails `plain_head` and gets its
logits from its own forward instead.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

LOGITS_CHUNK_BYTES = 64 * 2**20  # fp32 logits per chunk: ~340 positions at a 49k vocabulary


def _module(model) -> torch.nn.Module:
    return getattr(model, "module", model)  # a DeepSpeed engine runs its module


def decoder_hidden(model, inputs: dict) -> torch.Tensor:
    """The decoder's last hidden state [B, L, H] (after its final norm) for `inputs`, the LM head
    run on no position."""
    captured = []

    def keep(_module, _args, output):
        if not captured:  # the first call: activation checkpointing may rerun parts, never the decoder
            captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    hook = _module(model).get_decoder().register_forward_hook(keep)
    try:
        model(**inputs, use_cache=False,
              logits_to_keep=torch.empty(0, dtype=torch.long, device=inputs["input_ids"].device))
    finally:
        hook.remove()
    return captured[0]


def plain_head(model) -> bool:
    """Whether `model`'s logits are its output embeddings over the decoder's last hidden state,
    checked once per model on eight tokens in eval mode (the answer is kept on the module)."""
    module = _module(model)
    if not hasattr(module, "_rayalign_plain_head"):
        head = module.get_output_embeddings()
        ids = torch.arange(1, 9, device=next(module.parameters()).device).unsqueeze(0)
        training = module.training
        module.eval()  # dropout would make the two forwards differ
        with torch.no_grad():
            own = model(input_ids=ids).logits.float()
            hidden = decoder_hidden(model, {"input_ids": ids})
            module._rayalign_plain_head = head is not None and torch.allclose(
                head(hidden).float(), own, atol=1e-4, rtol=1e-3)
        module.train(training)
    return module._rayalign_plain_head


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] at every position, in fp32, without materialising the log-softmax."""
    logits = logits.float()
    return torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)


def _chunk_logprobs(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return target_logprobs(head(hidden), targets)


def scored_logprobs(model, inputs: dict, rows: torch.Tensor, positions: torch.Tensor,
                    targets: torch.Tensor) -> torch.Tensor:
    """log π(targets[i] | the context at inputs' row rows[i], position positions[i]), shape [M];
    differentiable. `inputs` are the model's keyword inputs (input_ids among them)."""
    if not plain_head(model):
        first = int(positions.min()) if len(positions) else 0
        logits = model(**inputs, use_cache=False, logits_to_keep=inputs["input_ids"].shape[1] - first).logits
        return target_logprobs(logits[rows, positions - first], targets)
    hidden = decoder_hidden(model, inputs)[rows, positions]
    head = _module(model).get_output_embeddings()
    # ZeRO-3 leaves head.weight empty outside its forward; ds_shape keeps the full shape.
    vocab = getattr(head, "out_features", None) or getattr(head.weight, "ds_shape", head.weight.shape)[0]
    chunk = max(16, LOGITS_CHUNK_BYTES // (4 * vocab))
    parts = [checkpoint(_chunk_logprobs, head, hidden[s:s + chunk], targets[s:s + chunk], use_reentrant=False)
             for s in range(0, len(targets), chunk)]
    return torch.cat(parts) if parts else hidden.new_zeros(0)
