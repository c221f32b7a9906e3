#!/usr/bin/env python
"""Time our RMSNorm kernels against their peers on a CUDA GPU, with the copy bandwidth measured in the same run.

Providers, all for x [tokens, hidden] and a weight [hidden] of one dtype, eps 1e-6:
  ours        torch.ops.inductor_rmsnorm.rms_norm (formulation "torch"); "—" where no kernel serves the size
  hf_eager    the Hugging Face Llama formulation in plain torch ops
  F.rms_norm  torch.nn.functional.rms_norm
  inductor    torch.compile(F.rms_norm), default options, dynamic=False (one compile per shape)
  liger       Liger-Kernel's LigerRMSNormFunction, when liger_kernel is importable
With --fused-add each computes s = x + residual and norm(s), returning both (ours: fused_add_rms_norm; liger:
LigerFusedAddRMSNormFunction; the others add first), and the bytes moved are x and residual read, y and s
written, the weight read.

Each time is the median per-call time over CUDA-graph replays of a sequence of calls that cycles through enough
input buffers to exceed twice the L2 (DESIGN.md, "Conventions"), taken twice at each point, the providers in
their order and then reversed, and averaged (`us_passes` in the JSON holds both): the first timed after a point's
warm-up read up to 0.14 µs higher in run 25 (docs/RUNS.md), so no provider keeps that place. A '*'
marks a provider whose capture failed and that was timed with events alone. Every provider's output is checked
against F.rms_norm first; a wrong one is reported as FAIL and not timed. Progress goes to stdout one line per
point, a markdown table comes last, and everything is written as JSON (rewritten after each point, so a run cut
short keeps its numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from inductor_rmsnorm import kernel_for, ops  # noqa: E402

EPS = 1e-6
DEFAULT_HIDDEN = (64, 128, 256, 512, 1024, 2048, 4096, 5120, 8192)
DEFAULT_TOKENS = (1, 16, 128, 1024, 8192, 32768)
# --grid all-sizes: the sizes real models use, 64 to 65536 (96 and 192: head dims; 512 and 1536: DeepSeek's latent
# norms; 2880: gpt-oss; 5376: Gemma 3 27B; 7168: DeepSeek-V3; 16384: Llama 3 405B), up to 65536 tokens.
ALL_SIZES_HIDDEN = (64, 96, 128, 192, 256, 512, 1024, 1536, 2048, 2880, 4096, 5120, 5376, 7168, 8192, 12288, 16384,
                    32768, 65536)
ALL_SIZES_TOKENS = (1, 16, 128, 1024, 8192, 65536)
GRIDS = {"default": (DEFAULT_HIDDEN, DEFAULT_TOKENS), "all-sizes": (ALL_SIZES_HIDDEN, ALL_SIZES_TOKENS)}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
SHORT_DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
# assert_close tolerance against F.rms_norm: loose enough for the formulations' rounding, tight enough for bugs.
CHECK_TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 2e-2, torch.float32: 1e-4}

PROVIDERS = ("ours", "hf_eager", "F.rms_norm", "inductor", "liger")
PEERS = ("hf_eager", "F.rms_norm", "inductor", "liger")

MiB = 2**20
COPY_BYTES = 2**30  # the copy-bandwidth probe: 1 GiB device to device
TARGET_REPLAY_SECONDS = 1e-3  # a replay this long keeps the host's launches ahead of the GPU
MAX_CALLS_PER_REPLAY = 200
MIN_ROTATION_BYTES = 128 * MiB  # input buffers together exceed twice the L2 (60 MB on the H200), at least this
MAX_BUFFER_BYTES = 8 * 2**30
# The issues' targets, reported after the table (not enforced).
TARGET_MIN_BYTES = 64 * MiB  # points this large should reach...
TARGET_FRACTIONS_OF_COPY = (0.90, 0.93)  # ...this fraction of the copy bandwidth (issue 2's bar, issue 4's)
SMALL_BATCH_TOKENS = 128  # calls this small should take at most...
SMALL_BATCH_SLACK = 1.15  # ...this times (graph-replayed tiny kernel + bytes / copy bandwidth) (issue 4)
TARGET_GEOMEAN_VS_INDUCTOR = 1.25  # geometric-mean speed-up over Inductor across the grid (issue 4)
WARM_UP_SECONDS = 0.05  # before each point's timings
FIRST_WARM_UP_SECONDS = 2.0  # before the copy probe: an idle GPU starts at low clocks


# ------------------------------------------------------------------------------------------------- providers
def our_rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ops.rms_norm(x, weight, EPS, "torch")


def hf_llama_rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + EPS)
    return weight * h.to(x.dtype)


def torch_rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, EPS)


def our_fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor):
    return ops.fused_add_rms_norm(x, residual, weight, EPS, "torch")


def after_residual_add(norm: Callable) -> Callable:
    """norm(x + residual) and the sum, as a decoder layer computes them with two ops."""
    def fused(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor):
        s = x + residual
        return norm(s, weight), s
    return fused


@dataclasses.dataclass(frozen=True)
class Provider:
    name: str
    function: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]  # (x, weight) or (x, residual, weight)
    serves: Callable[[int, torch.dtype], bool] = lambda hidden, dtype: True


def configure_torch_compile() -> None:
    """One compile per shape needs more cache entries than Dynamo allows by default; the baseline is Inductor
    alone, so a custom post-grad pass (ours, if something installed it) is switched off."""
    torch._dynamo.config.cache_size_limit = 1024
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = 1024
    torch._inductor.config.post_grad_custom_pre_pass = None
    torch._inductor.config.post_grad_custom_post_pass = None


def liger_rms_norm(fused_add: bool) -> tuple[Callable | None, str | None]:
    """Liger's RMSNorm (or its fused residual add), or None and why it is unavailable."""
    try:
        if fused_add:
            from liger_kernel.ops.fused_add_rms_norm import LigerFusedAddRMSNormFunction
        else:
            from liger_kernel.ops.rms_norm import LigerRMSNormFunction
    except Exception as error:  # not installed, or broken against this torch/triton: skip the column either way
        return None, f"liger_kernel is not importable ({type(error).__name__}: {error})"
    if fused_add:
        return (lambda x, residual, weight: LigerFusedAddRMSNormFunction.apply(x, residual, weight, EPS)), None
    return (lambda x, weight: LigerRMSNormFunction.apply(x, weight, EPS)), None


