import copy

import pytest
import torch

from rayalign.recompute import recompute_activations

HIDDEN, INTERMEDIATE = 16, 48


def tiny(arch: str, **kw):
    """A two-layer random model in training mode (dropout is 0 in these configs)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    if arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=HIDDEN, n_layer=2, n_head=2,
                                          resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)).train()
    config, model = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    model = model(config(vocab_size=64, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, **kw)).train()
    with torch.no_grad():  # norm weights start at 1, where a wrong weight term in a gradient can hide
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def gradients(model, ids):
    model.zero_grad()
    logits = model(input_ids=ids).logits
    (logits * torch.linspace(-1, 1, logits.shape[-1])).sum().backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("arch, kw", [("llama", {}), ("llama", {"mlp_bias": True}), ("qwen2", {})])
def test_recomputing_layers_give_the_same_logits_and_gradients(arch, kw):
    model = tiny(arch, **kw)
    plain = copy.deepcopy(model)
    assert recompute_activations(model) == 7  # two MLPs, two norms in each layer, the final norm
    ids = torch.randint(0, 64, (3, 9), generator=torch.Generator().manual_seed(1))
    logits, grads = gradients(model, ids)
    want_logits, want_grads = gradients(plain, ids)
    torch.testing.assert_close(logits, want_logits)
    for (name, _), got, want in zip(model.named_parameters(), grads, want_grads):
        torch.testing.assert_close(got, want, msg=name)


def kept(model, ids, width: int) -> int:
    """Tensors `width` wide that the forward keeps for the backward (weights aside)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    found = set()

    def pack(t):
        if t.shape[-1] == width and t.untyped_storage().data_ptr() not in weights:
            found.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids).logits.sum()
    return len(found)


def test_fewer_activations_are_kept_for_the_backward():
    """Per MLP autograd keeps gate, silu(gate), up and their product, the recomputing MLP gate and up;
    per norm autograd keeps its input and the normalised input, the recomputing norm the input (the
    norm's output, kept by the next projection, aside)."""
    model, ids = tiny("llama"), torch.randint(0, 64, (2, 5))
    hidden_before = kept(model, ids, HIDDEN)
    assert kept(model, ids, INTERMEDIATE) == 4 * 2
    recompute_activations(model)
    assert kept(model, ids, INTERMEDIATE) == 2 * 2
    assert kept(model, ids, HIDDEN) == hidden_before - 5  # one fewer for each of the five norms


def test_layers_it_cannot_fuse_keep_their_own_forward():
    """GPT-2's MLP is no SwiGLU and its norm no RMSNorm; a down_proj with a hook on it (as ZeRO-3
    puts on every module) runs through its own forward, so the hook still sees it."""
    assert recompute_activations(tiny("gpt2")) == 0
    model = tiny("llama")
    recompute_activations(model)
    calls = []
    model.model.layers[0].mlp.down_proj.register_forward_pre_hook(lambda *_: calls.append(1))
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    assert calls == [1]
