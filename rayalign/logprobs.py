"""Summed response log-probs of token sequences under a causal LM (reference stage and training)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rayalign.lm_head import scored_logprobs, target_logprobs


def pad_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int):
    """Right-padded input_ids, attention_mask and response_mask for prompt+response sequences."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    width = max(lengths)
    input_ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
    response_mask = torch.zeros((len(lengths), width), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(list(p) + list(r), dtype=torch.long)
        attention_mask[i, : len(p) + len(r)] = 1
        response_mask[i, len(p): len(p) + len(r)] = True
    return input_ids, attention_mask, response_mask


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, with_entropy: bool = False,
                   start: int = 1):
    """log π(x_{j} | x_<j) of tokens j = start .. L − 1, shape [B, L − start]; differentiable. With the
    default start = 1, position j holds the log-prob of token j + 1, so a response's tokens sit where
    response_mask[:, 1:] is true. The LM head runs on the positions that predict those tokens only
    (transformers' logits_to_keep), so a later `start` saves its compute and its logits' memory.
    With `with_entropy`, also the entropy of π(· | x_<j) at each of them (not differentiated)."""
    if not 1 <= start < input_ids.shape[1]:
        raise ValueError(f"start must be in [1, {input_ids.shape[1] - 1}], got {start}")
    keep = input_ids.shape[1] - start + 1  # positions start − 1 .. L − 1; the last predicts nothing
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits[:, :-1].float()
    log_z = torch.logsumexp(logits, -1)
    logprobs = torch.gather(logits, -1, input_ids[:, start:].unsqueeze(-1)).squeeze(-1) - log_z
    if not with_entropy:
        return logprobs
    with torch.no_grad():
        entropy = log_z - (logits.softmax(-1) * logits).sum(-1)  # H = log Z − E_π[logit]
    return logprobs, entropy


def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      response_mask: torch.Tensor) -> torch.Tensor:
    """Σ log π(y_t | x, y_<t) over response positions, shape [B]; differentiable. Logits are made
    from the batch's earliest response token on: the prompts' would be discarded (on the default
    task they are about two thirds of the positions, and the LM head a fifth of the model)."""
    scored = response_mask[:, 1:].any(0).nonzero()
    start = int(scored[0]) + 1 if len(scored) else 1
    return (token_logprobs(model, input_ids, attention_mask, start=start) * response_mask[:, start:]).sum(-1)


def pack_pairs(prompts: Sequence[Sequence[int]], chosen: Sequence[Sequence[int]],
               rejected: Sequence[Sequence[int]], pad_id: int):
    """One right-padded row per pair, prompt + chosen + rejected: input_ids [N, W], position_ids
    [N, W] (the rejected response restarts where the prompt ends, as if it followed the prompt
    alone), attention [N, W, W] (query i may attend key j: causal, j a token of the row, and no
    rejected token sees a chosen one; a padding slot also sees itself), and the segment of each slot
    [N, W] (0 prompt, 1 chosen, 2 rejected, 3 padding). Each response token then has the context it
    has in its own sequence."""
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(f"{len(prompts)} prompts, {len(chosen)} chosen and {len(rejected)} rejected responses")
    if any(not p for p in prompts):
        raise ValueError("an empty prompt: the first response token needs a position to be predicted from")
    width = max(len(p) + len(c) + len(r) for p, c, r in zip(prompts, chosen, rejected))
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(prompts), width), dtype=torch.long)
    segment = torch.full((len(prompts), width), 3, dtype=torch.long)
    for i, (p, c, r) in enumerate(zip(prompts, chosen, rejected)):
        n = len(p) + len(c) + len(r)
        input_ids[i, :n] = torch.tensor([*p, *c, *r], dtype=torch.long)
        position_ids[i, :n] = torch.cat([torch.arange(len(p) + len(c)), torch.arange(len(p), len(p) + len(r))])
        segment[i, :n] = torch.tensor([0] * len(p) + [1] * len(c) + [2] * len(r))
    query, key = segment.unsqueeze(2), segment.unsqueeze(1)
    attention = torch.ones(width, width, dtype=torch.bool).tril() & (key < 3) & ~((query == 2) & (key == 1))
    attention |= torch.eye(width, dtype=torch.bool)  # a padding slot sees itself: no row without a key
    return input_ids, position_ids, attention, segment