def reference_function(fused_add: bool) -> Callable:
    """What every provider's output is checked against."""
    return after_residual_add(torch_rms_norm) if fused_add else torch_rms_norm


def make_providers(names: list[str], fused_add: bool) -> tuple[list[Provider], dict[str, str]]:
    """The providers asked for, and those skipped with the reason."""
    available: dict[str, Provider] = {}
    skipped: dict[str, str] = {}
    has_kernel = lambda hidden, dtype: kernel_for(hidden, dtype) is not None  # noqa: E731
    available["ours"] = Provider("ours", our_fused_add_rms_norm if fused_add else our_rms_norm, has_kernel)
    hf_eager = after_residual_add(hf_llama_rms_norm) if fused_add else hf_llama_rms_norm
    available["hf_eager"] = Provider("hf_eager", hf_eager)
    available["F.rms_norm"] = Provider("F.rms_norm", reference_function(fused_add))
    if "inductor" in names:
        configure_torch_compile()
        available["inductor"] = Provider("inductor", torch.compile(reference_function(fused_add), dynamic=False))
    if "liger" in names:
        liger, reason = liger_rms_norm(fused_add)
        if liger is None:
            skipped["liger"] = reason
        else:
            available["liger"] = Provider("liger", liger)
    return [available[name] for name in names if name in available], skipped


