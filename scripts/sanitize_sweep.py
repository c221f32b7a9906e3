"""A small sweep of the kernels for `compute-sanitizer`: sizes at each kernel class's edges, every dtype and
formulation, 1/7/129 tokens, contiguous, strided and in place, plain and fused residual add, each checked
against the reference.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
        python scripts/sanitize_sweep.py

(without the caching allocator every tensor is its own allocation, so an access past a row is caught).
`--tool racecheck` is far slower per launch: give it a few sizes of the kernels with shared memory, CTA and wide
(`--sizes 520 4096 8192 12288 12296 24576 40960 --tokens 7`; at so few rows the wide sizes take a cluster per row,
and scripts/sanitize_two_pass.py covers the two-pass kernel). Under memcheck one process takes over 200 s on an
H200: `--shard K/N` splits the sizes over N processes (scripts/gpu_check.sh runs 8, spread over the GPUs, and
five more at row counts that reach the other schedules: `--sizes 8 --tokens 1100003` and the like).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from inductor_rmsnorm import dispatch, jit, ops
from inductor_rmsnorm.reference import fused_add_rms_norm_reference, rms_norm_reference

# Full and idle lanes or threads, each kernel class, each side of the class boundaries, and few long CTA rows split
# over clusters of 8 (12288, 24576) and of 7 or 3 blocks (13824).
SIZES = (8, 24, 64, 200, 256, 264, 512, 520, 2888, 4096, 8192, 8200, 12288, 12296, 13824, 24576, 24584, 40960, 65528)
TOKENS = (1, 7, 129)


def prebuild(sizes) -> None:
    """Builds the sweep's kernel instances in parallel nvcc processes. Left to the first calls they build one at
    a time: five long sizes took 7.6 minutes on the device's 16 cores (docs/RUNS.md, run 36)."""
    keys = dict.fromkeys(jit.KernelKey.create(hidden, *instance, fused_add=fused_add)
                         for hidden in sizes for instance in dispatch.kernel_variants() for fused_add in (False, True))
    start = time.perf_counter()
    results = jit.build_many(keys, jit.arch_for_device(torch.cuda.current_device()), os.cpu_count() or 1)
    failed = sum(error is not None for _, error in results)  # the sweep's call raises the build error
    print(f"{len(keys) - failed} of {len(keys)} instances ready in {time.perf_counter() - start:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--tokens", type=int, nargs="+", default=TOKENS)
    parser.add_argument("--shard", default="0/1", metavar="K/N",
                        help="check every N-th size from the K-th (0-based): N sanitized processes at once")
    args = parser.parse_args()
    shard, shards = (int(part) for part in args.shard.split("/"))
    if not 0 <= shard < shards:
        parser.error(f"--shard {args.shard}: K must be in 0 .. N-1")
    if not torch.cuda.is_available():
        print("the sanitizer sweep needs a CUDA GPU; skipped")
        return 0
    sizes = args.sizes[shard::shards]
    prebuild(sizes)
    checked = failed = 0
    for hidden in sizes:
        for dtype, weight_dtype, formulation in dispatch.kernel_variants():
            weight = None if weight_dtype is None else torch.randn(hidden, device="cuda", dtype=weight_dtype)
            out_dtype = dispatch.output_dtype(dtype, weight_dtype, formulation)
            for tokens in args.tokens:
                padded = torch.randn(tokens, hidden + 16, device="cuda", dtype=dtype)
                for x in (padded[:, :hidden].contiguous(), padded[:, :hidden]):
                    expected = rms_norm_reference(x, weight, 1e-6, formulation)
                    results = [(ops.rms_norm(x, weight, 1e-6, formulation), expected)]
                    if out_dtype == dtype:
                        in_place = x.clone()
                        ops.rms_norm_out(in_place, in_place, weight, 1e-6, formulation)
                        results.append((in_place, expected))
                    residual = torch.randn_like(x)
                    fused = ops.fused_add_rms_norm(x, residual, weight, 1e-6, formulation)
                    results += zip(fused, fused_add_rms_norm_reference(x, residual, weight, 1e-6, formulation))
                    for result, reference in results:
                        checked += 1
                        if not torch.allclose(result.float(), reference.float(), rtol=2e-2, atol=2e-2):
                            failed += 1
                            print(f"MISMATCH hidden {hidden} {dtype} w {weight_dtype} {formulation} tokens {tokens}")
        print(f"hidden {hidden} done: {checked} checked", flush=True)  # progress, should a sanitizer run time out
    torch.cuda.synchronize()
    print(f"{checked - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
