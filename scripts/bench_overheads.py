"""Host-side costs on the GPU machine: a cold JIT build, loading a cached instance in a new process, and the
eager call's wall time against F.rms_norm (8 x 4096 bf16, back to back in one process), with the fused op's
call and an aten add for scale (a decode step without CUDA graphs pays each call's host time).

Budgets (issue 2): cold build of one new hidden size <= 10 s; cached load in a new process <= 0.5 s; eager call
no slower than F.rms_norm. Prints a table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

# Runs in a fresh process: the time of the first call that needs the cached instance (load + launch).
FIRST_CALL = """
import time, torch, inductor_rmsnorm
x = torch.randn(8, {hidden}, device="cuda", dtype=torch.bfloat16)
w = torch.randn({hidden}, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
start = time.perf_counter()
inductor_rmsnorm.ops.rms_norm(x, w, 1e-6, "llama")
torch.cuda.synchronize()
print(time.perf_counter() - start)
"""


def first_call_seconds(hidden: int, cache: str) -> float:
    env = dict(os.environ, INDUCTOR_RMSNORM_CACHE_DIR=cache)
    result = subprocess.run([sys.executable, "-c", FIRST_CALL.format(hidden=hidden)], env=env, capture_output=True,
                            text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def wall_us_per_call(fn, calls: int = 20000) -> float:
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default="bench_overheads.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU: skipped the JIT and eager-call timings")
        return 0
    import inductor_rmsnorm
    from torch._inductor.select_algorithm import extern_kernels

    results = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as cache:
        results["cold_first_call_s"] = first_call_seconds(3328, cache)  # build + load + launch, empty cache
        results["warm_first_call_s"] = [first_call_seconds(3328, cache) for _ in range(3)]  # load + launch

    x = torch.randn(8, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    inductor_rmsnorm.rms_norm(x, w, 1e-6)  # builds the plan the parts below use
    plan = inductor_rmsnorm.ops._plans[(4096, x.dtype, w.dtype, "torch", 0)]
    out, residual = torch.empty_like(x), torch.randn_like(x)
    both = torch.empty(2, *x.shape, device="cuda", dtype=x.dtype)
    fused_add_into = extern_kernels.inductor_rmsnorm_fused_add_rms_norm  # registered by inductor_rmsnorm.lowering
    candidates = {
        "F.rms_norm": lambda: torch.nn.functional.rms_norm(x, (4096,), w, 1e-6),
        "inductor_rmsnorm.rms_norm": lambda: inductor_rmsnorm.rms_norm(x, w, 1e-6),
        "torch.ops.inductor_rmsnorm.rms_norm": lambda: inductor_rmsnorm.ops.rms_norm(x, w, 1e-6, "torch"),
        # a residual add + norm through the dispatcher (what Inductor's generated code called before the ops had
        # lowerings), against one plain aten launch ...
        "torch.ops.inductor_rmsnorm.fused_add_rms_norm": lambda: inductor_rmsnorm.ops.fused_add_rms_norm(
            x, residual, w, 1e-6, "torch"),
        # ... and what it calls now: the kernel into a buffer Inductor allocated
        "generated code's call: fused add into Inductor's buffer": lambda: fused_add_into(
            x, residual, w, 1e-6, "torch", out=both),
        "torch.add (one aten kernel, for scale)": lambda: torch.add(x, residual),
        # parts of the eager call, to see where its time goes
        "part: torch.empty_like": lambda: torch.empty_like(x),
        "part: current stream": lambda: torch._C._cuda_getCurrentRawStream(0),
        "part: launch through ctypes": lambda: plan.launch_contiguous(
            out.data_ptr(), x.data_ptr(), w.data_ptr(), 8, 1e-6, torch._C._cuda_getCurrentRawStream(0), 0),
    }
    samples = {name: [] for name in candidates}
    for _ in range(5):  # interleaved rounds, so drift hits every candidate alike
        for name, fn in candidates.items():
            samples[name].append(wall_us_per_call(fn))
    results["eager_wall_us_8x4096_bf16"] = {name: statistics.median(v) for name, v in samples.items()}

    print(f"{results['gpu']}, torch {results['torch']}, {results['date']}")
    print(f"cold first call (nvcc build + load + launch): {results['cold_first_call_s']:.2f} s (budget 10 s)")
    warm = ", ".join(f"{s * 1e3:.0f} ms" for s in results["warm_first_call_s"])
    print(f"cached first call in a new process (load + launch): {warm} (budget 0.5 s)")
    print("| eager call, 8x4096 bf16 | wall µs per call (median of 5 x 20000) |\n|---|---|")
    for name, us in results["eager_wall_us_8x4096_bf16"].items():
        print(f"| {name} | {us:.2f} |")
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