# ---------------------------------------------------------------------------------------------------- timing
@dataclasses.dataclass(frozen=True)
class Timing:
    seconds_per_call: float
    capture_error: str | None = None  # set when the graph capture failed and events alone timed the calls


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median device time of `run()` over `repeats` back-to-back runs, between CUDA events."""
    run()  # untimed: the first replay uploads the graph
    events = [torch.cuda.Event(enable_timing=True) for _ in range(repeats + 1)]
    events[0].record()
    for event in events[1:]:
        run()
        event.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in itertools.pairwise(events)) / 1e3


def run_calls(call: Callable[[int], object], calls: int) -> None:
    for index in range(calls):
        call(index)  # outputs are dropped at once, so the allocator (or the graph's pool) reuses their memory


def capture(call: Callable[[int], object], calls: int) -> torch.cuda.CUDAGraph:
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run_calls(call, calls)
    return graph


def time_per_call(call: Callable[[int], object], calls: int, replays: int) -> Timing:
    """Seconds per call of `call(0) ... call(calls - 1)` replayed as one CUDA graph (events alone if capture fails)."""
    run_calls(call, calls)  # warm-up over every buffer: compilation, autotuning and lazy loading stay out of capture
    torch.cuda.synchronize()
    try:
        graph = capture(call, calls)
    except Exception as error:
        torch.cuda.synchronize()
        return Timing(median_seconds(lambda: run_calls(call, calls), replays) / calls, one_line(error))
    return Timing(median_seconds(graph.replay, replays) / calls)


def keep_gpu_busy(seconds: float) -> None:
    """Run matrix products for `seconds`, so the GPU's clocks are up when timing starts."""
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()


def measure_copy_bandwidth(replays: int) -> float:
    """Bytes read plus bytes written per second by the faster of two 1 GiB device-to-device copies:
    `copy_` (a memcpy, which inside a CUDA graph may take a slower copy-engine path) and a copy kernel."""
    source = torch.randn(COPY_BYTES // 4, device="cuda")
    destination = torch.empty_like(source)
    memcpy = median_seconds(lambda: destination.copy_(source), replays)
    kernel = median_seconds(lambda: torch.neg(source, out=destination), replays)
    return 2 * COPY_BYTES / min(memcpy, kernel)


def measure_launch_floor(replays: int) -> float:
    """Seconds per graph-replayed launch of a one-element add."""
    tiny = torch.ones(1, device="cuda")
    return time_per_call(lambda _: tiny.add_(1.0), calls=MAX_CALLS_PER_REPLAY, replays=replays).seconds_per_call


def l2_cache_bytes() -> int:
    return getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "L2_cache_size", 60 * 10**6)


