"""Which kernel serves which row: the size rules, the dtype rules and the formulations.

One table (`KERNEL_TABLE`) and one function (`kernel_for`) decide; everything else asks them.
"""

from __future__ import annotations

import functools
import logging

import torch

logger = logging.getLogger("inductor_rmsnorm")

# How the normalised row meets the weight (DESIGN.md, "Semantics to reproduce exactly"):
#   "torch": F.rms_norm / nn.RMSNorm: fp32 throughout, one rounding at the end;
#   "llama": Hugging Face Llama: the normalised value is rounded to the input dtype, then multiplied by the
#            weight; the output dtype is the promotion of input and weight dtypes;
#   "gemma": Gemma: fp32 throughout with (1 + weight), one rounding at the end;
#   "llama_single_rounding": the Llama formulation as Inductor computes it by default (no
#            `emulate_precision_casts`): the normalised value stays fp32, one rounding, the Llama output dtype.
FORMULATIONS = ("torch", "llama", "gemma", "llama_single_rounding")

INPUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)

# Every row the kernels serve is a whole number of 16-byte vectors: a multiple of 8 elements in 16-bit types, of 4
# in float32.
VECTOR_BYTES = 16

# (kernel class, the largest hidden size it serves: in 16-bit types, in 16-bit types with the fused residual add, in
# float32 (both variants); its sizes in words), by size: the first that fits serves.
KERNEL_TABLE = (
    # rows of up to 64 vectors (1 KiB), several rows a 256-thread block. The CTA kernel's blocks of 64 threads for
    # plain 384-512 bf16 took longer to launch than their rows took to move: at 4096 rows 5.3 µs against the warp
    # kernel's 2.9-3.2 and Inductor's 3.1-3.4 (run 22, docs/RUNS.md). With the residual add, 16-bit rows
    # of 264-512 keep the CTA kernel: the warp kernel was slower there at 1-128 rows (512 x 16: 1.58 against
    # 1.15 µs) and mixed from 1024 (run 22)
    ("warp", 512, 256, 256, "up to 512 in 16-bit types (256 with the residual add), up to 256 in float32"),
    # the row in registers, rows up to 48 KiB: at most 6 vectors a thread at 512 threads (7, at 28672 bf16, spill
    # in the fused residual add beside a float32 weight; 8 in every fused instance). Measured against the wide
    # kernel (docs/RUNS.md): faster at 12288 bf16 (run 15, 1.8x plain at 8192 rows) and at 16384-24576 bf16
    # at 1-8192 rows (run 19, 20480 x 8192: 1.28x). float32 (run 19): at 12288 faster from 128 rows by 8-14 % and
    # slower at 1-16 rows by 5-12 %; at 16384 faster from 128 rows by 2-3 % but slower at 1-16 by 20-25 %, so
    # 16384 stays with the wide kernel. On sm_90+, a few rows over 8192 are each split over a cluster of up to 8
    # blocks (runs 34, 36)
    ("cta", 24576, 24576, 12288,
     "from 520 (264 with the residual add) to 24576 in 16-bit types, from 260 to 12288 in float32"),
    # two passes over the row, the second from L2; rows of 2+ steps on sm_90+: a cluster per row while the
    # clusters fit one block per SM
    ("wide", 65536, 65536, 65536, "from 24584 (16-bit) or 12292 (float32) to 65536"),
)

SUPPORTED_SIZES = "multiples of 8 elements in 16-bit types, of 4 in float32: " + "; ".join(
    f"{words} ({kernel_class} kernel)" for kernel_class, *_, words in KERNEL_TABLE)


def kernel_for(hidden_size: int, dtype: torch.dtype = torch.bfloat16, *, fused_add: bool = False) -> str | None:
    """The kernel class ("warp", "cta" or "wide") that normalises rows of `hidden_size` elements of `dtype` (after a
    residual add, with `fused_add`), or None."""
    if dtype not in INPUT_DTYPES:
        return None
    if hidden_size <= 0 or hidden_size * dtype.itemsize % VECTOR_BYTES:
        return None
    for kernel_class, largest_16_bit, largest_16_bit_fused, largest_float32, _ in KERNEL_TABLE:
        largest = largest_float32 if dtype == torch.float32 else largest_16_bit_fused if fused_add else largest_16_bit
        if hidden_size <= largest:
            return kernel_class
    return None


# The oldest GPUs the kernels are built and tested for: A100 (sm_80) onwards.
MIN_COMPUTE_CAPABILITY = (8, 0)


@functools.lru_cache(maxsize=None)  # per GPU: the warning below is logged once
def gpu_reason(device_index: int | None) -> str | None:
    """Why the kernels cannot run on the GPU at `device_index` (None: the current GPU), which is too old; None
    when they can."""
    major, minor = torch.cuda.get_device_capability(device_index)
    if (major, minor) >= MIN_COMPUTE_CAPABILITY:
        return None
    reason = (f"GPU {device_index} ({torch.cuda.get_device_name(device_index)}) is sm_{major}{minor}; the kernels "
              f"need sm_{MIN_COMPUTE_CAPABILITY[0]}{MIN_COMPUTE_CAPABILITY[1]} or newer")
    logger.warning("inductor_rmsnorm: %s: its RMSNorms run torch's computation", reason)
    return reason


def weight_dtypes_for(input_dtype: torch.dtype) -> tuple[torch.dtype, ...]:
    """Weight dtypes the kernels take with `input_dtype` activations (besides no weight at all)."""
    return (input_dtype,) if input_dtype == torch.float32 else (input_dtype, torch.float32)


def kernel_variants():
    """Every (input dtype, weight dtype or None, formulation) the kernels build. Without a weight the formulations
    compute the same, so that case comes once, as "torch"."""
    for input_dtype in INPUT_DTYPES:
        for weight_dtype in (*weight_dtypes_for(input_dtype), None):
            for formulation in FORMULATIONS if weight_dtype is not None else ("torch",):
                yield input_dtype, weight_dtype, formulation


def output_dtype(input_dtype: torch.dtype, weight_dtype: torch.dtype | None, formulation: str) -> torch.dtype:
    """The dtype the formulation returns: `w * h.to(x.dtype)` promotes for "llama"; the others cast to x's."""
    if formulation in ("llama", "llama_single_rounding") and weight_dtype is not None:
        return torch.promote_types(input_dtype, weight_dtype)
    return input_dtype


@functools.lru_cache(maxsize=4096)  # on every eager call: keep it a dict lookup
def unsupported_reason(hidden_size: int, input_dtype: torch.dtype, weight_dtype: torch.dtype | None) -> str | None:
    """Why no kernel serves this size and dtype combination, or None when one does."""
    if input_dtype not in INPUT_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in INPUT_DTYPES)
        return f"input dtype {input_dtype} has no kernel; supported input dtypes: {names}"
    if kernel_for(hidden_size, input_dtype) is None:
        return f"hidden size {hidden_size} has no kernel; supported hidden sizes: {SUPPORTED_SIZES}"
    if weight_dtype is not None and weight_dtype not in weight_dtypes_for(input_dtype):
        names = " or ".join(str(d) for d in weight_dtypes_for(input_dtype))
        return f"weight dtype {weight_dtype} with input dtype {input_dtype} has no kernel; the weight must be {names}"
    return None