def pair_logprobs(model, prompts: Sequence[Sequence[int]], chosen: Sequence[Sequence[int]],
                  rejected: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ log π(y | x) of each pair's chosen and of its rejected response, two tensors of shape [N];
    differentiable. One forward over pack_pairs' rows runs each prompt once instead of once per
    response: the numbers of sequence_logprobs over two prompt+response rows per pair, up to float
    rounding. The attention mask goes to the model as an additive 4D mask, which transformers' eager
    and SDPA attention take as it is (flash-attention kernels take none); the LM head runs on the
    response tokens' predicting positions only, a chunk at a time (lm_head.scored_logprobs)."""
    ids, positions, attention, segment = (t.to(device) for t in pack_pairs(prompts, chosen, rejected, pad_id))
    dtype = next(model.parameters()).dtype
    mask = torch.zeros(attention.shape, dtype=dtype, device=device).masked_fill_(~attention, torch.finfo(dtype).min)
    # Slot s predicts slot s + 1, except a response's first token, which the prompt's last slot
    # predicts (the rejected response's first token follows the chosen one's last in the row).
    prompt_len = (segment == 0).sum(-1, keepdim=True)
    part = segment[:, 1:]
    source = torch.where(part != segment[:, :-1], prompt_len - 1, torch.arange(ids.shape[1] - 1, device=device))
    rows, slots = ((part == 1) | (part == 2)).nonzero(as_tuple=True)
    inputs = {"input_ids": ids, "attention_mask": mask.unsqueeze(1), "position_ids": positions}
    logps = scored_logprobs(model, inputs, rows, source[rows, slots], ids[rows, slots + 1])
    sums = logps.new_zeros(2, len(ids)).index_put((part[rows, slots] - 1, rows), logps, accumulate=True)
    return sums[0], sums[1]


def group_by_prompt(prompts: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """The distinct prompts in order of first appearance, and each row's index into them."""
    index: dict[tuple[int, ...], int] = {}
    rows = [index.setdefault(tuple(p), len(index)) for p in prompts]
    return [list(p) for p in index], rows


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [N, longest] and their attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _continue_responses(model, cache, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                        response_mask: torch.Tensor) -> torch.Tensor:
    """Logits predicting response tokens 1.. of every row, [B, T − 1, V], from `cache`, the rows'
    prompts (right-padded: `prompt_mask` [B, P]). The pad slots stay in the cache, masked, so positions
    are explicit: response token t of a prompt of length n sits at position n + t."""
    inputs = response_ids[:, :-1]  # a response's last token predicts nothing we score
    positions = prompt_mask.sum(-1, keepdim=True) + torch.arange(inputs.shape[1], device=inputs.device)
    attention = torch.cat([prompt_mask, response_mask[:, :-1]], -1)
    return model(input_ids=inputs, attention_mask=attention, position_ids=positions, past_key_values=cache,
                 use_cache=True).logits


def shared_prompt_token_logprobs(model, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                                 pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(y_t | x, y_<t) of each row's response tokens, [B, T] (T: the longest response, 0 past a
    row's end), and the response mask [B, T]: the numbers token_logprobs gives over prompt+response,
    with each distinct prompt run once however many rows share it.

    One forward over the distinct prompts (right-padded) fills a KV cache and predicts each prompt's
    first response token from its last position; the cache's rows are gathered to the batch's rows
    (input order: rows of different prompts may interleave) and one forward continues every
    response from it."""
    device = model.device
    distinct, row_prompt = group_by_prompt(prompts)
    prompt_ids, prompt_mask = (t.to(device) for t in right_pad(distinct, pad_id))
    prefill = model(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True)
    row_prompt = torch.tensor(row_prompt, device=device)
    response_ids, response_mask = (t.to(device) for t in right_pad(responses, pad_id))
    last = prompt_mask.sum(-1)[row_prompt] - 1
    # [:, :T]: no position at all when every response is empty.
    logits = prefill.logits[row_prompt, last].unsqueeze(1)[:, : response_ids.shape[1]]
    if response_ids.shape[1] > 1:
        cache = prefill.past_key_values
        cache.batch_select_indices(row_prompt)
        continued = _continue_responses(model, cache, prompt_mask[row_prompt], response_ids, response_mask)
        logits = torch.cat([logits, continued], 1)
    response_mask = response_mask.bool()
    return target_logprobs(logits, response_ids) * response_mask, response_mask


def shared_prompt_logprobs(model, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                           pad_id: int) -> torch.Tensor:
    """Σ log π(y_t | x, y_<t) over each row's response, shape [B], each distinct prompt run once
    (see shared_prompt_token_logprobs); what sequence_logprobs gives over pad_batch's tensors."""
    return shared_prompt_token_logprobs(model, prompts, responses, pad_id)[0].sum(-1)
