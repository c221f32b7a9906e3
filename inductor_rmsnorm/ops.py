"""`torch.ops.inductor_rmsnorm`: the op's schema, its fake, CPU (reference) and CUDA implementations.

    rms_norm(Tensor input, Tensor? weight, float eps, str formulation) -> Tensor
    rms_norm_out(Tensor(a!) out, Tensor input, Tensor? weight, float eps, str formulation) -> ()
    fused_add_rms_norm(Tensor input, Tensor residual, Tensor? weight, float eps, str formulation)
        -> (Tensor, Tensor)

`input` is [..., hidden]: every leading index is a row (token). `formulation` is one of
`dispatch.FORMULATIONS`. The output has `input`'s shape and `dispatch.output_dtype(...)`. `rms_norm_out` writes
into `out`, which may be `input` itself (in place). `fused_add_rms_norm` returns (rms_norm(input + residual),
input + residual), the sum rounded to the input dtype as eager adds: a decoder layer's residual add and norm.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import dispatch, jit
from .reference import fused_add_rms_norm_reference, rms_norm_reference

NAMESPACE = "inductor_rmsnorm"

_library = torch.library.Library(NAMESPACE, "DEF")
_library.define("rms_norm(Tensor input, Tensor? weight, float eps, str formulation) -> Tensor")
_library.define("rms_norm_out(Tensor(a!) out, Tensor input, Tensor? weight, float eps, str formulation) -> ()")
_library.define(
    "fused_add_rms_norm(Tensor input, Tensor residual, Tensor? weight, float eps, str formulation) -> (Tensor, Tensor)"
)

_VECTOR_BYTES = dispatch.VECTOR_BYTES  # a module global: the hot paths read it on every call


def check_arguments(input: torch.Tensor, weight: torch.Tensor | None, formulation: str) -> None:
    """Raise on input no implementation accepts (whatever the device or size)."""
    if formulation not in dispatch.FORMULATIONS:
        raise ValueError(f"formulation {formulation!r} is not one of {dispatch.FORMULATIONS}")
    if input.dim() < 1:
        raise ValueError("input must have at least one dimension: [..., hidden]")
    if weight is not None:
        if weight.dim() != 1 or weight.shape[0] != input.shape[-1]:
            raise ValueError(f"weight has shape {list(weight.shape)}; expected [{input.shape[-1]}] (the hidden size)")
        if weight.device != input.device:
            raise ValueError(f"weight is on {weight.device} but input is on {input.device}")


def why_no_kernel(input: torch.Tensor, weight: torch.Tensor | None) -> str | None:
    """Why the kernels cannot serve this call (size, dtypes, layout, a GPU too old), or None when they can."""
    # int(): the kernels are built per hidden size, so a symbolic one is specialised (one guard)
    hidden = int(input.shape[-1])
    reason = dispatch.unsupported_reason(hidden, input.dtype, None if weight is None else weight.dtype)
    if reason is None and hidden > 1 and input.stride(-1) != 1:
        reason = f"the last dimension of input is not contiguous (stride {input.stride(-1)}; the kernels need 1)"
    if reason is None and input.device.type == "cuda":
        reason = dispatch.gpu_reason(input.device.index)
    return reason


def _output_dtype(input: torch.Tensor, weight: torch.Tensor | None, formulation: str) -> torch.dtype:
    return dispatch.output_dtype(input.dtype, None if weight is None else weight.dtype, formulation)


def _check_out(out: torch.Tensor, input: torch.Tensor, weight: torch.Tensor | None, formulation: str) -> None:
    expected = _output_dtype(input, weight, formulation)
    if out.shape != input.shape or out.dtype != expected or out.device != input.device:
        raise ValueError(
            f"out is {out.dtype}{list(out.shape)} on {out.device}; expected {expected}{list(input.shape)} on "
            f"{input.device}"
        )


def check_kernel_arguments(input, weight, formulation, out=None) -> None:
    """Every implementation's checks: the op accepts exactly what the kernels serve, on every device, so the
    CPU implementation stands in faithfully for the CUDA one."""
    check_arguments(input, weight, formulation)
    if out is not None:
        _check_out(out, input, weight, formulation)
    reason = why_no_kernel(input, weight)
    if reason is not None:
        raise RuntimeError(f"inductor_rmsnorm: {reason}")


def check_residual(input: torch.Tensor, residual: torch.Tensor) -> None:
    """The fused-add op's residual: the input's shape, dtype and device, last dimension contiguous."""
    if residual.shape != input.shape or residual.dtype != input.dtype or residual.device != input.device:
        raise ValueError(
            f"residual is {residual.dtype}{list(residual.shape)} on {residual.device}; the kernels need the input's "
            f"{input.dtype}{list(input.shape)} on {input.device}"
        )
    if input.shape[-1] > 1 and residual.stride(-1) != 1:
        raise RuntimeError(f"inductor_rmsnorm: the last dimension of residual is not contiguous (stride "
                           f"{residual.stride(-1)}; the kernels need 1)")


# ---------------------------------------------------------------------------------------------------- fake
@torch.library.register_fake(f"{NAMESPACE}::rms_norm")
def _rms_norm_fake(input, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation)
    return input.new_empty(input.shape, dtype=_output_dtype(input, weight, formulation))


@torch.library.register_fake(f"{NAMESPACE}::fused_add_rms_norm")
def _fused_add_rms_norm_fake(input, residual, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation)
    check_residual(input, residual)
    return input.new_empty(input.shape, dtype=_output_dtype(input, weight, formulation)), input.new_empty(input.shape)


@torch.library.register_fake(f"{NAMESPACE}::rms_norm_out")
def _rms_norm_out_fake(out, input, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation, out)


# ----------------------------------------------------------------------------------------------------- CPU
def _rms_norm_cpu(input, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation)
    return rms_norm_reference(input, weight, eps, formulation)


def _rms_norm_out_cpu(out, input, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation, out)
    out.copy_(rms_norm_reference(input, weight, eps, formulation))


def _fused_add_rms_norm_cpu(input, residual, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation)
    check_residual(input, residual)
    return fused_add_rms_norm_reference(input, residual, weight, eps, formulation)


_library.impl("rms_norm", _rms_norm_cpu, "CPU")
_library.impl("fused_add_rms_norm", _fused_add_rms_norm_cpu, "CPU")
_library.impl("rms_norm_out", _rms_norm_out_cpu, "CPU")


# ---------------------------------------------------------------------------------------------------- CUDA
class _Plan(NamedTuple):
    """What a call needs once its arguments are known to be served: checked and built once per key."""

    launch: object  # the instance's C launcher (ctypes); returns a CUDA error code
    launch_contiguous: object  # the same for contiguous rows, with fewer arguments
    instance: jit.KernelInstance
    output_dtype: torch.dtype
    keeps_dtype: bool  # output dtype == input dtype: `empty_like(input)` without a dtype argument, which is cheaper


# (hidden size, input dtype, weight dtype, formulation, device index) -> plan; the hot path's only lookup.
_plans: dict[tuple, _Plan] = {}
_fused_add_plans: dict[tuple, _Plan] = {}  # the same, for the fused residual-add variant


def _plan_for(input: torch.Tensor, weight: torch.Tensor | None, formulation: str, fused_add: bool = False) -> _Plan:
    plans = _fused_add_plans if fused_add else _plans
    lookup = (input.shape[-1], input.dtype, None if weight is None else weight.dtype, formulation, input.device.index)
    plan = plans.get(lookup)
    if plan is None:
        key = jit.KernelKey.create(*lookup[:4], fused_add=fused_add)
        instance = jit.load(key, jit.arch_for_device(input.device))
        plan = plans[lookup] = _Plan(instance.launch, instance.launch_contiguous, instance, key.output_dtype,
                                     key.output_dtype == input.dtype)
    return plan


def _row_stride(t: torch.Tensor) -> int | None:
    """Elements between consecutive rows of `t` seen as [rows, hidden], or None if no single stride exists."""
    row_stride, span = None, None
    for size, stride in zip(reversed(t.shape[:-1]), reversed(t.stride()[:-1])):
        if size == 1:
            continue
        if row_stride is None:
            row_stride = stride
        elif stride != span:
            return None
        span = stride * size
    return t.shape[-1] if row_stride is None else row_stride


def _kernel_row_stride(t: torch.Tensor) -> int | None:
    """The row stride through which the kernel can address `t` with 16-byte vectors, or None if it cannot."""
    row_stride = t.shape[-1] if t.is_contiguous() else _row_stride(t)
    if row_stride is None or (t.data_ptr() | (row_stride * t.element_size())) % _VECTOR_BYTES:
        return None
    return row_stride


def _addressable(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`t` (or an aligned contiguous copy of it) and the row stride the kernel reads it through."""
    row_stride = _kernel_row_stride(t)
    if row_stride is None:
        t = t.clone(memory_format=torch.contiguous_format)
        row_stride = t.shape[-1]
    return t, row_stride


