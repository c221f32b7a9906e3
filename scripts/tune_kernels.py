"""Tuning experiment on the GPU: the kernels built with different tuning switches (the INDUCTOR_RMSNORM_*
macros of csrc/rmsnorm.cuh) at several hidden sizes and token counts, timed like bench_kernels.py (CUDA-graph
replay, rotating buffers), with the copy bandwidth of the same run. Prints one table; the chosen defaults are
recorded in docs/PERFORMANCE.md. At each point every variant is timed twice, in the order given and then
reversed, and the mean is shown: the first timed after a point's warm-up read up to 0.14 µs higher (run 25).

Each variant's output is checked against torch's (a wrong one is marked WRONG in the table).
Each variant is a comma-separated list of NAME=VALUE without the INDUCTOR_RMSNORM_ prefix ("" = the defaults),
and optionally class=warp|cta|wide, another kernel class than dispatch picks for the size (where it compiles):
  python scripts/tune_kernels.py --variants "" PREFETCH=0 STREAMING=1 CTA_MAX_THREADS=512 class=warp,PREFETCH=0 \
      [--hidden ...] [--tokens ...] [--dtype bfloat16] [--fused-add]
(--fused-add: the residual-add variant, whose CTA blocks are up to 2 x CTA_MAX_THREADS threads, or one vector a
thread for the few rows that CTA_FUSED_ONE_VECTOR names; --interleave: a one-element torch add before each call, so
each launch follows another kernel, as in a model, not its own kind: programmatic dependent launch gains less there.
Times then include the add.)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import itertools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import (  # noqa: E402
    DTYPES, EPS, FIRST_WARM_UP_SECONDS, WrongResult, bytes_moved, check_output, keep_gpu_busy,
    measure_copy_bandwidth, measure_launch_floor, plan_replay, reference_function, time_per_call,
)

from inductor_rmsnorm import jit  # noqa: E402


def wrong_result(call, operands, weight, outputs) -> str:
    """"" if the variant's outputs for buffer 0 (x, or x and the residual) are close to what bench_kernels checks
    every provider against, else a mark for the table (a variant that computes something else has no meaningful
    time)."""
    call(0)
    try:
        check_output(outputs, reference_function(len(operands) == 2)(*operands, weight))
    except WrongResult as error:
        print(f"wrong result: {error}", flush=True)
        return " WRONG"
    return ""


def parse_variant(variant: str) -> tuple[str | None, tuple[str, ...]]:
    """(the kernel class it asks for or None, its nvcc -D flags); ValueError on an unknown class or a malformed
    switch."""
    settings = [setting.strip() for setting in variant.split(",") if setting.strip()]
    classes = [setting.removeprefix("class=") for setting in settings if setting.startswith("class=")]
    unknown = [name for name in classes if name not in ("warp", "cta", "wide")]
    if unknown:
        raise ValueError(f"class={unknown[0]} in variant {variant!r}: the classes are warp, cta and wide")
    flags = jit.tuning_flags(",".join(setting for setting in settings if not setting.startswith("class=")))
    return (classes[-1] if classes else None), flags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["", "CTA_MAX_THREADS=512", "CTA_MAX_THREADS=1024"])
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 2048, 4096, 5120, 8192])
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 1024, 32768])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--fused-add", action="store_true", help="tune the fused residual-add variant")
    parser.add_argument("--interleave", action="store_true", help="a one-element torch add before each call")
    args = parser.parse_args()
    try:
        variants = {variant: parse_variant(variant) for variant in args.variants}
    except ValueError as error:
        parser.error(str(error))
    if not torch.cuda.is_available():
        print("tuning needs a CUDA GPU; skipped")
        return 0
    dtype = DTYPES[args.dtype]
    arch = jit.arch_for_device(0)
    def build(variant: str, hidden: int) -> jit.KernelInstance:
        kernel_class, flags = variants[variant]
        key = jit.KernelKey.create(hidden, dtype, dtype, "torch", fused_add=args.fused_add)
        if kernel_class is not None:
            key = dataclasses.replace(key, kernel_class=kernel_class)
        return jit.KernelInstance(key, jit.build(key, arch, flags))

    points = list(itertools.product(args.variants, args.hidden))
    print(f"building {len(points)} instances", flush=True)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # nvcc runs in subprocesses
        instances = dict(zip(points, pool.map(lambda point: build(*point), points)))
    keep_gpu_busy(FIRST_WARM_UP_SECONDS)
    copy_bandwidth = measure_copy_bandwidth(10)
    launch_floor = measure_launch_floor(10)
    print(f"{torch.cuda.get_device_name()}: copy {copy_bandwidth / 1e12:.2f} TB/s,"
          f" launch floor {launch_floor * 1e6:.2f} µs"
          + (", each call after a one-element add" if args.interleave else ""))
    print("| hidden | tokens | " + " | ".join(f"{v or 'defaults'}: µs (% copy)" for v in args.variants) + " |")
    print("|---|---|" + "---|" * len(args.variants))
    for hidden in args.hidden:
        weight = torch.randn(hidden, device="cuda", dtype=dtype)
        for tokens in args.tokens:
            moved = bytes_moved(tokens, hidden, dtype, args.fused_add)
            calls, buffers = plan_replay(tokens * hidden * dtype.itemsize, moved, copy_bandwidth, launch_floor)
            inputs = [torch.randn(tokens, hidden, device="cuda", dtype=dtype) for _ in range(buffers)]
            residuals = [torch.randn_like(x) for x in inputs] if args.fused_add else None
            out, residual_out = torch.empty_like(inputs[0]), torch.empty_like(inputs[0])
            checked_operands = (inputs[0],) if residuals is None else (inputs[0], residuals[0])
            checked_outputs = out if residuals is None else (out, residual_out)
            tiny = torch.ones(1, device="cuda")
            times = {variant: [] for variant in args.variants}
            marks = {}
            keep_gpu_busy(0.05)
            for variant in args.variants + args.variants[::-1]:
                instance = instances[variant, hidden]

                def call(index, instance=instance):
                    x, stream = inputs[index % buffers], torch.cuda.current_stream().cuda_stream
                    if args.interleave:
                        tiny.add_(1.0)
                    if args.fused_add:
                        code = instance.launch(out.data_ptr(), residual_out.data_ptr(), x.data_ptr(),
                                               residuals[index % buffers].data_ptr(), weight.data_ptr(), tokens,
                                               hidden, hidden, hidden, hidden, EPS, stream, 0)
                    else:
                        code = instance.launch(out.data_ptr(), x.data_ptr(), weight.data_ptr(), tokens, hidden,
                                               hidden, EPS, stream, 0)
                    if code:
                        instance.raise_error(code)

                times[variant].append(time_per_call(call, calls, 10).seconds_per_call)
                if variant not in marks:
                    marks[variant] = wrong_result(call, checked_operands, weight, checked_outputs)
            cells = []
            for variant in args.variants:
                seconds = sum(times[variant]) / len(times[variant])
                cells.append(f"{seconds * 1e6:.2f} ({moved / seconds / copy_bandwidth:.0%}){marks[variant]}")
            print(f"| {hidden} | {tokens} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
