"""Inductor lowerings of the ops: the generated code calls the kernel straight into buffers Inductor allocates.

Without a lowering Inductor makes each call of our ops a fallback kernel: the generated code goes through the
dispatcher into the op's Python CUDA implementation, which allocates the outputs, and then checks each output's
size, stride and alignment. A decode step is launch-bound, so that host time is the step's time. Lowered here,
each call is an `ExternKernelOut`, as Inductor's own matmuls are: a plain Python call
`extern_kernels.inductor_rmsnorm_rms_norm(x, weight, eps, formulation, out=buf)` into a buffer from Inductor's
memory planning, which takes the ops' hot path (`ops.try_run_kernel_into`) and otherwise the checked op.

The fused op's two results share one buffer [2, *shape], the output then the sum, as an extern kernel writes
one `out`; so only where they have one dtype (the usual case: a 16-bit weight). These keep the fallback kernel:
a float32 output from the fused op, and the C++ wrapper (AOTInductor has no Python to call).

Inductor passes an extern kernel its tensors first, then its constants, so each call's arguments are ordered to
keep every tensor before the first constant (a missing weight is a constant None): `eps` before `weight` where
eps is a tensor (the `eps_tensor` overloads, `dynamic=True`), after it where it is a float.
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


def _rms_norm_eps_tensor_into(input, eps, weight, formulation, *, out):
    _rms_norm_into(input, weight, float(eps), formulation, out=out)  # eps: a 0-d CPU tensor, read without a sync


def _fused_add_rms_norm_eps_tensor_into(input, residual, eps, weight, formulation, *, out):
    _fused_add_rms_norm_into(input, residual, weight, float(eps), formulation, out=out)


_CALLS = {  # op overload -> its extern kernel, registered as extern_kernels.<name> for the generated code
    ops.rms_norm: ExternKernelChoice(_rms_norm_into, name="inductor_rmsnorm_rms_norm"),
    ops.fused_add_rms_norm: ExternKernelChoice(_fused_add_rms_norm_into, name="inductor_rmsnorm_fused_add_rms_norm"),
    torch.ops.inductor_rmsnorm.rms_norm.eps_tensor: ExternKernelChoice(
        _rms_norm_eps_tensor_into, name="inductor_rmsnorm_rms_norm_eps_tensor"),
    torch.ops.inductor_rmsnorm.fused_add_rms_norm.eps_tensor: ExternKernelChoice(
        _fused_add_rms_norm_eps_tensor_into, name="inductor_rmsnorm_fused_add_rms_norm_eps_tensor"),
}


def _extern_call(op, size: list, dtype: torch.dtype, rows: list, weight, eps, formulation: str) -> ir.TensorBox:
    """`op`'s extern kernel on `rows` (x, and the residual for the fused op), weight, eps and formulation, into a
    new contiguous buffer of `size` and `dtype`."""
    rows = [ir.ExternKernel.require_stride1(ir.ExternKernel.realize_input(t)) for t in rows]
    if weight is not None:
        weight = ir.ExternKernel.require_contiguous(ir.ExternKernel.realize_input(weight))
    if isinstance(eps, ir.IRNode):
        arguments = [*rows, ir.ExternKernel.realize_input(eps), weight, formulation]
    else:
        arguments = [*rows, weight, eps, formulation]
    first_constant = next(i for i, a in enumerate(arguments) if not isinstance(a, ir.IRNode))
    layout = ir.FixedLayout(rows[0].get_device(), dtype, size, ir.FlexibleLayout.contiguous_strides(size))
    return ir.TensorBox.create(ir.ExternKernelOut(layout, arguments[:first_constant], arguments[first_constant:],
                                                  python_kernel_name=_CALLS[op].call_name()))


def _weight_dtype(weight) -> torch.dtype | None:
    return None if weight is None else weight.get_dtype()


def _lower_rms_norm(op):
    def lower(input, weight, eps, formulation):
        if V.graph.cpp_wrapper:
            return fallback_handler(op, add_to_fallback_set=False)(input, weight, eps, formulation)
        dtype = dispatch.output_dtype(input.get_dtype(), _weight_dtype(weight), formulation)
        return _extern_call(op, list(input.get_size()), dtype, [input], weight, eps, formulation)

    return lower


def _lower_fused_add_rms_norm(op):
    def lower(input, residual, weight, eps, formulation):
        dtype = input.get_dtype()
        if V.graph.cpp_wrapper or dispatch.output_dtype(dtype, _weight_dtype(weight), formulation) != dtype:
            return fallback_handler(op, add_to_fallback_set=False)(input, residual, weight, eps, formulation)
        both = _extern_call(op, [2, *input.get_size()], dtype, [input, residual], weight, eps, formulation)
        select = lowerings[torch.ops.aten.select.int]
        return select(both, 0, 0), select(both, 0, 1)

    return lower


for _op in (ops.rms_norm, torch.ops.inductor_rmsnorm.rms_norm.eps_tensor):
    register_lowering(_op, type_promotion_kind=None)(_lower_rms_norm(_op))
for _op in (ops.fused_add_rms_norm, torch.ops.inductor_rmsnorm.fused_add_rms_norm.eps_tensor):
    register_lowering(_op, type_promotion_kind=None)(_lower_fused_add_rms_norm(_op))