def _aligned_weight(weight: torch.Tensor | None) -> torch.Tensor | None:
    if weight is not None and (weight.stride(0) != 1 or weight.data_ptr() % _VECTOR_BYTES):
        return weight.clone(memory_format=torch.contiguous_format)
    return weight


def _launch(plan: _Plan, out: torch.Tensor, input: torch.Tensor, weight: torch.Tensor | None, eps: float) -> None:
    """Run the kernel from `input` into `out` (both non-empty); layouts it cannot address go through copies."""
    input, x_stride = _addressable(input)
    weight = _aligned_weight(weight)
    target = out
    out_stride = _kernel_row_stride(out)
    rows = input.numel() // input.shape[-1]
    if out_stride is None or (rows > 1 and out_stride < out.shape[-1]):  # unaddressable or overlapping rows
        target = torch.empty(out.shape, dtype=out.dtype, device=out.device)
        out_stride = out.shape[-1]
    device = input.device.index
    code = plan.launch(
        target.data_ptr(), input.data_ptr(), None if weight is None else weight.data_ptr(), rows, x_stride,
        out_stride, eps, torch._C._cuda_getCurrentRawStream(device), device,
    )
    if code:
        plan.instance.raise_error(code)
    if target is not out:
        out.copy_(target)


def _weight_in_place(weight: torch.Tensor, hidden: int, device: int) -> bool:
    """Whether the kernels can read `weight` where it is: one contiguous, 16-byte aligned dimension of `hidden`
    elements on `device`. (stride() == (1,): one dimension, contiguous.)"""
    return (weight.data_ptr() % _VECTOR_BYTES == 0 and weight.stride() == (1,) and weight.numel() == hidden
            and weight.get_device() == device)