def plan_replay(x_bytes: int, bytes_moved: int, copy_bandwidth: float, launch_floor: float) -> tuple[int, int]:
    """(calls per replay, input buffers): a replay of about a millisecond, over buffers that defeat the L2.

    The call estimate is the larger of the launch floor and a copy of the same bytes. Every buffer is read once
    per replay at least, so the buffer count is capped by the calls a replay may hold: inputs under ~0.6 MiB
    rotate through less than the L2 (they are launch-bound anyway). The buffers together stay within
    MAX_BUFFER_BYTES, down to one: inputs of over 4 GiB are far past any L2, and a second set may not fit beside
    the outputs (fused bf16 65536 x 65536 on an 80 GB H100 ran out of memory with two, run 37).
    """
    estimated_call = max(launch_floor, bytes_moved / copy_bandwidth)
    calls = min(MAX_CALLS_PER_REPLAY, math.ceil(TARGET_REPLAY_SECONDS / estimated_call))
    buffers = max(2, math.ceil(max(MIN_ROTATION_BYTES, 2 * l2_cache_bytes()) / x_bytes))
    buffers = min(buffers, max(1, MAX_BUFFER_BYTES // x_bytes), MAX_CALLS_PER_REPLAY)
    return max(calls, buffers), buffers


# ------------------------------------------------------------------------------------------------ one point
class WrongResult(Exception):
    """A provider's output is not close to F.rms_norm's: its time would mean nothing."""


# Compared this many elements at a time: assert_close's temporaries for a whole 16 GiB output (fp32 fused
# 65536 x 65536) did not fit beside the operands on the H200 (run 17).
CHECK_CHUNK_ELEMENTS = 1 << 26


def check_output(output, expected) -> None:
    """Outputs (a tensor, or y and the sum) close to the reference's."""
    outputs, expectations = (output, expected) if isinstance(expected, tuple) else ((output,), (expected,))
    try:
        assert len(outputs) == len(expectations), f"{len(outputs)} outputs, expected {len(expectations)}"
        for actual, wanted in zip(outputs, expectations):
            assert actual.shape == wanted.shape, f"shape {list(actual.shape)}, expected {list(wanted.shape)}"
            tolerance = CHECK_TOLERANCE[wanted.dtype]
            for part, wanted_part in zip(actual.reshape(-1).split(CHECK_CHUNK_ELEMENTS),
                                         wanted.reshape(-1).split(CHECK_CHUNK_ELEMENTS)):
                torch.testing.assert_close(part, wanted_part, rtol=tolerance, atol=tolerance)
    except AssertionError as error:
        raise WrongResult(one_line(error)) from None


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def bytes_moved(tokens: int, hidden: int, dtype: torch.dtype, fused_add: bool = False) -> int:
    """x read, y written, weight read (fused add: also the residual read and the sum written)."""
    return ((4 if fused_add else 2) * tokens * hidden + hidden) * dtype.itemsize


def derived_ratios(us: dict[str, float | None], moved: int, copy_bandwidth: float) -> dict[str, float | None]:
    """Ours as a fraction of the copy bandwidth, and peer time over our time (above 1: ours is faster)."""
    ours = us.get("ours")
    peers = [us[name] for name in PEERS if us.get(name) is not None]
    inductor = us.get("inductor")
    return {
        "ours_fraction_of_copy": None if ours is None else moved / (ours * 1e-6) / copy_bandwidth,
        "speedup_vs_inductor": None if ours is None or inductor is None else inductor / ours,
        "speedup_vs_best_peer": None if ours is None or not peers else min(peers) / ours,
    }


def first_call_checked(provider: Provider, operands: tuple, weight, expected) -> float:
    """Seconds of the provider's first call (it compiles, builds or loads), whose output must match the
    reference. The output goes when this returns, so no provider's output stays beside the next provider's call
    (fused 65536 x 65536 bf16 outputs take 16 GiB each)."""
    start = time.perf_counter()
    output = provider.function(*operands, weight)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    check_output(output, expected)
    return seconds


def measure_point(
    dtype_name: str, hidden: int, tokens: int, providers: list[Provider], copy_bandwidth: float,
    launch_floor: float, replays: int, fused_add: bool = False,
) -> dict:
    """Check and time every provider at one shape; returns the JSON record."""
    dtype = DTYPES[dtype_name]
    moved = bytes_moved(tokens, hidden, dtype, fused_add)
    operands = 2 if fused_add else 1  # x, or x and the residual
    inputs_bytes = operands * tokens * hidden * dtype.itemsize
    calls, buffer_count = plan_replay(inputs_bytes, moved, copy_bandwidth, launch_floor)
    inputs = [tuple(torch.randn(tokens, hidden, device="cuda", dtype=dtype) for _ in range(operands))
              for _ in range(buffer_count)]
    weight = (torch.randn(hidden, device="cuda") * 0.5 + 1.0).to(dtype)  # not ones: ones hide weight bugs
    expected = reference_function(fused_add)(*inputs[0], weight)
    record = {
        "dtype": dtype_name, "hidden": hidden, "tokens": tokens, "fused_add": fused_add, "bytes": moved,
        "calls_per_replay": calls, "input_buffers": buffer_count,
        "us": {}, "first_call_s": {}, "skipped": {}, "failed_checks": {}, "errors": {}, "timed_without_graph": {},
    }
    ready = []
    for provider in providers:  # first calls (compiles, builds) and checks, before any timing
        record["us"][provider.name] = None
        if not provider.serves(hidden, dtype):
            record["skipped"][provider.name] = f"no kernel for hidden {hidden} in {dtype_name}"
            continue
        try:
            record["first_call_s"][provider.name] = first_call_checked(provider, inputs[0], weight, expected)
            ready.append(provider)
        except WrongResult as failure:
            record["failed_checks"][provider.name] = str(failure)
        except Exception as error:  # one provider's failure must not end the run
            record["errors"][provider.name] = one_line(error)
    keep_gpu_busy(WARM_UP_SECONDS)  # compiles leave the GPU idle and its clocks low; raise them before timing
    passes: dict[str, list[float]] = {}
    for provider in ready + ready[::-1]:  # in order, then reversed: see the module's docstring
        if provider.name in record["errors"]:
            continue
        try:
            timing = time_per_call(
                lambda index: provider.function(*inputs[index % buffer_count], weight), calls, replays
            )
        except Exception as error:
            record["errors"][provider.name] = one_line(error)
            continue
        passes.setdefault(provider.name, []).append(timing.seconds_per_call * 1e6)
        if timing.capture_error is not None:
            record["timed_without_graph"][provider.name] = timing.capture_error
    record["us_passes"] = {name: times for name, times in passes.items() if name not in record["errors"]}
    for name, times in record["us_passes"].items():
        record["us"][name] = statistics.fmean(times)
    if tokens <= SMALL_BATCH_TOKENS:
        record["same_bytes_copy_us"] = same_bytes_copy_us(operands * tokens, hidden, dtype, buffer_count, calls,
                                                          replays)
    record.update(derived_ratios(record["us"], moved, copy_bandwidth))
    return record


def same_bytes_copy_us(rows: int, hidden: int, dtype: torch.dtype, buffer_count: int, calls: int,
                       replays: int) -> float:
    """Microseconds per graph-replayed elementwise kernel that reads and writes the bytes a small call does
    (`torch.neg`, one launch, rotating buffers): the launch, the DRAM round trip and the write that no kernel
    reading its input before writing can go below. The small-batch bar (launch floor + bytes / copy) leaves
    out the round trip."""
    sources = [torch.randn(rows, hidden, device="cuda", dtype=dtype) for _ in range(buffer_count)]
    targets = [torch.empty_like(source) for source in sources]
    copy = lambda index: torch.neg(sources[index % buffer_count], out=targets[index % buffer_count])  # noqa: E731
    return time_per_call(copy, calls, replays).seconds_per_call * 1e6


# ------------------------------------------------------------------------------------------------ reporting
def format_bytes(count: int) -> str:
    return f"{count / MiB:.1f} MiB" if count >= MiB else f"{count / 1024:.1f} KiB"


def point_label(record: dict) -> str:
    variant = " fused-add" if record.get("fused_add") else ""
    return f"{SHORT_DTYPE_NAMES[record['dtype']]}{variant} hidden={record['hidden']} tokens={record['tokens']}"


def time_cell(record: dict, name: str) -> str:
    if name in record["failed_checks"]:
        return "FAIL"
    if name in record["errors"]:
        return "ERR"
    us = record["us"].get(name)
    if us is None:
        return "—"
    text = f"{us:.2f}" if us < 100 else f"{us:.1f}"
    return text + ("*" if name in record["timed_without_graph"] else "")


def ratio_cell(value: float | None, as_percent: bool = False) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.0f}%" if as_percent else f"{value:.2f}×"


def progress_line(index: int, total: int, record: dict, provider_names: list[str]) -> str:
    times = "  ".join(f"{name} {time_cell(record, name)}" for name in provider_names)
    slow_first_calls = ", ".join(
        f"{name} {seconds:.1f} s" for name, seconds in record["first_call_s"].items() if seconds >= 0.1
    )
    line = (
        f"[{index:>{len(str(total))}}/{total}] {point_label(record)} ({format_bytes(record['bytes'])}): {times} µs"
        f" | ours {ratio_cell(record['ours_fraction_of_copy'], as_percent=True)} of copy,"
        f" {ratio_cell(record['speedup_vs_inductor'])} vs inductor,"
        f" {ratio_cell(record['speedup_vs_best_peer'])} vs best peer"
    )
    return line + (f" | first call (compile/build): {slow_first_calls}" if slow_first_calls else "")


def header_line(environment: dict) -> str:
    return (
        f"{environment['gpu']} · torch {environment['torch']} · triton {environment['triton']}"
        f" · CUDA {environment['cuda']} · copy {environment['copy_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s"
        f" · launch floor {environment['launch_floor_us']:.2f} µs · {environment['date']}"
    )


def markdown_table(records: list[dict], provider_names: list[str]) -> str:
    columns = ["dtype", "hidden", "tokens", *(f"{name} µs" for name in provider_names)]
    columns += ["ours % of copy", "vs inductor", "vs best peer"]
    rows = [
        [
            SHORT_DTYPE_NAMES[record["dtype"]], str(record["hidden"]), str(record["tokens"]),
            *(time_cell(record, name) for name in provider_names),
            ratio_cell(record["ours_fraction_of_copy"], as_percent=True),
            ratio_cell(record["speedup_vs_inductor"]), ratio_cell(record["speedup_vs_best_peer"]),
        ]
        for record in records
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def target_lists(environment: dict, records: list[dict]) -> str:
    """The issues' targets, reported (not enforced): the geometric-mean speed-ups, and every point that misses a
    bar: slower than Inductor or than the best peer, large points short of the copy, small calls above their
    floor."""
    timed = [r for r in records if r["speedup_vs_inductor"] is not None]
    geomeans = []
    for key, peer in (("speedup_vs_inductor", "inductor"), ("speedup_vs_best_peer", "the best peer")):
        ratios = [r[key] for r in records if r[key] is not None]
        if ratios:
            geomeans.append(f"{math.exp(statistics.fmean(map(math.log, ratios))):.2f}× over {peer}")
    summary = (f"Geometric-mean speed-up over {len(timed)} points: {', '.join(geomeans) or 'none timed'}"
               f" (issue 4: >= {TARGET_GEOMEAN_VS_INDUCTOR}× over inductor)")

    def slower_than(key: str, peer_of) -> list[str]:
        return [f"  {point_label(r)}: ours {r['us']['ours']:.2f} µs, {peer_of(r)} ({r[key]:.2f}×)"
                for r in records if r[key] is not None and r[key] < 1]

    def best_peer(record: dict) -> str:
        name = min((n for n in PEERS if record["us"].get(n) is not None), key=lambda n: record["us"][n])
        return f"{name} {record['us'][name]:.2f} µs"

    sections = [
        ("Ours slower than inductor",
         slower_than("speedup_vs_inductor", lambda r: f"inductor {r['us']['inductor']:.2f} µs")),
        ("Ours slower than the best peer", slower_than("speedup_vs_best_peer", best_peer)),
    ]
    for fraction in TARGET_FRACTIONS_OF_COPY:
        sections.append((
            f"At least {TARGET_MIN_BYTES // MiB} MiB moved, ours below {fraction:.0%} of copy",
            [f"  {point_label(r)} ({format_bytes(r['bytes'])}): ours at {100 * r['ours_fraction_of_copy']:.0f}% of copy"
             for r in records if r["bytes"] >= TARGET_MIN_BYTES and r["ours_fraction_of_copy"] is not None
             and r["ours_fraction_of_copy"] < fraction],
        ))
    floor_seconds, copy_bandwidth = environment["launch_floor_us"] * 1e-6, environment["copy_bandwidth_bytes_per_s"]
    small = []
    for r in records:
        if r["tokens"] <= SMALL_BATCH_TOKENS and r["us"].get("ours") is not None:
            bound_us = (floor_seconds + r["bytes"] / copy_bandwidth) * 1e6
            if r["us"]["ours"] > SMALL_BATCH_SLACK * bound_us:
                copy_us = r.get("same_bytes_copy_us")
                same_bytes = "" if copy_us is None else (f"; a same-bytes copy kernel {copy_us:.2f} µs "
                                                         f"(ours {r['us']['ours'] / copy_us:.2f}× of it)")
                small.append(f"  {point_label(r)}: ours {r['us']['ours']:.2f} µs, {r['us']['ours'] / bound_us:.2f}× "
                             f"of the floor + bytes / copy ({bound_us:.2f} µs){same_bytes}")
    sections.append((f"Tokens <= {SMALL_BATCH_TOKENS}, ours above {SMALL_BATCH_SLACK}× (launch floor + bytes / copy)",
                     small))
    sections.append(("Failed checks and errors", [
        f"  {point_label(r)}: {name}: {message[:200]}"
        for r in records
        for name, message in itertools.chain(r["failed_checks"].items(), r["errors"].items())
    ]))
    return "\n".join([summary] + [f"{title}: {len(lines) or 'none'}" + "".join("\n" + line for line in lines)
                                  for title, lines in sections])


def final_report(environment: dict, records: list[dict], provider_names: list[str]) -> str:
    footnotes = [f"{name}: {reason}" for name, reason in environment["skipped_providers"].items()]
    if any(r["timed_without_graph"] for r in records):
        footnotes.append("*: graph capture failed; timed with events around eager calls (reason in the JSON)")
    return "\n\n".join(
        [header_line(environment), markdown_table(records, provider_names)]
        + (["Skipped and notes:\n" + "\n".join(f"  {note}" for note in footnotes)] if footnotes else [])
        + [target_lists(environment, records)]
    )


# ------------------------------------------------------------------------------------------------ the run
def triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    return triton.__version__


def describe_environment() -> dict:
    properties = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "gpu": properties.name,
        "compute_capability": f"{properties.major}.{properties.minor}",
        "sm_count": properties.multi_processor_count,
        "l2_cache_bytes": l2_cache_bytes(),
        "torch": torch.__version__,
        "triton": triton_version(),
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: Path, environment: dict, settings: dict, records: list[dict]) -> None:
    path.write_text(json.dumps({"environment": environment, "settings": settings, "records": records}, indent=1))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time inductor_rmsnorm's kernels against hf_eager, F.rms_norm, inductor and liger on a CUDA GPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--grid", choices=list(GRIDS), default="default",
                        help="hidden sizes and token counts, where --hidden / --tokens do not say")
    parser.add_argument("--hidden", type=positive_int, nargs="+", help="hidden sizes")
    parser.add_argument("--tokens", type=positive_int, nargs="+", help="token counts")
    parser.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=["bfloat16"], help="dtypes of x and weight")
    parser.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS),
                        help="what to time (leaving out inductor skips its compiles)")
    parser.add_argument("--fused-add", action="store_true", help="residual add + norm, both outputs returned")
    parser.add_argument("--replays", type=positive_int, default=20, help="timed graph replays per measurement")
    parser.add_argument("--json", type=Path, default=Path("bench_kernels.json"), help="where to write the results")
    args = parser.parse_args(argv)
    grid_hidden, grid_tokens = GRIDS[args.grid]
    args.hidden = args.hidden or list(grid_hidden)
    args.tokens = args.tokens or list(grid_tokens)
    return args


