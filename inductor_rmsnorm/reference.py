"""The reference math: each formulation written as the eager module writes it, in torch, on any device.

The op's CPU implementation and the eager fallback run this, and the tests compare the kernels against it.
"""

from __future__ import annotations

import torch


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor | None, eps: float, formulation: str) -> torch.Tensor:
    return normalized_with(x, torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps), weight, formulation)


def normalized_with(x: torch.Tensor, inv_rms: torch.Tensor, weight: torch.Tensor | None,
                    formulation: str) -> torch.Tensor:
    """The formulation's output from a given fp32 1 / rms of each row (the tests also pass one summed in fp64)."""
    h = x.float() * inv_rms
    if weight is None:
        return h.to(x.dtype)
    if formulation == "torch":  # torch.rms_norm's composite: fp32 multiply, cast once
        return (h * weight.float()).to(x.dtype)
    if formulation == "llama":  # LlamaRMSNorm.forward: round, then multiply (and promote)
        return weight * h.to(x.dtype)
    if formulation == "gemma":  # GemmaRMSNorm.forward
        return (h * (1.0 + weight.float())).to(x.dtype)
    if formulation == "llama_single_rounding":  # what Inductor generates for LlamaRMSNorm by default
        return (h * weight.float()).to(torch.promote_types(x.dtype, weight.dtype))
    raise ValueError(f"unknown formulation {formulation!r}")


def fused_add_rms_norm_reference(x, residual, weight, eps, formulation):
    """The decoder layer's `s = x + residual; y = norm(s)`: returns (y, s)."""
    s = x + residual
    return rms_norm_reference(s, weight, eps, formulation), s