def _served(plans: dict, input: torch.Tensor, weight: torch.Tensor | None, formulation: str):
    """(plan, rows, device, input pointer, weight pointer) for a CUDA call shaped like one served before (same
    dtypes, size, formulation and device; input contiguous and aligned, weight in place) with rows to normalise;
    None otherwise: the caller then takes the checked path, which also builds the plan looked up here. The hot
    paths below start here; every line is paid on each call."""
    shape = input.shape
    if not shape:
        return None
    hidden = shape[-1]
    device = input.get_device()
    if weight is None:
        plan = plans.get((hidden, input.dtype, None, formulation, device))
        weight_ptr = None
    else:
        plan = plans.get((hidden, input.dtype, weight.dtype, formulation, device))
        if not _weight_in_place(weight, hidden, device):
            return None
        weight_ptr = weight.data_ptr()
    x_ptr = input.data_ptr()
    if plan is None or x_ptr % _VECTOR_BYTES or not input.is_contiguous():
        return None
    rows = input.numel() // hidden
    return (plan, rows, device, x_ptr, weight_ptr) if rows else None


def _residual_served(residual: torch.Tensor, input: torch.Tensor, device: int) -> bool:
    """Whether the fused hot path can read `residual` as it reads `input`: alike, contiguous and aligned."""
    return (residual.data_ptr() % _VECTOR_BYTES == 0 and residual.shape == input.shape
            and residual.dtype == input.dtype and residual.get_device() == device and residual.is_contiguous())


