import torch

from rayalign.logprobs import pad_batch, sequence_logprobs


def test_pad_batch_masks_only_response_tokens():
    ids, attn, resp = pad_batch([[5, 6], [7]], [[8], [9, 10, 11]], pad_id=0)
    assert ids.tolist() == [[5, 6, 8, 0], [7, 9, 10, 11]]
    assert attn.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert resp.tolist() == [[False, False, True, False], [False, True, True, True]]


def test_padded_batch_equals_per_sequence_sums(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    prompts, responses = [[1, 20, 30], [1, 40]], [[50, 60], [70, 80, 90, 2]]
    with torch.no_grad():
        batched = sequence_logprobs(model, *pad_batch(prompts, responses, pad_id=0))
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ids = torch.tensor([p + r])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            # Response token t sits at position len(p) + t and is predicted from the position before it.
            expected = sum(logp[len(p) + t - 1, tok].item() for t, tok in enumerate(r))
            assert abs(batched[i].item() - expected) < 1e-4