def grid(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    return list(itertools.product(args.dtype, args.hidden, args.tokens))


def explain_cpu_skip(args: argparse.Namespace) -> None:
    print(
        f"bench_kernels: this benchmark needs a CUDA GPU, and torch {torch.__version__} sees none.\n"
        f"Skipped: the copy-bandwidth and launch-floor probes, and {len(grid(args))} points"
        f" (dtypes {', '.join(args.dtype)}; hidden {args.hidden}; tokens {args.tokens})"
        f" for {', '.join(args.providers)}. Nothing was written to {args.json}.",
        flush=True,
    )


@torch.no_grad()
def run_benchmark(args: argparse.Namespace) -> None:
    providers, skipped = make_providers(args.providers, args.fused_add)
    provider_names = [provider.name for provider in providers]
    environment = describe_environment()
    keep_gpu_busy(FIRST_WARM_UP_SECONDS)
    environment["copy_bandwidth_bytes_per_s"] = measure_copy_bandwidth(args.replays)
    environment["launch_floor_us"] = measure_launch_floor(args.replays) * 1e6
    environment["skipped_providers"] = skipped
    settings = {"dtypes": args.dtype, "hidden": args.hidden, "tokens": args.tokens, "eps": EPS,
                "fused_add": args.fused_add,
                "replays": args.replays, "providers": provider_names}
    print(header_line(environment), flush=True)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", flush=True)

    points = grid(args)
    records: list[dict] = []
    for index, (dtype_name, hidden, tokens) in enumerate(points, start=1):
        record = measure_point(
            dtype_name, hidden, tokens, providers, environment["copy_bandwidth_bytes_per_s"],
            environment["launch_floor_us"] * 1e-6, args.replays, args.fused_add,
        )
        records.append(record)
        write_json(args.json, environment, settings, records)
        print(progress_line(index, len(points), record, provider_names), flush=True)
    print("\n" + final_report(environment, records, provider_names), flush=True)
    print(f"\nwrote {args.json}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if not torch.cuda.is_available():
        explain_cpu_skip(args)
        return 0
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
