import random

import pyarrow as pa
import pytest
import torch

from rayalign.logprobs import (group_by_prompt, pack_pairs, pad_batch, pair_logprobs, sequence_logprobs,
                               shared_prompt_logprobs, shared_prompt_token_logprobs, token_logprobs)


def load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def test_pad_batch_masks_only_response_tokens():
    ids, attn, resp = pad_batch([[5, 6], [7]], [[8], [9, 10, 11]], pad_id=0)
    assert ids.tolist() == [[5, 6, 8, 0], [7, 9, 10, 11]]
    assert attn.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert resp.tolist() == [[False, False, True, False], [False, True, True, True]]


def test_padded_batch_equals_per_sequence_sums(tiny_model):
    model = load(tiny_model)
    prompts, responses = [[1, 20, 30], [1, 40]], [[50, 60], [70, 80, 90, 2]]
    with torch.no_grad():
        batched = sequence_logprobs(model, *pad_batch(prompts, responses, pad_id=0))
        for i, (p, r) in enumerate(zip(prompts, responses)):
            assert abs(batched[i].item() - per_sequence_sum(model, p, r)) < 1e-4


def per_sequence_sum(model, prompt, response) -> float:
    """Σ log π(response | prompt) from one unpadded forward over prompt+response."""
    logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + response])).logits[0, :-1].float(), -1)
    # Response token t sits at position len(prompt) + t and is predicted from the position before it.
    return sum(logp[len(prompt) + t - 1, tok].item() for t, tok in enumerate(response))


def test_group_by_prompt_keeps_first_appearance_order():
    assert group_by_prompt([[3, 4], [1], [3, 4], [1], [2]]) == ([[3, 4], [1], [2]], [0, 1, 0, 1, 2])


def test_shared_prompt_equals_per_sequence_sums(tiny_model):
    model = load(tiny_model)
    # Interleaved rows of two prompts of different lengths, responses of 1 to 4 tokens and an empty one.
    prompts = [[1, 20, 30], [1, 40], [1, 20, 30], [1, 40], [1, 20, 30]]
    responses = [[50, 60], [70, 80, 90, 2], [55], [75, 85, 95], []]
    with torch.no_grad():
        shared = shared_prompt_logprobs(model, prompts, responses, pad_id=0)
        expected = [per_sequence_sum(model, p, r) for p, r in zip(prompts, responses)]
        assert shared[-1].item() == 0.0
        assert shared.tolist() == pytest.approx(expected, abs=1e-4)
        assert shared_prompt_logprobs(model, [[1, 20]], [[]], pad_id=0).tolist() == [0.0]


def interleaved_batch(seed: int, vocab: int, k: int = 4):
    """Three prompts of 2, 9 and 17 tokens, k responses each (1 to 12 tokens, a 1-token one per
    prompt), their rows shuffled so that prompts interleave."""
    rng = random.Random(seed)
    rows = []
    for n in (9, 2, 17):
        prompt = [rng.randrange(1, vocab) for _ in range(n)]
        for j in range(k):
            length = 1 if j == 0 else rng.randrange(2, 13)
            rows.append((prompt, [rng.randrange(1, vocab) for _ in range(length)]))
    rng.shuffle(rows)
    return [p for p, _ in rows], [r for _, r in rows]


@pytest.mark.parametrize("arch", ["tiny_model", "tiny_qwen2", "tiny_gpt2"])
def test_shared_prompt_matches_padded_forward_per_token(arch, request):
    model = load(request.getfixturevalue(arch))
    prompts, responses = interleaved_batch(seed=0, vocab=model.config.vocab_size)
    with torch.no_grad():
        ids, attention, response = pad_batch(prompts, responses, pad_id=0)
        padded = token_logprobs(model, ids, attention)
        shared, mask = shared_prompt_token_logprobs(model, prompts, responses, pad_id=0)
    assert mask.sum(-1).tolist() == [len(r) for r in responses]
    for i in range(len(responses)):
        gap = (padded[i][response[i, 1:]] - shared[i][mask[i]]).abs().max().item()
        assert gap < 1e-4, (arch, i, gap)


