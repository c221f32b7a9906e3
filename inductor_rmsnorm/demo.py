"""`python -m inductor_rmsnorm demo`: the main job on a small Llama-style decoder.

Builds the decoder, compiles it with the pass, prints what was matched and with which kernel, checks the logits
against the eager model, and on a GPU times the compiled model against Inductor's default code. On a CPU the
op's CPU implementation (the reference math) stands in for the kernels, so the matching and the check still run;
timing needs CUDA and is skipped, saying so.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch
import torch.nn.functional as F

from . import inductor_pass, jit


class LlamaStyleRMSNorm(torch.nn.Module):
    """RMSNorm as Hugging Face's Llama writes it (the formulation the pass matches in Llama, Mistral, Qwen)."""

    def __init__(self, hidden: int, eps: float = 1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps

    def forward(self, x):
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(x.dtype)


class DecoderLayer(torch.nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.input_norm = LlamaStyleRMSNorm(hidden)
        self.qkv = torch.nn.Linear(hidden, 3 * hidden, bias=False)
        self.out = torch.nn.Linear(hidden, hidden, bias=False)
        self.post_attention_norm = LlamaStyleRMSNorm(hidden)
        self.gate_up = torch.nn.Linear(hidden, 4 * hidden, bias=False)
        self.down = torch.nn.Linear(2 * hidden, hidden, bias=False)

    def forward(self, h):
        batch, tokens, hidden = h.shape
        q, k, v = self.qkv(self.input_norm(h)).view(batch, tokens, 3, self.heads, -1).transpose(1, 3).unbind(2)
        attention = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.out(attention.transpose(1, 2).reshape(batch, tokens, hidden))
        gate, up = self.gate_up(self.post_attention_norm(h)).chunk(2, dim=-1)
        return h + self.down(F.silu(gate) * up)


class Decoder(torch.nn.Module):
    """Embedding, decoder layers (norm, attention, residual add, norm, MLP, residual add), final norm, head."""

    def __init__(self, vocab: int, hidden: int, layers: int, heads: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.layers = torch.nn.ModuleList(DecoderLayer(hidden, heads) for _ in range(layers))
        self.norm = LlamaStyleRMSNorm(hidden)
        self.head = torch.nn.Linear(hidden, vocab, bias=False)

    def forward(self, ids):
        h = self.embed(ids)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h))


@dataclasses.dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    batch: int
    tokens: int
    dtype: torch.dtype


# On a GPU, a Llama-8B-wide decoder in bf16 (prefill of 8 x 512 tokens); on a CPU, a small fp32 one that compiles
# in seconds.
GPU_SHAPE = Shape(vocab=32000, hidden=4096, layers=2, heads=32, batch=8, tokens=512, dtype=torch.bfloat16)
CPU_SHAPE = Shape(vocab=512, hidden=256, layers=2, heads=4, batch=2, tokens=16, dtype=torch.float32)


def build_decoder(shape: Shape, device: str) -> Decoder:
    torch.manual_seed(0)
    model = Decoder(shape.vocab, shape.hidden, shape.layers, shape.heads)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LlamaStyleRMSNorm):  # a neutral weight would hide a wrong formulation
                module.weight.normal_(1.0, 0.2)
    return model.to(device=device, dtype=shape.dtype).eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).abs().max() / expected.float().abs().max())


def milliseconds_per_call(fn, calls: int = 20) -> float:
    """Median wall time of `calls` synchronised calls after a warm-up (a GPU runs them back to back)."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(calls):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _step(number: int, text: str) -> None:
    print(f"[{number}/5] {text}", flush=True)


def run(shape: Shape | None = None) -> int:
    """The demo; returns the process exit code (1 when the compiled logits do not match eager)."""
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    shape = shape or (GPU_SHAPE if on_gpu else CPU_SHAPE)
    dtype_name = str(shape.dtype).removeprefix("torch.")
    where = torch.cuda.get_device_name() if on_gpu else "CPU (no CUDA GPU)"
    _step(1, f"{where}, torch {torch.__version__}; decoder: {shape.layers} layers, hidden {shape.hidden}, "
             f"{dtype_name}, input {shape.batch} x {shape.tokens} tokens")
    model = build_decoder(shape, device)
    ids = torch.randint(0, shape.vocab, (shape.batch, shape.tokens), device=device)

    if on_gpu:
        arch = jit.arch_for_device(torch.cuda.current_device())
        keys = [jit.KernelKey.create(shape.hidden, shape.dtype, shape.dtype, "llama_single_rounding", fused_add)
                for fused_add in (False, True)]
        _step(2, f"building the kernels the pass will call ({len(keys)} instances for {arch}; cached after)")
        start = time.perf_counter()
        for key, error in jit.build_many(keys, arch, jobs=len(keys)):
            if error is not None:
                raise error
        print(f"      ready in {time.perf_counter() - start:.1f} s", flush=True)
    else:
        _step(2, "no CUDA GPU: kernel builds skipped; the op's CPU implementation (reference math) stands in")

    _step(3, "compiling with the pass (torch.compile, Inductor)")
    start = time.perf_counter()
    inductor_pass.report(clear=True)
    torch._dynamo.reset()
    with torch.no_grad():
        compiled_with = torch.compile(model, options=inductor_pass.compile_options())
        logits = compiled_with(ids)
    print(f"      compiled in {time.perf_counter() - start:.1f} s", flush=True)
    print(inductor_pass.report())

    _step(4, "checking the compiled logits against the eager model")
    with torch.no_grad():
        expected = model(ids)
    error = relative_error(logits, expected)
    tolerance = 2e-2 if shape.dtype != torch.float32 else 1e-4
    matched = error <= tolerance
    print(f"      max |compiled - eager| / max |eager| = {error:.2e} (tolerance {tolerance:.0e}): "
          + ("match" if matched else "MISMATCH"))

    if on_gpu:
        _step(5, "timing against Inductor's default code (the same compile without the pass)")
        with torch.no_grad():
            compiled_without = torch.compile(model)
            compiled_without(ids)
            with_pass = milliseconds_per_call(lambda: compiled_with(ids))
            without_pass = milliseconds_per_call(lambda: compiled_without(ids))
        print(f"      without the pass {without_pass:.3f} ms, with the pass {with_pass:.3f} ms per forward: "
              f"{without_pass / with_pass:.2f}x")
    else:
        _step(5, "timing needs a CUDA GPU: skipped")
    return 0 if matched else 1
