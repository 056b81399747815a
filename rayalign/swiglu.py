"""SwiGLU MLPs whose backward recomputes the activation instead of keeping it.

A Llama-style MLP, down_proj(silu(gate_proj(x)) * up_proj(x)), keeps four [tokens, intermediate]
tensors for the backward under autograd: gate (for silu's gradient), silu(gate) and up (for the
product's), and the product (for down_proj's weight gradient). Two suffice: silu(gate) and the
product are elementwise in gate and up, so the backward recomputes them at no matmul's cost. At
SmolLM2's shapes that drops a quarter of a training step's kept activations.

`recompute_swiglu` does this for every MLP of a model whose forward is transformers' LlamaMLP's
(Llama, Mistral, Qwen2/3, Gemma's shape with SiLU, OLMo 2, Granite...) and whose activation is
SiLU. The forward runs the same ops; gate_proj and up_proj still run as modules. down_proj's
product runs inside the fused function, so where down_proj is more than a plain nn.Linear (a
LoRA layer, a quantised one) or carries hooks (ZeRO-3 gathers its weight in one) the MLP runs
its own forward, unchanged.
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
        ctx.has_bias = bias is not None
        return F.linear(F.silu(gate) * up, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        gate, up, weight = ctx.saved_tensors
        act = F.silu(gate)
        grad_product = grad.matmul(weight)
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[2]:
            grad_weight = grad.flatten(0, -2).T.matmul((act * up).flatten(0, -2))
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad.flatten(0, -2).sum(0)
        grad_gate = torch.ops.aten.silu_backward(grad_product * up, gate)
        return grad_gate, grad_product * act, grad_weight, grad_bias


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_pre_hooks or module._forward_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def _forward(self, x):
    down = self.down_proj
    if not torch.is_grad_enabled() or type(down) is not nn.Linear or _hooked(down):
        return type(self).forward(self, x)
    return SwiGLUDown.apply(self.gate_proj(x), self.up_proj(x), down.weight, down.bias)


def _is_swiglu(module: nn.Module) -> bool:
    from transformers.activations import SiLUActivation
    from transformers.models.llama.modeling_llama import LlamaMLP

    code, llama = getattr(type(module).forward, "__code__", None), LlamaMLP.forward.__code__
    return (code is not None and (code.co_code, code.co_names) == (llama.co_code, llama.co_names)
            and type(getattr(module, "act_fn", None)) in (nn.SiLU, SiLUActivation))


def recompute_swiglu(model: nn.Module) -> int:
    """Make every SwiGLU MLP of `model` recompute its activation and product in the backward
    (same values and gradients, two fewer [tokens, intermediate] tensors kept per layer); returns
    how many MLPs now do."""
    patched = 0
    for module in model.modules():
        if _is_swiglu(module):
            module.forward = types.MethodType(_forward, module)
            patched += 1
    return patched
