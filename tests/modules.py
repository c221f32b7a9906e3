"""The eager modules the kernels must reproduce, written as their libraries write them."""

from __future__ import annotations

import torch


class LlamaRMSNorm(torch.nn.Module):
    """transformers' LlamaRMSNorm (also Mistral's and Qwen's)."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class GemmaRMSNorm(torch.nn.Module):
    """transformers' GemmaRMSNorm (Gemma 2 and 3 too): the weight is stored as an offset from 1."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.zeros(dim))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        output = self._norm(x.float())
        output = output * (1.0 + self.weight.float())
        return output.type_as(x)


class ScaledRMSNorm(torch.nn.Module):
    """Looks like an RMSNorm but is not one of the formulations (an extra scale): patch must leave it alone."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return (2.0 * self.weight * h).to(x.dtype)


def eager_module(formulation: str, hidden: int, weight: torch.Tensor | None, eps: float) -> torch.nn.Module:
    """The eager module that defines `formulation`, holding `weight` (None: no-weight nn.RMSNorm)."""
    if weight is None:
        return torch.nn.RMSNorm(hidden, eps=eps, elementwise_affine=False, device=None)
    module = {
        "torch": lambda: torch.nn.RMSNorm(hidden, eps=eps),
        "llama": lambda: LlamaRMSNorm(hidden, eps=eps),
        "gemma": lambda: GemmaRMSNorm(hidden, eps=eps),
    }[formulation]()
    module.weight = torch.nn.Parameter(weight.detach().clone(), requires_grad=False)
    return module


def random_weight(formulation: str, hidden: int, dtype, device) -> torch.Tensor:
    """A weight around the module's neutral value (1 for multiplicative weights, 0 for Gemma's offset)."""
    centre = 0.0 if formulation == "gemma" else 1.0
    return (torch.randn(hidden, device=device) * 0.5 + centre).to(dtype)
