"""Where a compiled model's time goes, with the pass and without it: one workload of scripts/bench_models.py
(default: Llama 3, one decode step at batch 1, torch.compile defaults; `--mode reduce-overhead` for CUDA graphs)
under torch.profiler, printing the ops with the most CPU time and the most CUDA time for each. Run with
TORCH_LOGS=output_code to see the generated code.
`--trace DIR` also writes each profile as a Chrome trace (chrome://tracing, ui.perfetto.dev): the timeline shows
where the GPU waits for the host.

Usage: python scripts/profile_model.py [--model llama3] [--phase decode] [--batch 1] [--tokens 1] [--rows 20]
           [--mode default|reduce-overhead] [--trace DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import MODELS, Workload, build_model  # noqa: E402

import inductor_rmsnorm  # noqa: E402


def profile(workload: Workload, forward, calls: int, rows: int, trace: Path | None) -> None:
    for _ in range(3):  # compile and warm up outside the profile
        workload.run(forward)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as profiler:
        for _ in range(calls):
            workload.run(forward)
        torch.cuda.synchronize()
    averages = profiler.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
    print(averages.table(sort_by="self_cuda_time_total", row_limit=rows))
    if trace is not None:
        profiler.export_chrome_trace(str(trace))
        print(f"trace written to {trace}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="llama3")
    parser.add_argument("--phase", choices=["prefill", "decode"], default="decode")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=1, help="prefill tokens a sequence (decode: always 1)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--mode", choices=["default", "reduce-overhead"], default="default",
                        help="torch.compile's mode")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--trace", type=Path, metavar="DIR", help="write a Chrome trace of each profile here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("profiling needs a CUDA GPU; skipped")
        return 0
    model = build_model(args.model, args.layers)
    workload = Workload(model, args.phase, args.batch, args.tokens if args.phase == "prefill" else 1)
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)
    mode = None if args.mode == "default" else args.mode
    for label, with_pass in (("without", False), ("with", True)):
        print(f"==== {args.model} {workload.label()}, torch.compile mode {args.mode}, {label} the pass", flush=True)
        torch._dynamo.reset()
        trace = None
        if args.trace is not None:
            name = f"{args.model}_{args.phase}_{args.batch}x{workload.tokens}_{args.mode}_{label}_pass.json"
            trace = args.trace / name
        if with_pass:
            forward = torch.compile(model, options=inductor_rmsnorm.compile_options(mode=mode))
        else:
            forward = torch.compile(model, mode=mode)
        profile(workload, forward, args.calls, args.rows, trace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
