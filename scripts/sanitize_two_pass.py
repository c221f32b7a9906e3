"""The wide class's two-pass kernel at a few rows, for `compute-sanitizer --tool racecheck`.

At the few rows a sanitizer can afford, the wide class takes a cluster per row, so `sanitize_sweep.py` never
reaches the two-pass kernel's barriers. This builds the wide instances with the cluster switched off
(`INDUCTOR_RMSNORM_WIDE_CLUSTER_BLOCKS_PER_SM=0`) and checks them against the reference: rows of one group
(24584), of an odd step count (40960) and of a last step that a slot straddles (65528), bf16 and float32, plain
and fused residual add. Switches in $INDUCTOR_RMSNORM_TUNING (e.g. WIDE_STAGE=1) are built in too.

    compute-sanitizer --tool racecheck --error-exitcode 1 python scripts/sanitize_two_pass.py
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import sys

import torch

from inductor_rmsnorm import jit
from inductor_rmsnorm.reference import fused_add_rms_norm_reference, rms_norm_reference

SIZES = (24584, 40960, 65528)
DTYPES = (torch.bfloat16, torch.float32)
ROWS = 5
EPS = 1e-6
NO_CLUSTER = jit.tuning_flags("WIDE_CLUSTER_BLOCKS_PER_SM=0")


def build(hidden: int, dtype: torch.dtype, fused_add: bool) -> jit.KernelInstance:
    key = jit.KernelKey.create(hidden, dtype, dtype, "torch", fused_add=fused_add)
    assert key.kernel_class == "wide", f"{hidden} {dtype}: {key.kernel_class}, not the wide class"
    flags = NO_CLUSTER + jit.environment_tuning_flags()
    return jit.KernelInstance(key, jit.build(key, jit.arch_for_device(0), flags))


def close(result: torch.Tensor, reference: torch.Tensor) -> bool:
    return torch.allclose(result.float(), reference.float(), rtol=2e-2, atol=2e-2)


def check(instance: jit.KernelInstance, hidden: int, dtype: torch.dtype, fused_add: bool) -> bool:
    """Runs `instance` over ROWS fresh rows, outputs poisoned first; whether it matches the reference."""
    x = torch.randn(ROWS, hidden, device="cuda", dtype=dtype)
    weight = torch.randn(hidden, device="cuda", dtype=dtype)
    out = torch.full_like(x, float("nan"))
    stream = torch.cuda.current_stream().cuda_stream
    if fused_add:
        residual = torch.randn_like(x)
        residual_out = torch.full_like(x, float("nan"))
        code = instance.launch(out.data_ptr(), residual_out.data_ptr(), x.data_ptr(), residual.data_ptr(),
                               weight.data_ptr(), ROWS, hidden, hidden, hidden, hidden, EPS, stream, 0)
        expected_out, expected_sum = fused_add_rms_norm_reference(x, residual, weight, EPS, "torch")
        matches = close(out, expected_out) and torch.equal(residual_out, expected_sum)
    else:
        code = instance.launch(out.data_ptr(), x.data_ptr(), weight.data_ptr(), ROWS, hidden, hidden, EPS, stream, 0)
        matches = close(out, rms_norm_reference(x, weight, EPS, "torch"))
    if code:
        instance.raise_error(code)
    torch.cuda.synchronize()
    return matches


def main() -> int:
    if not torch.cuda.is_available():
        print("the two-pass sanitizer check needs a CUDA GPU; skipped")
        return 0
    cases = list(itertools.product(SIZES, DTYPES, (False, True)))
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # nvcc runs in subprocesses
        instances = list(pool.map(lambda case: build(*case), cases))
    failed = 0
    for (hidden, dtype, fused_add), instance in zip(cases, instances):
        matches = check(instance, hidden, dtype, fused_add)
        failed += not matches
        print(f"{hidden} {dtype} {'fused' if fused_add else 'plain'}: {'ok' if matches else 'MISMATCH'}", flush=True)
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
