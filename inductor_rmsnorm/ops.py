"""`torch.ops.inductor_rmsnorm`: the op's schema, its fake, CPU (reference) and CUDA implementations.

    rms_norm(Tensor input, Tensor? weight, float eps, str formulation) -> Tensor
    rms_norm_out(Tensor(a!) out, Tensor input, Tensor? weight, float eps, str formulation) -> ()

`input` is [..., hidden]: every leading index is a row (token). `formulation` is one of
`dispatch.FORMULATIONS`. The output has `input`'s shape and `dispatch.output_dtype(...)`. `rms_norm_out` writes
into `out`, which may be `input` itself (in place).
"""

from __future__ import annotations

import torch

from . import dispatch, jit
from .reference import rms_norm_reference

NAMESPACE = "inductor_rmsnorm"

_library = torch.library.Library(NAMESPACE, "DEF")
_library.define("rms_norm(Tensor input, Tensor? weight, float eps, str formulation) -> Tensor")
_library.define("rms_norm_out(Tensor(a!) out, Tensor input, Tensor? weight, float eps, str formulation) -> ()")

_VECTOR_BYTES = 16


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
    """Why the kernels cannot serve this call (size, dtypes, layout), or None when they can."""
    reason = dispatch.unsupported_reason(input.shape[-1], input.dtype, None if weight is None else weight.dtype)
    if reason is None and input.shape[-1] > 1 and input.stride(-1) != 1:
        reason = f"the last dimension of input is not contiguous (stride {input.stride(-1)}; the kernels need 1)"
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


# ---------------------------------------------------------------------------------------------------- fake
def check_kernel_arguments(input, weight, formulation, out=None) -> None:
    """Every implementation's checks: the op accepts exactly what the kernels serve, on every device, so the
    CPU implementation stands in faithfully for the CUDA one."""
    check_arguments(input, weight, formulation)
    if out is not None:
        _check_out(out, input, weight, formulation)
    reason = why_no_kernel(input, weight)
    if reason is not None:
        raise RuntimeError(f"inductor_rmsnorm: {reason}")


@torch.library.register_fake(f"{NAMESPACE}::rms_norm")
def _rms_norm_fake(input, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation)
    return input.new_empty(input.shape, dtype=_output_dtype(input, weight, formulation))


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


_library.impl("rms_norm", _rms_norm_cpu, "CPU")
_library.impl("rms_norm_out", _rms_norm_out_cpu, "CPU")


# ---------------------------------------------------------------------------------------------------- CUDA
# (hidden size, input dtype, weight dtype, formulation, device index) -> loaded kernel; the hot path's only lookup.
_instances: dict[tuple, jit.KernelInstance] = {}


def _instance_for(input: torch.Tensor, weight: torch.Tensor | None, formulation: str) -> jit.KernelInstance:
    weight_dtype = None if weight is None else weight.dtype
    lookup = (input.shape[-1], input.dtype, weight_dtype, formulation, input.device.index)
    instance = _instances.get(lookup)
    if instance is None:
        key = jit.KernelKey.create(input.shape[-1], input.dtype, weight_dtype, formulation)
        instance = jit.load(key, jit.arch_for_device(input.device))
        _instances[lookup] = instance
    return instance


def _row_stride(t: torch.Tensor) -> int | None:
    """Elements between consecutive rows of `t` seen as [rows, hidden], or None if no single stride exists."""
    if t.is_contiguous():
        return t.shape[-1]
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


def _vector_aligned(t: torch.Tensor, row_stride: int) -> bool:
    return (t.data_ptr() | (row_stride * t.element_size())) % _VECTOR_BYTES == 0


def _launch_into(out: torch.Tensor, input: torch.Tensor, weight: torch.Tensor | None, eps: float, formulation: str):
    """Run the kernel from `input` into `out`; layouts the kernel cannot address go through aligned copies."""
    if input.numel() == 0:
        return
    instance = _instance_for(input, weight, formulation)
    x_stride = _row_stride(input)
    if x_stride is None or not _vector_aligned(input, x_stride):
        input = input.clone(memory_format=torch.contiguous_format)
        x_stride = input.shape[-1]
    if weight is not None and not (weight.is_contiguous() and weight.data_ptr() % _VECTOR_BYTES == 0):
        weight = weight.clone(memory_format=torch.contiguous_format)
    target = out
    out_stride = _row_stride(out)
    if out_stride is None or not _vector_aligned(out, out_stride) or (out_stride < out.shape[-1] and out.dim() > 1):
        target = torch.empty(out.shape, dtype=out.dtype, device=out.device)
        out_stride = out.shape[-1]
    device = input.device.index
    instance.launch(
        target.data_ptr(), input.data_ptr(), 0 if weight is None else weight.data_ptr(),
        input.numel() // input.shape[-1], x_stride, out_stride, eps,
        torch._C._cuda_getCurrentRawStream(device), device,
    )
    if target is not out:
        out.copy_(target)


def run_kernel(input: torch.Tensor, weight: torch.Tensor | None, eps: float, formulation: str) -> torch.Tensor:
    """The kernel on arguments that passed `check_kernel_arguments` (the eager API calls this directly,
    skipping the dispatcher)."""
    out = torch.empty(input.shape, dtype=_output_dtype(input, weight, formulation), device=input.device)
    _launch_into(out, input, weight, eps, formulation)
    return out


def _rms_norm_cuda(input, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation)
    return run_kernel(input, weight, eps, formulation)


def _rms_norm_out_cuda(out, input, weight, eps, formulation):
    check_kernel_arguments(input, weight, formulation, out)
    _launch_into(out, input, weight, eps, formulation)


_library.impl("rms_norm", _rms_norm_cuda, "CUDA")
_library.impl("rms_norm_out", _rms_norm_out_cuda, "CUDA")

rms_norm = torch.ops.inductor_rmsnorm.rms_norm.default
rms_norm_out = torch.ops.inductor_rmsnorm.rms_norm_out.default
