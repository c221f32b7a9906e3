"""Fast RMSNorm for PyTorch on NVIDIA GPUs: CUDA kernels, a torch.library op, and an eager opt-in."""

from . import ops  # registers torch.ops.inductor_rmsnorm
from .dispatch import FORMULATIONS, SUPPORTED_SIZES, kernel_for
from .eager import FastRMSNorm, patch, rms_norm, unpatch

__all__ = ["FORMULATIONS", "SUPPORTED_SIZES", "FastRMSNorm", "kernel_for", "ops", "patch", "rms_norm", "unpatch"]
