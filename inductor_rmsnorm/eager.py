"""Eager opt-in: `rms_norm(...)` and `patch(model)` / `unpatch(model)`."""

from __future__ import annotations

import copy
import logging

import torch

from . import ops
from .numerics import ulp_difference
from .reference import rms_norm_reference

logger = logging.getLogger("inductor_rmsnorm")

ON_UNSUPPORTED = ("fallback", "error")


def _check_mode(on_unsupported: str) -> None:
    if on_unsupported not in ON_UNSUPPORTED:
        raise ValueError(f"on_unsupported={on_unsupported!r} is not one of {ON_UNSUPPORTED}")


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    eps: float | None = 1e-6,
    *,
    formulation: str = "torch",
    on_unsupported: str = "fallback",
) -> torch.Tensor:
    """RMSNorm over the last dimension of `x` with the kernels, in the given formulation.

    `eps=None` means the epsilon of the computation's float type (float32 for 16-bit inputs), as `F.rms_norm`
    does. Where no kernel serves the call (hidden size, dtypes, a non-contiguous last dimension) the eager torch
    computation runs with `on_unsupported="fallback"`, and a RuntimeError names the reason with `"error"` (on
    every device: the size rule does not depend on where the tensor lives). Inputs that need gradients take the
    torch computation, so training stays correct; a module's weight is a Parameter that requires grad, so the
    kernels serve patched modules under `torch.no_grad()` / `torch.inference_mode()` (as in `generate`).
    """
    if on_unsupported != "fallback":  # inline: the default costs no function call
        _check_mode(on_unsupported)
    if eps is None:
        eps = torch.finfo(torch.promote_types(x.dtype, torch.float32)).eps
    needs_grad = (x.requires_grad or (weight is not None and weight.requires_grad)) and torch.is_grad_enabled()
    # The hot path first: on a small eager call this function's own cost is most of the wall time.
    if x.is_cuda and not needs_grad and not torch.compiler.is_compiling():
        out = ops.try_run_kernel(x, weight, eps, formulation)
        if out is not None:
            return out
    ops.check_arguments(x, weight, formulation)
    reason = ops.why_no_kernel(x, weight)
    if reason is not None:
        if on_unsupported == "error":
            raise RuntimeError(f"inductor_rmsnorm: {reason}")
        return rms_norm_reference(x, weight, eps, formulation)
    if needs_grad:
        return rms_norm_reference(x, weight, eps, formulation)
    if x.is_cuda and not torch.compiler.is_compiling():
        return ops.run_kernel(x, weight, eps, formulation)
    return ops.rms_norm(x, weight, eps, formulation)


class FastRMSNorm(torch.nn.Module):
    """What `patch` puts in place of an RMSNorm module: the same weight and eps, the module's own formulation."""

    def __init__(self, original: torch.nn.Module, weight, eps, formulation: str, on_unsupported: str):
        super().__init__()
        self.weight = weight  # the original Parameter (or None): state_dict keys and sharing are unchanged
        self.eps = eps
        self.formulation = formulation
        self.on_unsupported = on_unsupported
        object.__setattr__(self, "original", original)  # kept for unpatch, not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, formulation=self.formulation, on_unsupported=self.on_unsupported)

    def extra_repr(self) -> str:
        hidden = None if self.weight is None else self.weight.shape[0]
        return f"{hidden}, eps={self.eps}, formulation={self.formulation!r}"


def _hf_style_eps(module: torch.nn.Module) -> float | None:
    for name in ("variance_epsilon", "eps"):
        value = getattr(module, name, None)
        if isinstance(value, float):
            return value
    return None


def _identify_formulation(module: torch.nn.Module, eps: float) -> str | None:
    """Which formulation a Hugging Face-style module computes, found by running a copy of it on random data.

    The probe uses a random weight (a weight of ones hides the rounding order) and 16-bit activations, where the
    formulations differ: "llama" vs "torch" by rounding (or, with a float32 weight, by output dtype), "gemma" by
    value. A module that matches none (an extra scale, an offset...) is not identified and is left alone.
    """
    probe = copy.deepcopy(module)
    weight = probe.weight
    x_dtype = weight.dtype if weight.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    with torch.no_grad():
        weight.copy_(torch.randn_like(weight, dtype=torch.float32).mul_(0.5).add_(1.0).to(weight.dtype))
        x = torch.randn(64, weight.shape[0], dtype=x_dtype, device=weight.device)
        try:
            actual = probe(x)
        except Exception as error:  # a module that cannot run on the probe is not one we can stand in for
            logger.info("not patching %s: probing it raised %r", type(module).__name__, error)
            return None
        for formulation in ("llama", "torch", "gemma"):
            expected = rms_norm_reference(x, weight, eps, formulation)
            if (
                isinstance(actual, torch.Tensor)
                and actual.dtype == expected.dtype
                and actual.shape == expected.shape
                and ulp_difference(actual, expected).within(max_ulps=1, max_fraction=0.01)
            ):
                return formulation
    return None


def _replacement_for(module: torch.nn.Module, on_unsupported: str, identified: dict) -> FastRMSNorm | None:
    if isinstance(module, torch.nn.RMSNorm):
        if len(module.normalized_shape) != 1:
            return None
        return FastRMSNorm(module, module.weight, module.eps, "torch", on_unsupported)
    weight = getattr(module, "weight", None)
    eps = _hf_style_eps(module)
    if (
        "rmsnorm" not in type(module).__name__.lower()
        or not isinstance(weight, torch.nn.Parameter)
        or weight.dim() != 1
        or eps is None
        or list(module.children())
    ):
        return None
    probe_key = (type(module), weight.dtype, weight.device)  # one probe per module class, dtype and device
    if probe_key not in identified:
        identified[probe_key] = _identify_formulation(module, eps)
        if identified[probe_key] is None:
            logger.warning("not patching %s: its output matches no known RMSNorm formulation", type(module).__name__)
    formulation = identified[probe_key]
    if formulation is None:
        return None
    return FastRMSNorm(module, weight, eps, formulation, on_unsupported)


def patch(model: torch.nn.Module, *, on_unsupported: str = "fallback") -> int:
    """Swap every `torch.nn.RMSNorm` and Hugging Face-style RMSNorm module in `model` for a `FastRMSNorm`.

    Returns how many were swapped; `unpatch(model)` puts the originals back. Modules whose formulation cannot
    be identified are left alone (and logged).
    """
    _check_mode(on_unsupported)
    swapped = 0
    identified: dict = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FastRMSNorm):
                continue
            replacement = _replacement_for(child, on_unsupported, identified)
            if replacement is not None:
                setattr(parent, name, replacement)
                swapped += 1
    return swapped


def unpatch(model: torch.nn.Module) -> int:
    """Undo `patch`: put the original modules back. Returns how many were restored."""
    restored = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FastRMSNorm):
                setattr(parent, name, child.original)
                restored += 1
    return restored

