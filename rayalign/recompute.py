"""Transformer layers that recompute their cheap elementwise intermediates in the backward instead
of keeping them for it: the same values and gradients, fewer activations kept.

- A SwiGLU MLP, down_proj(silu(gate_proj(x)) * up_proj(x)), keeps four [tokens, intermediate]
  tensors under autograd: gate (for silu's gradient), silu(gate) and up (for the product's), and
  the product (for down_proj's weight gradient). Two suffice: silu(gate) and the product are
  elementwise in gate and up. gate_proj and up_proj still run as modules; the product and
  down_proj run in one function, so where down_proj is more than a plain nn.Linear (a LoRA layer,
  a quantised one) or carries hooks (ZeRO-3 gathers its weight in one) the MLP runs its own
  forward, unchanged.
- An RMSNorm, weight · x / rms(x) computed in fp32, keeps x in fp32 and the normalised x; x in its
  own dtype and the per-row 1/rms suffice. It runs inside its own module call, so its hooks stay.

`recompute_activations` does this for every MLP and norm whose forward is transformers' Llama one
(Llama, Mistral, Qwen2/3, Granite, Phi-3 norms, ...: most Llama-derived models copy it); other
layers keep their own forward.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLUDown(torch.autograd.Function):
    """F.linear(silu(gate) * up, weight, bias), keeping gate and up only for the backward."""

    @staticmethod
    def forward(ctx, gate, up, weight, bias):
        ctx.save_for_backward(gate, up, weight)
        return F.linear(F.silu(gate) * up, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        gate, up, weight = ctx.saved_tensors
        act = F.silu(gate)
        grad_product = grad.matmul(weight)
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[2]:
            grad_weight = grad.flatten(0, -2).T.matmul((act * up).flatten(0, -2))
        if ctx.needs_input_grad[3]:  # False without a bias
            grad_bias = grad.flatten(0, -2).sum(0)
        grad_gate = torch.ops.aten.silu_backward(grad_product * up, gate)
        return grad_gate, grad_product * act, grad_weight, grad_bias


class RMSNorm(torch.autograd.Function):
    """weight · (x / rms(x)) as transformers' LlamaRMSNorm computes it (fp32 statistics, the
    normalised x cast back to x's dtype), keeping x and 1/rms only for the backward."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        x32 = x.float()
        inv_rms = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, inv_rms)
        return weight * (x32 * inv_rms).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, inv_rms = ctx.saved_tensors
        x32 = x.float()
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad * (x32 * inv_rms).to(x.dtype)).sum_to_size(weight.shape)
        grad_normed = (grad * weight).float()
        # d(x·r)/dx with r = (mean(x²) + eps)^-½: r·g − x·r³·mean(g·x)
        grad_x = grad_normed * inv_rms - x32 * inv_rms.pow(3) * (grad_normed * x32).mean(-1, keepdim=True)
        return grad_x.to(x.dtype), grad_weight, None


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_pre_hooks or module._forward_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def _mlp_forward(self, x):
    down = self.down_proj
    if not torch.is_grad_enabled() or type(down) is not nn.Linear or _hooked(down):
        return type(self).forward(self, x)
    return SwiGLUDown.apply(self.gate_proj(x), self.up_proj(x), down.weight, down.bias)


def _norm_forward(self, hidden_states):
    if not torch.is_grad_enabled():
        return type(self).forward(self, hidden_states)
    return RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)


def _same_forward(module: nn.Module, reference: type) -> bool:
    code, want = getattr(type(module).forward, "__code__", None), reference.forward.__code__
    return code is not None and (code.co_code, code.co_names, code.co_consts) == (
        want.co_code, want.co_names, want.co_consts)


def recompute_activations(model: nn.Module) -> int:
    """Make every Llama-style SwiGLU MLP and RMSNorm of `model` recompute its elementwise
    intermediates in the backward (same values and gradients, fewer activations kept); returns
    how many layers now do."""
    from transformers.activations import SiLUActivation
    from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

    patched = 0
    for module in model.modules():
        if _same_forward(module, LlamaMLP) and type(getattr(module, "act_fn", None)) in (nn.SiLU, SiLUActivation):
            module.forward = types.MethodType(_mlp_forward, module)
        elif _same_forward(module, LlamaRMSNorm):
            module.forward = types.MethodType(_norm_forward, module)
        else:
            continue
        patched += 1
    return patched
