"""Plot a bench_kernels.py JSON: fraction of the copy bandwidth against hidden size at the largest token
count, and latency against tokens at one hidden size, for ours and every peer.

Usage: python scripts/plot_bench.py docs/bench_h200_bf16_run3.json docs/bench_h200_bf16_run3.png [--hidden 4096]
           [--dtype bfloat16]   (a JSON of several dtypes: the one to plot; the first record's by default)
Needs matplotlib (not a dependency of the package: only for these docs).
"""

from __future__ import annotations

import argparse
import json
import sys

PROVIDERS = ("ours", "inductor", "liger", "F.rms_norm", "hf_eager")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json_path")
    parser.add_argument("png_path")
    parser.add_argument("--hidden", type=int, default=4096, help="hidden size of the latency panel")
    parser.add_argument("--dtype", help="the dtype to plot (default: the first record's)")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.json_path) as f:
        data = json.load(f)
    records, environment = data["records"], data["environment"]
    dtype = args.dtype or records[0]["dtype"]
    records = [r for r in records if r["dtype"] == dtype]
    if not records:
        print(f"no records for {dtype} in {args.json_path}")
        return 1
    copy = environment["copy_bandwidth_bytes_per_s"]
    what = f"{dtype}, residual add + norm" if records[0].get("fused_add") else dtype
    most_tokens = max(r["tokens"] for r in records)
    figure, (bandwidth, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    for provider in PROVIDERS:
        points = sorted((r["hidden"], r["bytes"] / (r["us"][provider] * 1e-6) / copy)
                        for r in records if r["tokens"] == most_tokens and r["us"].get(provider))
        if points:
            bandwidth.plot(*zip(*points), marker="o", label=provider)
        points = sorted((r["tokens"], r["us"][provider])
                        for r in records if r["hidden"] == args.hidden and r["us"].get(provider))
        if points:
            latency.plot(*zip(*points), marker="o", label=provider)
    bandwidth.set(xscale="log", xlabel="hidden size", ylabel="fraction of copy bandwidth",
                  title=f"{most_tokens} tokens, {what}", ylim=(0, 1.05))
    bandwidth.axhline(0.9, color="grey", linestyle=":", linewidth=1)
    latency.set(xscale="log", yscale="log", xlabel="tokens", ylabel="µs per call (graph replay)",
                title=f"hidden {args.hidden}, {what}")
    for axes in (bandwidth, latency):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle(f"{environment['gpu']}, torch {environment['torch']}, copy "
                    f"{copy / 1e12:.2f} TB/s, {environment['date'][:10]}")
    figure.tight_layout()
    figure.savefig(args.png_path, dpi=110)
    print(f"wrote {args.png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
