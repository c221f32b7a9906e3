"""The Inductor pass on a Llama-style block, on the GPU: `s = x + residual; y = LlamaRMSNorm(s)` (both used, as
in a decoder layer), compiled with Inductor's defaults, with the pass and without it, timed like
bench_kernels.py (CUDA-graph replay, rotating buffers) with the copy bandwidth of the same run. The pass runs with
policy="always": the benchmark captures the CUDA graphs itself, which the pass cannot see, so its rule for
launch-bound norms in compiles without CUDA graphs (fewer than 32 rows) would otherwise leave the smallest
points to Inductor; a user who captures graphs does the same.

The issue's bar: with the pass, no slower than without it at any size. Prints a table, writes JSON (--json).
Usage: python scripts/bench_block.py [--hidden 4096 8192] [--tokens 1 16 128 1024 8192 32768] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_kernels import (  # noqa: E402
    FIRST_WARM_UP_SECONDS, WARM_UP_SECONDS, describe_environment, keep_gpu_busy, measure_copy_bandwidth,
    measure_launch_floor, plan_replay, time_per_call,
)
from modules import DecoderLayerTail, LlamaRMSNorm  # noqa: E402

import inductor_rmsnorm  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 16, 128, 1024, 8192, 32768])
    parser.add_argument("--json", default="bench_block.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("the block benchmark needs a CUDA GPU; skipped")
        return 0
    torch._dynamo.config.cache_size_limit = 1024
    environment = describe_environment()
    keep_gpu_busy(FIRST_WARM_UP_SECONDS)
    copy_bandwidth, launch_floor = measure_copy_bandwidth(10), measure_launch_floor(10)
    print(f"{environment['gpu']}, copy {copy_bandwidth / 1e12:.2f} TB/s, launch floor {launch_floor * 1e6:.2f} µs")
    print("| hidden | tokens | without pass µs | with pass µs | speed-up | with pass % of copy | replaced |")
    print("|---|---|---|---|---|---|---|")
    records = []
    for hidden in args.hidden:
        module = DecoderLayerTail(LlamaRMSNorm(hidden)).to("cuda", torch.bfloat16)
        with torch.no_grad():
            module.norm.weight.normal_(1.0, 0.5)
        for tokens in args.tokens:
            element_bytes = tokens * hidden * 2
            moved = 4 * element_bytes + hidden * 2  # x, residual read; y, s written; weight read
            calls, buffers = plan_replay(2 * element_bytes, moved, copy_bandwidth, launch_floor)
            inputs = [(torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16),
                       torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)) for _ in range(buffers)]
            times, outputs = {}, {}
            for name, options in (("without", {}), ("with", inductor_rmsnorm.compile_options(policy="always"))):
                torch._dynamo.reset()
                inductor_rmsnorm.report(clear=True)
                compiled = torch.compile(module, options=options, dynamic=False)
                with torch.no_grad():
                    outputs[name] = [t.clone() for t in compiled(*inputs[0])]
                    replaced = len(inductor_rmsnorm.report().replaced)
                    keep_gpu_busy(WARM_UP_SECONDS)
                    times[name] = time_per_call(lambda i: compiled(*inputs[i % buffers]), calls, 10).seconds_per_call
            torch.testing.assert_close(outputs["with"][1], outputs["without"][1], rtol=0, atol=0)
            torch.testing.assert_close(outputs["with"][0], outputs["without"][0], rtol=1e-2, atol=1e-2)
            record = {"hidden": hidden, "tokens": tokens, "bytes": moved, "without_us": times["without"] * 1e6,
                      "with_us": times["with"] * 1e6, "replaced": replaced,
                      "with_fraction_of_copy": moved / times["with"] / copy_bandwidth}
            records.append(record)
            print(f"| {hidden} | {tokens} | {record['without_us']:.2f} | {record['with_us']:.2f} | "
                  f"{times['without'] / times['with']:.2f}× | {record['with_fraction_of_copy']:.0%} | {replaced} |",
                  flush=True)
    slower = [r for r in records if r["with_us"] > r["without_us"]]
    print(f"with the pass slower at {len(slower)} of {len(records)} points")
    environment.update(copy_bandwidth_bytes_per_s=copy_bandwidth, launch_floor_us=launch_floor * 1e6)
    Path(args.json).write_text(json.dumps({"environment": environment, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
