import pytest
import torch

from rayalign import lm_head
from rayalign.lm_head import decoder_hidden, plain_head, scored_logprobs


def load(path):
    """In training mode as the train stage has it: dropout off."""
    from transformers import AutoModelForCausalLM

    from rayalign.training.loop import without_dropout

    return without_dropout(AutoModelForCausalLM.from_pretrained(path).train())


def scored_positions(seed: int, rows: int, width: int, vocab: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (rows, width), generator=g)
    picked = torch.rand(rows, width - 1, generator=g) < 0.6
    r, p = picked.nonzero(as_tuple=True)
    return ids, r, p, ids[r, p + 1]


def full_logprobs(model, ids, rows, positions, targets):
    logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)
    return logp[rows, positions, targets]


def gradients(model, value):
    model.zero_grad()
    value.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("arch", ["tiny_model", "tiny_qwen2", "tiny_gpt2"])
def test_chunked_head_gives_the_full_logits_log_probs_and_gradients(arch, request, monkeypatch):
    model = load(request.getfixturevalue(arch))
    ids, rows, positions, targets = scored_positions(0, rows=3, width=30, vocab=model.config.vocab_size)
    # Chunks of 16 positions: several chunks, the last one partial.
    monkeypatch.setattr(lm_head, "LOGITS_CHUNK_BYTES", 16 * 4 * model.config.vocab_size)
    assert plain_head(model) and len(targets) > 40 and len(targets) % 16
    got = scored_logprobs(model, {"input_ids": ids}, rows, positions, targets)
    want = full_logprobs(model, ids, rows, positions, targets)
    assert got.shape == targets.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    weights = torch.linspace(-1, 1, len(targets))
    for a, b in zip(gradients(model, (got * weights).sum()), gradients(model, (want * weights).sum())):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_no_logits_of_more_than_a_chunk_are_kept_for_the_backward(tiny_model, monkeypatch):
    """No tensor of the vocabulary's width is kept from the forward for the backward: each chunk's
    logits are recomputed there (the full-logits forward keeps [batch, length, vocab])."""
    model = load(tiny_model)
    vocab = model.config.vocab_size
    monkeypatch.setattr(lm_head, "LOGITS_CHUNK_BYTES", 16 * 4 * vocab)
    ids, rows, positions, targets = scored_positions(1, rows=4, width=16, vocab=vocab)
    saved, weights = [], {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:  # activations, not the head's weight
            saved.append(t.shape)
        return t
    plain_head(model)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        scored_logprobs(model, {"input_ids": ids}, rows, positions, targets).sum().backward()
    assert saved and not [s for s in saved if s and s[-1] == vocab]

    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        full_logprobs(model, ids, rows, positions, targets).sum()
    assert max(torch.Size(s).numel() for s in saved if s and s[-1] == vocab) >= ids.numel() * vocab


def test_a_model_with_soft_capped_logits_takes_them_from_its_own_forward(tiny_model):
    """Gemma 2 caps its logits after the head: the chunked head would miss that, so such a model
    gets its logits from its forward, with the same numbers."""
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    vocab = len(AutoTokenizer.from_pretrained(tiny_model))
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                           head_dim=32, final_logit_softcapping=0.5)).train()
    ids, rows, positions, targets = scored_positions(2, rows=2, width=10, vocab=vocab)
    assert not plain_head(model)
    got = scored_logprobs(model, {"input_ids": ids}, rows, positions, targets)
    torch.testing.assert_close(got, full_logprobs(model, ids, rows, positions, targets), atol=1e-5, rtol=1e-5)


def test_decoder_hidden_is_what_the_head_reads(tiny_model):
    model = load(tiny_model).eval()
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        hidden = decoder_hidden(model, {"input_ids": ids})
        torch.testing.assert_close(model.get_output_embeddings()(hidden), model(input_ids=ids).logits)