def _launch_served(served: tuple, out_ptr: int, eps: float) -> None:
    """The plain kernel for a call `_served` accepted, into contiguous rows at `out_ptr`."""
    plan, rows, device, x_ptr, weight_ptr = served
    code = plan.launch_contiguous(out_ptr, x_ptr, weight_ptr, rows, eps, torch._C._cuda_getCurrentRawStream(device),
                                  device)
    if code:
        plan.instance.raise_error(code)


def try_run_kernel(input: torch.Tensor, weight: torch.Tensor | None, eps: float, formulation: str):
    """The eager hot path: the kernel's output for a call `_served` accepts, or None."""
    served = _served(_plans, input, weight, formulation)
    if served is None:
        return None
    plan = served[0]
    out = torch.empty_like(input) if plan.keeps_dtype else torch.empty_like(input, dtype=plan.output_dtype)
    _launch_served(served, out.data_ptr(), eps)
    return out


def try_run_kernel_into(out: torch.Tensor, input: torch.Tensor, weight: torch.Tensor | None, eps: float,
                        formulation: str) -> bool:
    """The hot path of Inductor's generated code (see `lowering`): the kernel into `out`, a contiguous buffer
    of the output's shape and dtype that Inductor allocated. False (nothing run) where `_served` refuses."""
    served = _served(_plans, input, weight, formulation)
    if served is None:
        return False
    _launch_served(served, out.data_ptr(), eps)
    return True


def _launch_fused_served(served: tuple, out_ptr: int, residual_out_ptr: int, residual_ptr: int, eps: float):
    """The fused-add kernel for a call `_served` (and `_residual_served`) accepted, into contiguous rows."""
    plan, rows, device, x_ptr, weight_ptr = served
    code = plan.launch_contiguous(out_ptr, residual_out_ptr, x_ptr, residual_ptr, weight_ptr, rows, eps,
                                  torch._C._cuda_getCurrentRawStream(device), device)
    if code:
        plan.instance.raise_error(code)


def try_run_fused_kernel(input: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None, eps: float,
                         formulation: str):
    """The fused-add op's hot path, as `try_run_kernel`'s: (out, residual_out), or None."""
    served = _served(_fused_add_plans, input, weight, formulation)
    if served is None or not _residual_served(residual, input, served[2]):
        return None
    plan = served[0]
    out = torch.empty_like(input) if plan.keeps_dtype else torch.empty_like(input, dtype=plan.output_dtype)
    residual_out = torch.empty_like(input)
    _launch_fused_served(served, out.data_ptr(), residual_out.data_ptr(), residual.data_ptr(), eps)
    return out, residual_out


def try_run_fused_kernel_into(both: torch.Tensor, input: torch.Tensor, residual: torch.Tensor,
                              weight: torch.Tensor | None, eps: float, formulation: str) -> bool:
    """`try_run_kernel_into` for the fused op: `both` is one contiguous buffer [2, *input.shape] of the input's
    dtype, the output then the sum."""
    served = _served(_fused_add_plans, input, weight, formulation)
    if served is None or not _residual_served(residual, input, served[2]):
        return False
    out_ptr = both.data_ptr()
    _launch_fused_served(served, out_ptr, out_ptr + input.numel() * input.element_size(), residual.data_ptr(), eps)
    return True


