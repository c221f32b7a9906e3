"""Compile-check the CUDA kernels with nvcc (no GPU needed): every kernel class x input dtype x weight x
formulation x plain/fused residual add, at sizes that cover each class's shapes (the smallest, rows that leave
lanes or threads idle, the largest), for one architecture (sm_90 by default).

Fails when a kernel spills registers or uses a stack frame (local memory): the row must live in registers.
The non-default tuning switches (scripts/tune_kernels.py) are compiled too, on bf16 instances.
Usage: python scripts/check_kernels.py [--arch sm_90] [--jobs N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


import torch

from inductor_rmsnorm import dispatch, jit

# Warp: 1 to 64 vectors a row, in lane groups that fit and that leave lanes idle (264 bf16: 33 vectors); CTA: the
# smallest (float32 260; 16-bit 520, and 264 with the residual add: rows whose many rows take the warp kernel),
# full warps (512), rows of 4-6 KiB (1280; 512 and 520 with the residual add: a block per row on GPUs of slower
# memory), idle threads (2888, 24568), 16-bit rows the fused add's few-rows schedule holds in one vector a thread
# (5120, and 7680: the widest, 960 threads), long rows whose few rows split over clusters of 6 (9216), 7 or 3
# (13824) and 8 blocks, and the largest;
# wide: the smallest (float32 12292, 16-bit 24584: two steps, the second of 1025 vectors, one slot across the
# row's end), whole steps, an odd number of steps (40960 and 49152: three), and the largest with a partial last
# step.
SIZES_CHECKED = {"warp": (8, 24, 96, 192, 200, 256, 264, 384, 512),
                 "cta": (260, 264, 512, 520, 1280, 2888, 4096, 5120, 7680, 8192, 8200, 9216, 12288, 13824, 24568,
                         24576),
                 "wide": (12292, 24584, 32768, 40960, 49152, 65528)}
# Non-default tuning switches, each group compiled with its flags on bf16 instances of every size above.
SWITCHES = {
    "prefetch off": ("-DINDUCTOR_RMSNORM_PREFETCH=0",),
    "streaming hints everywhere": ("-DINDUCTOR_RMSNORM_STREAMING=1",),
    "streaming hints nowhere, warp and wide grids persistent": (
        "-DINDUCTOR_RMSNORM_STREAMING=0", "-DINDUCTOR_RMSNORM_PERSISTENT=1"),
    "programmatic launch off": ("-DINDUCTOR_RMSNORM_PDL=0",),
    "row loads skipping L1": ("-DINDUCTOR_RMSNORM_ROW_LOADS_SKIP_L1=1",),
    "warp rows in whole lane groups": ("-DINDUCTOR_RMSNORM_WARP_WHOLE_LANES=1",),
    "the fused add's few CTA rows two vectors a thread": ("-DINDUCTOR_RMSNORM_CTA_FUSED_ONE_VECTOR=0",),
    "wide rows a step at a time, none kept in registers": (
        "-DINDUCTOR_RMSNORM_WIDE_GROUP=1", "-DINDUCTOR_RMSNORM_WIDE_KEEP_LAST=0"),
    "wide rows' steps read again from L2, none staged in shared memory": ("-DINDUCTOR_RMSNORM_WIDE_STAGE=0",),
    "wide rows' first pass in groups, weights loaded after their steps": (
        "-DINDUCTOR_RMSNORM_WIDE_PIPELINE=0", "-DINDUCTOR_RMSNORM_WIDE_WEIGHT_AHEAD=0"),
}


def keys_to_check() -> dict[str, list[jit.KernelKey]]:
    """Compile groups: one per kernel class (defaults), one per tuning switch."""
    keys: dict[str, list[jit.KernelKey]] = {}
    for kernel_class, sizes in SIZES_CHECKED.items():
        for hidden in sizes:
            for (dtype, weight, formulation), fused_add in itertools.product(dispatch.kernel_variants(), (False, True)):
                if dispatch.kernel_for(hidden, dtype, fused_add=fused_add) != kernel_class:
                    continue
                key = jit.KernelKey.create(hidden, dtype, weight, formulation, fused_add)
                if key not in keys.setdefault(kernel_class, []):  # formulations can share an instance
                    keys[kernel_class].append(key)
    for switch in SWITCHES:
        keys[switch] = [jit.KernelKey.create(hidden, torch.bfloat16, torch.bfloat16, "torch", fused_add)
                        for kernel_class, sizes in SIZES_CHECKED.items() for hidden in sizes for fused_add in (False, True)
                        if dispatch.kernel_for(hidden, torch.bfloat16, fused_add=fused_add) == kernel_class]
    return keys


def compile_unit(keys: list[jit.KernelKey], arch: str, workdir: Path, name: str) -> str:
    """Compile every kernel that `launch` can take for each instance of `keys` (both schedules of a class that
    picks one by row count, none that it never launches) into a cubin; returns ptxas's report."""
    source = workdir / f"{name.replace(' ', '_')}.cu"
    lines = ['#include "rmsnorm.cuh"']
    for key in keys:
        kernel_class = key.cxx_type()
        lines.append(f"template cudaError_t inductor_rmsnorm::launch<{kernel_class}>("
                     f"const {kernel_class}::KernelParams&, cudaStream_t, int);")
    source.write_text("\n".join(lines) + "\n")
    number = arch.removeprefix("sm_")
    command = [jit.nvcc_path(), "-cubin", "-O3", "-std=c++17", f"-gencode=arch=compute_{number},code=sm_{number}",
               "--ptxas-options=-v", f"-I{jit.csrc_dir()}", *SWITCHES.get(name, ()), str(source),
               "-o", str(workdir / f"{name.replace(' ', '_')}.cubin")]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"nvcc failed: {' '.join(command)}\n{result.stderr}")
    return result.stdout + result.stderr


def problems_in(report: str) -> tuple[int, list[str]]:
    """(kernels seen, one line per kernel that spills or has a stack frame)."""
    problems, kernels = [], 0
    for match in re.finditer(r"Function properties for (\S+)\n\s*(\d+) bytes stack frame, (\d+) bytes spill stores, "
                             r"(\d+) bytes spill loads", report):
        kernels += 1
        name, frame, stores, loads = match.group(1), *map(int, match.groups()[1:])
        if frame or stores or loads:
            problems.append(f"{name}: {frame} B stack frame, {stores} B spill stores, {loads} B spill loads")
    return kernels, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    groups = keys_to_check()
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        reports = dict(zip(groups, pool.map(lambda item: compile_unit(item[1], args.arch, Path(tmp), item[0]),
                                            groups.items())))
    failed = False
    for kernel_class, report in reports.items():
        kernels, problems = problems_in(report)
        registers = [int(r) for r in re.findall(r"Used (\d+) registers", report)]
        instances = len(groups[kernel_class])
        print(f"{kernel_class}: {kernels} kernels of {instances} instances compiled for {args.arch}, registers "
              f"{min(registers)}-{max(registers)}, {len(problems)} with spills or local memory")
        for line in problems:
            print("  " + line)
        failed |= bool(problems) or kernels < instances
        if kernels < instances:
            print(f"  expected a kernel or more for each of {instances} instances in ptxas's report, found {kernels}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
