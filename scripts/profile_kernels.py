"""Run ours and Inductor's kernel once per point, for a profiler to look at (no timing of its own):

    ncu --clock-control none --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
        python scripts/profile_kernels.py --points 128x1 8192x32768

Each point runs after its warm-up, between NVTX ranges named "<provider> <hidden>x<tokens>".
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from inductor_rmsnorm import ops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", nargs="+", default=["128x1", "4096x1", "8192x32768"], help="HIDDENxTOKENS")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("profiling needs a CUDA GPU; skipped")
        return 0
    compiled = torch.compile(lambda x, w: F.rms_norm(x, (x.shape[-1],), w, 1e-6), dynamic=False)
    providers = {"ours": lambda x, w: ops.rms_norm(x, w, 1e-6, "torch"), "inductor": compiled}
    for point in args.points:
        hidden, tokens = map(int, point.split("x"))
        x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(hidden, device="cuda", dtype=torch.bfloat16)
        for name, provider in providers.items():
            provider(x, w)  # build / compile outside the profiled range
            torch.cuda.synchronize()
            torch.cuda.nvtx.range_push(f"{name} {point}")
            provider(x, w)
            torch.cuda.synchronize()
            torch.cuda.nvtx.range_pop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