def run_kernel(input: torch.Tensor, weight: torch.Tensor | None, eps: float, formulation: str) -> torch.Tensor:
    """The kernel on arguments that passed `check_kernel_arguments` (the eager API calls this directly,
    skipping the dispatcher)."""
    if input.numel() == 0:  # nothing to normalise: no kernel to build
        return torch.empty(input.shape, dtype=_output_dtype(input, weight, formulation), device=input.device)
    plan = _plan_for(input, weight, formulation)
    if input.is_contiguous():
        out = torch.empty_like(input, dtype=plan.output_dtype)
    else:
        out = torch.empty(input.shape, dtype=plan.output_dtype, device=input.device)
    _launch(plan, out, input, weight, eps)
    return out


def _rms_norm_cuda(input, weight, eps, formulation):
    out = try_run_kernel(input, weight, eps, formulation)  # a call shaped like one served before: checked then
    if out is not None:
        return out
    check_kernel_arguments(input, weight, formulation)
    return run_kernel(input, weight, eps, formulation)


def _fused_add_rms_norm_cuda(input, residual, weight, eps, formulation):
    outputs = try_run_fused_kernel(input, residual, weight, eps, formulation)  # as _rms_norm_cuda
    if outputs is not None:
        return outputs
    check_kernel_arguments(input, weight, formulation)
    check_residual(input, residual)
    out = torch.empty(input.shape, dtype=_output_dtype(input, weight, formulation), device=input.device)
    residual_out = torch.empty(input.shape, dtype=input.dtype, device=input.device)
    if input.numel() == 0:
        return out, residual_out
    plan = _plan_for(input, weight, formulation, fused_add=True)
    input, x_stride = _addressable(input)
    residual, residual_stride = _addressable(residual)
    weight = _aligned_weight(weight)
    hidden = input.shape[-1]
    device = input.device.index
    code = plan.launch(
        out.data_ptr(), residual_out.data_ptr(), input.data_ptr(), residual.data_ptr(),
        None if weight is None else weight.data_ptr(), input.numel() // hidden, x_stride, residual_stride, hidden,
        hidden, eps, torch._C._cuda_getCurrentRawStream(device), device,
    )
    if code:
        plan.instance.raise_error(code)
    return out, residual_out


def _rms_norm_out_cuda(out, input, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation, out)
    if input.numel():
        _launch(_plan_for(input, weight, formulation), out, input, weight, eps)


_library.impl("rms_norm", _rms_norm_cuda, "CUDA")
_library.impl("rms_norm_out", _rms_norm_out_cuda, "CUDA")
_library.impl("fused_add_rms_norm", _fused_add_rms_norm_cuda, "CUDA")

rms_norm = torch.ops.inductor_rmsnorm.rms_norm.default
rms_norm_out = torch.ops.inductor_rmsnorm.rms_norm_out.default
fused_add_rms_norm = torch.ops.inductor_rmsnorm.fused_add_rms_norm.default


# ------------------------------------------------------------------------------------------- eps as a tensor
# torch.compile(dynamic=True) turns float attributes into graph inputs, so the pass meets eps as a 0-d tensor
# (on the CPU). These overloads take it as such and read its value once per call.
_library.define("rms_norm.eps_tensor(Tensor input, Tensor? weight, Tensor eps, str formulation) -> Tensor")
_library.define(
    "fused_add_rms_norm.eps_tensor(Tensor input, Tensor residual, Tensor? weight, Tensor eps, str formulation) "
    "-> (Tensor, Tensor)"
)


def _with_eps_value(implementation):
    def call(*args):
        *tensors, eps, formulation = args
        return implementation(*tensors, float(eps), formulation)

    return call


for _name, _fake, _cpu, _cuda in (
    ("rms_norm", _rms_norm_fake, _rms_norm_cpu, _rms_norm_cuda),
    ("fused_add_rms_norm", _fused_add_rms_norm_fake, _fused_add_rms_norm_cpu, _fused_add_rms_norm_cuda),
):
    torch.library.register_fake(f"{NAMESPACE}::{_name}.eps_tensor", _fake)  # the fakes never read eps
    _library.impl(f"{_name}.eps_tensor", _with_eps_value(_cpu), "CPU")
    _library.impl(f"{_name}.eps_tensor", _with_eps_value(_cuda), "CUDA")
