"""One call of each provider's kernel at a few large points, for Nsight Compute: where our kernels trail
Inductor's and Liger's Triton kernels at many tokens (docs/RUNS.md, runs 10 and 12), the hardware counters
say why (DRAM throughput, occupancy, what the warps wait on), which timings alone cannot.

Everything that is not the measured call (JIT builds, compiles, Triton autotuning, input creation) runs before
`cudaProfilerStart`, so run it under ncu with `--profile-from-start off`:

    ncu --clock-control none --profile-from-start off --section SpeedOfLight --section MemoryWorkloadAnalysis \\
        --section Occupancy --section WarpStateStats --section LaunchStats --csv --page details \\
        python scripts/profile_kernels.py --hidden 4096 8192 --tokens 32768 [--fused-add]

(`scripts/gpu_check.sh ncu` does this.) Each point's calls are, in order: a 1 GiB device-to-device copy (the
bandwidth yardstick), then each provider once; every output is checked against F.rms_norm's. Without ncu it
runs the same calls and prints the order, so the report's kernels can be matched to providers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import COPY_BYTES, DTYPES, check_output, make_providers, reference_function  # noqa: E402

PROVIDERS = ("ours", "inductor", "liger")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--tokens", type=int, nargs="+", default=[32768])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--fused-add", action="store_true", help="the residual add + norm instead")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("profiling kernels needs a CUDA GPU; skipped")
        return 0
    dtype = DTYPES[args.dtype]
    providers, skipped = make_providers(list(PROVIDERS), args.fused_add)
    for name, reason in skipped.items():
        print(f"{name} skipped: {reason}")
    reference = reference_function(args.fused_add)
    copy_source = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    copy_target = torch.empty_like(copy_source)
    points = []
    for hidden in args.hidden:
        for tokens in args.tokens:
            weight = torch.randn(hidden, device="cuda", dtype=dtype)
            operands = [torch.randn(tokens, hidden, device="cuda", dtype=dtype)
                        for _ in range(2 if args.fused_add else 1)]
            expected = reference(*operands, weight)
            serving = [p for p in providers if p.serves(hidden, dtype)]
            for provider in serving:  # builds, compiles and autotunes now, outside the profiled range
                check_output(provider.function(*operands, weight), expected)
            points.append((hidden, tokens, weight, operands, serving))
    torch.cuda.synchronize()

    order = []
    torch.cuda.cudart().cudaProfilerStart()
    for hidden, tokens, weight, operands, serving in points:
        copy_target.copy_(copy_source)
        order.append(f"{hidden} x {tokens}: copy {COPY_BYTES >> 20} MiB")
        for provider in serving:
            provider.function(*operands, weight)
            order.append(f"{hidden} x {tokens}: {provider.name}")
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print(f"{args.dtype}{', residual add + norm' if args.fused_add else ''}; profiled calls, in launch order "
          "(a provider may launch more than one kernel):")
    for line in order:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
