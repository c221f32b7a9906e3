"""Inductor lowerings of the ops: the generated code calls the kernel straight into buffers Inductor allocates.

Without a lowering Inductor makes each call of our ops a fallback kernel: the generated code goes through the
dispatcher into the op's Python CUDA implementation, which allocates the outputs, and then checks each output's
size, stride and alignment. A decode step is launch-bound, so that host time is the step's time. Lowered here,
each call is an `ExternKernelOut`, as Inductor's own matmuls are: a plain Python call
`extern_kernels.inductor_rmsnorm_rms_norm(x, weight, eps, formulation, out=buf)` into a buffer from Inductor's
memory planning, which takes the ops' hot path (`ops.try_run_kernel_into`) and otherwise the checked op.

The fused op's two results share one buffer [2, *shape], the output then the sum, as an extern kernel writes
one `out`; so only where they have one dtype (the usual case: a 16-bit weight). These keep the fallback kernel:
a float32 output from the fused op, the C++ wrapper (AOTInductor has no Python to call), and the eps-as-tensor
overloads (`dynamic=True`).
"""

from __future__ import annotations

import torch
from torch._inductor import ir
from torch._inductor.lowering import fallback_handler, lowerings, register_lowering
from torch._inductor.select_algorithm import ExternKernelChoice
from torch._inductor.virtualized import V

from . import dispatch, ops


def _rms_norm_into(input, weight, eps, formulation, *, out):
    if not ops.try_run_kernel_into(out, input, weight, eps, formulation):
        ops.rms_norm_out(out, input, weight, eps, formulation)  # checked: first call, other layouts, the CPU


def _fused_add_rms_norm_into(input, residual, weight, eps, formulation, *, out):
    if not ops.try_run_fused_kernel_into(out, input, residual, weight, eps, formulation):
        result, residual_sum = ops.fused_add_rms_norm(input, residual, weight, eps, formulation)
        out[0].copy_(result)
        out[1].copy_(residual_sum)


_RMS_NORM = ExternKernelChoice(_rms_norm_into, name="inductor_rmsnorm_rms_norm")
_FUSED_ADD_RMS_NORM = ExternKernelChoice(_fused_add_rms_norm_into, name="inductor_rmsnorm_fused_add_rms_norm")


def _extern_call(choice: ExternKernelChoice, size: list, dtype: torch.dtype, tensors: list, weight, eps: float,
                 formulation: str) -> ir.TensorBox:
    """`choice(*tensors, weight, eps, formulation, out=<new contiguous buffer of `size` and `dtype`>)`."""
    tensors = [ir.ExternKernel.require_stride1(ir.ExternKernel.realize_input(t)) for t in tensors]
    if weight is not None:
        tensors.append(ir.ExternKernel.require_contiguous(ir.ExternKernel.realize_input(weight)))
    layout = ir.FixedLayout(tensors[0].get_device(), dtype, size, ir.FlexibleLayout.contiguous_strides(size))
    # a missing weight is a constant None in the call, which takes the arguments in the op's order
    constants = (eps, formulation) if weight is not None else (None, eps, formulation)
    return ir.TensorBox.create(ir.ExternKernelOut(layout, tensors, constants, python_kernel_name=choice.call_name()))


def _weight_dtype(weight) -> torch.dtype | None:
    return None if weight is None else weight.get_dtype()


@register_lowering(ops.rms_norm, type_promotion_kind=None)
def _lower_rms_norm(input, weight, eps, formulation):
    if V.graph.cpp_wrapper:
        return fallback_handler(ops.rms_norm, add_to_fallback_set=False)(input, weight, eps, formulation)
    dtype = dispatch.output_dtype(input.get_dtype(), _weight_dtype(weight), formulation)
    return _extern_call(_RMS_NORM, list(input.get_size()), dtype, [input], weight, eps, formulation)


@register_lowering(ops.fused_add_rms_norm, type_promotion_kind=None)
def _lower_fused_add_rms_norm(input, residual, weight, eps, formulation):
    dtype = input.get_dtype()
    if V.graph.cpp_wrapper or dispatch.output_dtype(dtype, _weight_dtype(weight), formulation) != dtype:
        return fallback_handler(ops.fused_add_rms_norm, add_to_fallback_set=False)(
            input, residual, weight, eps, formulation)
    both = _extern_call(_FUSED_ADD_RMS_NORM, [2, *input.get_size()], dtype, [input, residual], weight, eps,
                        formulation)
    select = lowerings[torch.ops.aten.select.int]
    return select(both, 0, 0), select(both, 0, 1)
