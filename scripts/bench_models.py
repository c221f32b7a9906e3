"""Real models end to end on the GPU: Hugging Face models built from 8B-class configs with a few layers (random
weights, no downloads), bf16, with the pass against without it, and eager `patch(model)` against the unpatched
model.

  prefill  batch x tokens 1 x 4096 and 8 x 2048 (last-token logits, as `generate` computes them)
  decode   one new token per sequence on a static KV cache holding 1024 tokens at the start, batch 1, 32 and 256
           (each timed step appends, so the cache has room for every step of every mode)

Compiled modes: `torch.compile` defaults and `mode="reduce-overhead"` (CUDA graphs). Each time is the median over
rounds of back-to-back calls, synchronised at the end of each round, so launch overheads count as they do in
serving. The rounds pair the pass off and on, in turns (ABBA), and the speed-up is the median of the rounds'
ratios with their quartiles beside it: launch-bound steps (decode at batch 1 without CUDA graphs) vary by tens
of percent between calls of one tree, and the quartiles say how much of a ratio is that noise. Prints one table
row per point (pass off, pass on, speed-up, RMSNorms replaced, and for prefill the largest logit difference
relative to the largest logit) and writes JSON.

Usage: python scripts/bench_models.py [--models llama3 qwen3 gemma3 mistral] [--layers 2]
           [--phases prefill decode] [--modes default reduce-overhead eager] [--decode-batches 1 32 256]
           [--json PATH]
(INDUCTOR_RMSNORM_TUNING=PDL=0 and the like build the kernels with a tuning switch: README, "The JIT cache".)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import describe_environment  # noqa: E402

import inductor_rmsnorm  # noqa: E402
from inductor_rmsnorm.demo import relative_error  # noqa: E402

# 8B-class shapes of each family (hidden, MLP, heads, vocabulary as published); the layer count comes from --layers.
MODELS = {
    "llama3": (transformers.LlamaForCausalLM, transformers.LlamaConfig, dict(
        hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
        vocab_size=128256, rope_theta=500000.0)),
    "qwen3": (transformers.Qwen3ForCausalLM, transformers.Qwen3Config, dict(  # q/k norms on 128-wide heads
        hidden_size=4096, intermediate_size=12288, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        vocab_size=151936)),
    "gemma3": (transformers.Gemma3ForCausalLM, transformers.Gemma3TextConfig, dict(  # Gemma 3 12B: (1 + w)
        hidden_size=3840, intermediate_size=15360, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
        vocab_size=262208, sliding_window=1024)),
    # Mistral 7B v0.3: no sliding window (MistralConfig's default of 4096 is v0.1's). A sliding-window layer of
    # transformers' StaticCache counts its tokens in a Python int, which Dynamo makes a dynamic size, and
    # reduce-overhead then records a new CUDA graph at every decode step (run 21); Gemma 3 keeps its window.
    "mistral": (transformers.MistralForCausalLM, transformers.MistralConfig, dict(
        hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
        vocab_size=32768, sliding_window=None)),
}
PREFILL_SHAPES = ((1, 4096), (8, 2048))  # batch, tokens
DECODE_BATCHES = (1, 32, 256)
CACHED_TOKENS = 1024
ROUNDS, CALLS_PER_ROUND = 20, 5
CALLS_PER_MEASUREMENT = 3 + ROUNDS * CALLS_PER_ROUND + 1  # warm-up, timed, the output compared
MODES = ("default", "reduce-overhead", "eager")


def build_model(name: str, layers: int) -> torch.nn.Module:
    model_class, config_class, shape = MODELS[name]
    config = config_class(**shape, num_hidden_layers=layers, max_position_embeddings=8192)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = model_class(config).to(torch.bfloat16).eval()
    return model


class Workload:
    """One phase and shape: `call()` runs the model once, the same way each time."""

    def __init__(self, model, phase: str, batch: int, tokens: int):
        self.model, self.phase, self.batch, self.tokens = model, phase, batch, tokens
        vocab = model.config.vocab_size
        if phase == "prefill":
            self.kwargs = dict(input_ids=torch.randint(0, vocab, (batch, tokens), device="cuda"), logits_to_keep=1)
        else:  # one decode step on a static cache filled once, eagerly; every call (with or without) appends
            room = CACHED_TOKENS + 2 * len(MODES) * CALLS_PER_MEASUREMENT
            cache = transformers.StaticCache(config=model.config, max_cache_len=room)
            with torch.inference_mode():
                model(input_ids=torch.randint(0, vocab, (batch, CACHED_TOKENS), device="cuda"),
                      past_key_values=cache, use_cache=True, logits_to_keep=1)
            self.kwargs = dict(input_ids=torch.randint(0, vocab, (batch, 1), device="cuda"), past_key_values=cache,
                               use_cache=True)

    def label(self) -> str:
        return f"{self.phase} {self.batch} x {self.tokens}"

    def run(self, forward) -> torch.Tensor:
        with torch.inference_mode():
            return forward(**self.kwargs).logits


def interleaved_milliseconds(workload: Workload, variants: dict) -> dict[str, list[float]]:
    """For each variant (name: (enter, forward)), each round's mean time of back-to-back calls, after warm-up
    calls that compile and capture. Every round times each variant (`enter` before each), the first one first
    in even rounds and last in odd ones, so a drift in the machine's speed reaches them alike: timed one after
    the other, two calls of one tree read 0.92x and 1.00x (run 11)."""
    for enter, forward in variants.values():
        enter()
        for _ in range(3):
            workload.run(forward)
    torch.cuda.synchronize()
    rounds = {name: [] for name in variants}
    for round_index in range(ROUNDS):
        order = list(variants.items())
        for name, (enter, forward) in order if round_index % 2 == 0 else reversed(order):
            enter()
            start = time.perf_counter()
            for _ in range(CALLS_PER_ROUND):
                workload.run(forward)
            torch.cuda.synchronize()
            rounds[name].append((time.perf_counter() - start) / CALLS_PER_ROUND * 1e3)
    return rounds


def compare(model, workload: Workload, mode: str) -> dict:
    """Times the workload without and with the inductor_rmsnorm path; returns the record."""
    inductor_rmsnorm.report(clear=True)
    left_alone, rows_kept = [], []
    if mode == "eager":
        replaced = inductor_rmsnorm.patch(model)
        inductor_rmsnorm.unpatch(model)
        variants = {"without": (lambda: inductor_rmsnorm.unpatch(model), model),
                    "with": (lambda: inductor_rmsnorm.patch(model), model)}
    else:
        compile_mode = None if mode == "default" else mode
        torch._dynamo.reset()
        # both compiled functions stay live: Dynamo keeps a cache entry for each backend
        variants = {"without": (lambda: None, torch.compile(model, mode=compile_mode)),
                    "with": (lambda: None, torch.compile(
                        model, options=inductor_rmsnorm.compile_options(mode=compile_mode)))}
    try:
        times = interleaved_milliseconds(workload, variants)
        outputs = {}
        for name, (enter, forward) in variants.items():
            enter()
            outputs[name] = workload.run(forward).clone()  # cloned: a CUDA-graph replay overwrites its output
    finally:
        inductor_rmsnorm.unpatch(model)
    if mode != "eager":
        report = inductor_rmsnorm.report()
        replaced = len(report.replaced)
        left_alone = sorted({c.reason for c in report.left_alone})
        rows_kept = [c.rows_kept for c in report.replaced if c.rows_kept]  # norms run on the rows a slice keeps
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    ratios = [a / b for a, b in zip(times["without"], times["with"])]
    low, median_ratio, high = statistics.quantiles(ratios, n=4)
    reference, result = outputs["without"], outputs["with"]
    # decode steps append to the cache, so two steps' logits differ by construction: prefill alone is compared
    error = None
    if workload.phase == "prefill":
        error = relative_error(result, reference)
    return {"phase": workload.phase, "batch": workload.batch, "tokens": workload.tokens, "mode": mode,
            "without_ms": without, "with_ms": with_, "speedup": median_ratio,
            "speedup_quartiles": [low, high], "replaced": replaced,
            "left_alone_reasons": left_alone, "rows_kept": rows_kept,
            "relative_error": error}


def workloads(model, phases: list[str], decode_batches: list[int]):
    for phase in phases:
        shapes = PREFILL_SHAPES if phase == "prefill" else [(batch, 1) for batch in decode_batches]
        for batch, tokens in shapes:
            yield Workload(model, phase, batch, tokens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--phases", nargs="+", choices=["prefill", "decode"], default=["prefill", "decode"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--decode-batches", type=int, nargs="+", default=list(DECODE_BATCHES))
    parser.add_argument("--json", default="bench_models.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("the model benchmark needs a CUDA GPU; skipped")
        return 0
    torch._dynamo.config.cache_size_limit = 64
    torch._inductor.config.fx_graph_cache = False  # a cached graph runs no pass, so report() would miss it
    environment = describe_environment()
    print(f"{environment['gpu']}, torch {environment['torch']}, transformers {transformers.__version__}, "
          f"{args.layers} layers, bf16")
    print("| model | workload | mode | without ms | with ms | speed-up (quartiles) | norms replaced | rel. error |")
    print("|---|---|---|---|---|---|---|---|")
    records = []
    for name in args.models:
        model = build_model(name, args.layers)
        for workload in workloads(model, args.phases, args.decode_batches):
            for mode in args.modes:
                record = {"model": name, **compare(model, workload, mode)}
                records.append(record)
                low, high = record["speedup_quartiles"]
                print(f"| {name} | {workload.label()} | {mode} | {record['without_ms']:.3f} | "
                      f"{record['with_ms']:.3f} | {record['speedup']:.2f}× ({low:.2f}-{high:.2f}) | "
                      f"{record['replaced']} | "
                      f"{'-' if record['relative_error'] is None else format(record['relative_error'], '.1e')} |",
                      flush=True)
                write_json(Path(args.json), environment, args.layers, records)  # each row: a cut-off run keeps it
        del model
        torch.cuda.empty_cache()
    slower = [r for r in records if r["speedup"] < 1]
    print(f"with inductor_rmsnorm slower at {len(slower)} of {len(records)} points")
    return 0


def write_json(path: Path, environment: dict, layers: int, records: list[dict]) -> None:
    path.write_text(json.dumps({"environment": environment, "layers": layers, "records": records}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
