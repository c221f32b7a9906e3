"""Fast RMSNorm for PyTorch on NVIDIA GPUs: CUDA kernels, a torch.library op, an Inductor pass and an eager opt-in."""

from . import ops  # registers torch.ops.inductor_rmsnorm
from .dispatch import FORMULATIONS, SUPPORTED_SIZES, kernel_for
from .eager import FastRMSNorm, patch, rms_norm, unpatch
from .inductor_pass import compile_options, disable, enable, enabled, report

__all__ = [
    "FORMULATIONS", "SUPPORTED_SIZES", "FastRMSNorm", "compile_options", "disable", "enable", "enabled",
    "kernel_for", "ops", "patch", "report", "rms_norm", "unpatch",
]
