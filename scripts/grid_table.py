"""Print a bench_kernels.py JSON as the hidden x tokens table of docs/RUNS.md: each cell "ours µs;
Inductor / ours", with ours as a fraction of the copy bandwidth where at least 64 MiB move.

Usage: python scripts/grid_table.py docs/bench_h200_bf16_allsizes_run15.json [--dtype bfloat16]
           (a JSON of several dtypes: the one to print; the first record's by default)
"""

from __future__ import annotations

import argparse
import json
import sys

LARGE_BYTES = 64 * 2**20  # where the copy-bandwidth bar applies (bench_kernels.TARGET_MIN_BYTES)


def cell(record: dict) -> str:
    ours = record["us"].get("ours")
    if ours is None:
        return "-"
    text = f"{ours:.3g}"
    if record.get("speedup_vs_inductor") is not None:
        text += f"; {record['speedup_vs_inductor']:.2f}×"
    if record["bytes"] >= LARGE_BYTES and record.get("ours_fraction_of_copy") is not None:
        text += f" ({record['ours_fraction_of_copy']:.0%})"
    return text


def table(records: list[dict]) -> str:
    tokens = sorted({r["tokens"] for r in records})
    by_point = {(r["hidden"], r["tokens"]): r for r in records}
    lines = ["| hidden | " + " | ".join(str(t) for t in tokens) + " |", "|---|" + "---|" * len(tokens)]
    for hidden in sorted({r["hidden"] for r in records}):
        cells = [cell(by_point[hidden, t]) if (hidden, t) in by_point else "-" for t in tokens]
        lines.append(f"| {hidden} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json_path")
    parser.add_argument("--dtype", help="the dtype to print (default: the first record's)")
    args = parser.parse_args(argv)
    with open(args.json_path) as f:
        records = json.load(f)["records"]
    dtype = args.dtype or records[0]["dtype"]
    records = [r for r in records if r["dtype"] == dtype]
    if not records:
        print(f"no records for {dtype} in {args.json_path}")
        return 1
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