def test_sequence_logprobs_actor_scores_every_model_alike(tiny_model, tiny_qwen2):
    from rayalign.actors.logprobs import SequenceLogprobs

    prompts, responses = interleaved_batch(seed=1, vocab=300, k=3)
    batch = pa.table({"prompt_id": [str(p) for p in prompts], "prompt_token_ids": prompts,
                      "response_token_ids": responses})
    out = SequenceLogprobs({"llama": tiny_model, "qwen2": tiny_qwen2}, dtype="float32")(batch)
    for column, path in (("llama", tiny_model), ("qwen2", tiny_qwen2)):
        with torch.no_grad():
            expected = sequence_logprobs(load(path), *pad_batch(prompts, responses, pad_id=0))
        for got, want, response in zip(out.column(column).to_pylist(), expected.tolist(), responses):
            assert abs(got - want) < 1e-4 * len(response)


def test_the_lm_head_runs_from_the_earliest_response_token_only(tiny_model):
    model = load(tiny_model)
    kept = []
    forward = model.forward

    def recording(*args, **kwargs):
        kept.append(kwargs.get("logits_to_keep"))
        return forward(*args, **kwargs)

    model.forward = recording
    prompts, responses = [[1, 20, 30, 31, 32], [1, 40, 41]], [[50, 60], [70, 80, 90, 2]]
    with torch.no_grad():
        sums = sequence_logprobs(model, *pad_batch(prompts, responses, pad_id=0))
    # Width 7; the earliest response token sits at position 3 (the second row's), so positions 2..6 are kept.
    assert kept == [5] and sums.shape == (2,)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        assert abs(sums[i].item() - per_sequence_sum(model, p, r)) < 1e-4


def test_pack_pairs_lays_out_prompt_chosen_rejected_with_the_rejected_blind_to_the_chosen():
    ids, positions, attention, segment = pack_pairs([[5, 6], [7]], [[8], [9, 10]], [[11, 12], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 8, 11, 12], [7, 9, 10, 0, 0]]
    assert positions.tolist() == [[0, 1, 2, 2, 3], [0, 1, 2, 0, 0]]
    assert segment.tolist() == [[0, 0, 1, 2, 2], [0, 1, 1, 3, 3]]
    assert attention[0].int().tolist() == [[1, 0, 0, 0, 0],
                                           [1, 1, 0, 0, 0],
                                           [1, 1, 1, 0, 0],
                                           [1, 1, 0, 1, 0],
                                           [1, 1, 0, 1, 1]]
    assert attention[1].int().tolist() == [[1, 0, 0, 0, 0],
                                           [1, 1, 0, 0, 0],
                                           [1, 1, 1, 0, 0],
                                           [1, 1, 1, 1, 0],
                                           [1, 1, 1, 0, 1]]
    with pytest.raises(ValueError, match="empty prompt"):
        pack_pairs([[]], [[1]], [[2]], pad_id=0)


@pytest.mark.parametrize("arch", ["tiny_model", "tiny_qwen2", "tiny_gpt2"])
def test_pair_logprobs_and_their_gradients_equal_two_padded_sequences_per_pair(arch, request):
    model = load(request.getfixturevalue(arch))
    prompts, responses = interleaved_batch(seed=2, vocab=model.config.vocab_size, k=4)
    prompts, chosen, rejected = prompts[::2], responses[::2], responses[1::2]
    chosen[1], rejected[2] = [], []  # an empty response on either side
    # Rejected tokens past the first, after a chosen response: what the mask must hide it from.
    assert sum(len(c) > 0 and len(r) > 1 for c, r in zip(chosen, rejected)) >= 2

    def gradient(logps):
        model.zero_grad()
        logps.sum().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    pc, pr = pair_logprobs(model, prompts, chosen, rejected, pad_id=0, device="cpu")
    packed = gradient(pc - 0.5 * pr)
    logps = sequence_logprobs(model, *pad_batch(prompts + prompts, chosen + rejected, pad_id=0))
    n = len(prompts)
    assert pc.tolist() == pytest.approx(logps[:n].tolist(), abs=1e-4)
    assert pr.tolist() == pytest.approx(logps[n:].tolist(), abs=1e-4)
    assert pc[1].item() == 0.0 and pr[2].item() == 0.0
    padded = gradient(logps[:n] - 0.5 * logps[n:])
    assert (packed - padded).abs().max().item() < 1e-4 * padded.abs().max().item()
