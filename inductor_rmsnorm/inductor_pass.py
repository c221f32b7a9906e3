"""The Inductor pass: replace RMSNorm subgraphs in the post-grad graph with `torch.ops.inductor_rmsnorm.rms_norm`.

Turn it on with `enable()` / `disable()`, the `enabled()` context manager, or per compile with
`torch.compile(model, options=compile_options())`. It runs as Inductor's `post_grad_custom_post_pass`, after a
pass the user had installed there, as a `CustomGraphPass` whose `uuid()` covers this package's pass sources and
its options, so the FX graph cache stays on and never serves a graph built with other options.

What is replaced, and what is left to Inductor (the reason is in `report()` and the `inductor_rmsnorm` log):
- a size or dtype mix with no kernel: left alone with `on_unsupported="fallback"` (the default), left alone
  with one warning per size with `"warn"`, compilation stops with `"error"`;
- a norm whose intermediate is used elsewhere (training: `rsqrt` saved for backward): the pattern does not
  match, and the graph stays as it was;
- with `policy="auto"` (the default), a norm Inductor would fuse with its neighbours, where our kernel alone
  would make the program slower: one whose input comes from a pointwise op whose result nothing else needs
  (other than the residual add, which the fused_add_rms_norm op takes in) or from an embedding lookup (which
  Inductor gathers again inside each kernel that reads it), or whose output feeds a pointwise op (rotary
  embedding after a q/k norm); and on a GPU, a norm of fewer than `LAUNCH_BOUND_ROWS` rows (a static count) in a
  compile without CUDA graphs (`mode="reduce-overhead"` has them), where the step waits on the host's launches
  and the op's call gains nothing over the Triton launch it replaces. `policy="always"` replaces these
  too (do that if you capture CUDA graphs yourself); the op then reads what the graph holds, on torch 2.13 a
  pointwise producer's output rounded to its dtype, as eager does, where Inductor's fused kernel keeps it in fp32.

A replaced norm whose output is only read through a slice of rows (the last token's, for the logits) runs on
those rows alone (`narrowing.py`); `report()` says so ("on 8 of 16384 rows").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
from pathlib import Path

import torch
from torch._inductor import config as inductor_config
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
from torch._inductor.pattern_matcher import Match, PatternMatcherPass

from . import dispatch, lowering, narrowing, patterns  # noqa: F401 (lowering: registers the ops' Inductor lowerings)

logger = logging.getLogger("inductor_rmsnorm")

ON_UNSUPPORTED = ("fallback", "warn", "error")
POLICIES = ("auto", "always")

_aten = torch.ops.aten
# Ops that only re-view their input: the pass looks through them to find a norm's real producer and consumers.
_VIEWS = {
    _aten.view.default, _aten.reshape.default, _aten._unsafe_view.default, _aten.unsqueeze.default,
    _aten.squeeze.dim, _aten.permute.default, _aten.transpose.int, _aten.slice.Tensor, _aten.select.int,
    _aten.expand.default, _aten.clone.default,
}


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One RMSNorm subgraph the pass saw."""

    node: str  # the subgraph's last node in the post-grad graph
    search: str  # which norm matched (see patterns.SEARCHES)
    residual: str  # how it met a residual add: "plain", "fused_add" or "fused_add_norm_only"
    hidden_size: int | None
    dtype: str
    weight_dtype: str | None
    kernel: str | None  # "warp" / "cta" / "wide" when replaced
    reason: str | None  # why it was left alone; None when replaced
    rows_kept: str | None = None  # "8 of 16384 rows" when run on the rows a slice keeps (narrowing.py)

    @property
    def replaced(self) -> bool:
        return self.reason is None


class Report(list):
    """The candidates of the compiles since the last `report(clear=True)`."""

    @property
    def replaced(self) -> list[Candidate]:
        return [c for c in self if c.replaced]

    @property
    def left_alone(self) -> list[Candidate]:
        return [c for c in self if not c.replaced]

    def __str__(self) -> str:
        lines = [f"inductor_rmsnorm: {len(self.replaced)} replaced, {len(self.left_alone)} left alone"]
        for c in self:
            added = "" if c.residual == "plain" else " after a residual add"
            what = f"{c.search}{added} hidden={c.hidden_size} {c.dtype}"
            what += f" weight {c.weight_dtype}" if c.weight_dtype else ""
            rows = f", on the {c.rows_kept} a slice keeps" if c.rows_kept else ""
            replaced = f"replaced ({c.kernel} kernel{rows})"
            lines.append(f"  {c.node}: {what}: " + (replaced if c.replaced else f"left alone: {c.reason}"))
        return "\n".join(lines)


_report = Report()
_warned_sizes: set[tuple] = set()


def report(clear: bool = False) -> Report:
    """What the pass did in the compiles since the last clear: every replaced subgraph and every candidate left
    alone, with the reason. A compile served from Inductor's FX graph cache runs no pass and adds nothing."""
    result = Report(_report)
    if clear:
        _report.clear()
    return result


def _producer(node: torch.fx.Node) -> tuple[torch.fx.Node, list[torch.fx.Node]]:
    """The op that computes `node`, looking through views, and the views on the way."""
    views = []
    while node.op == "call_function" and node.target in _VIEWS:
        views.append(node)
        node = node.args[0]
    return node, views


def _consumers(node: torch.fx.Node) -> list[torch.fx.Node]:
    found = []
    for user in node.users:
        found.extend(_consumers(user) if user.op == "call_function" and user.target in _VIEWS else [user])
    return found


def _fuses_with_inductor(node: torch.fx.Node) -> bool:
    """Whether Inductor would put `node` in the same kernel as a norm beside it (pointwise ops, embeddings)."""
    target = node.target
    return node.op == "call_function" and isinstance(target, torch._ops.OpOverload) and (
        torch.Tag.pointwise in target.tags or target is _aten.embedding.default
    )


def _is_scalar(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    return isinstance(value, torch.Tensor) and value.numel() == 1


def _gathers_embeddings(node: torch.fx.Node) -> bool:
    """Whether `node` is an embedding lookup, or pointwise ops on one and scalars (Gemma scales its embeddings)."""
    producer, _ = _producer(node)
    if producer.op != "call_function" or not _fuses_with_inductor(producer):
        return False
    if producer.target is _aten.embedding.default:
        return True
    tensors = [a for a in producer.args if isinstance(a, torch.fx.Node) and not _is_scalar(a)]
    return bool(tensors) and all(_gathers_embeddings(t) for t in tensors)


def _cost_reason(inputs: list[torch.fx.Node], output: torch.fx.Node, matched: set[torch.fx.Node]) -> str | None:
    for node in inputs:
        producer, views = _producer(node)
        # A pointwise producer whose result nothing else needs is computed inside Inductor's norm kernel, never
        # written; one whose result is needed elsewhere (a residual sum) is written either way. Embeddings are
        # never written: Inductor gathers the rows again in each kernel that reads them, and the op would need
        # them written, then read (Llama 3 decode: one more kernel, and two copies of the embeddings).
        chain = (producer, *views)
        private = all(user in matched or user in views for link in chain for user in link.users)
        if _fuses_with_inductor(producer) and private:
            return f"its input comes from {producer.target}, which Inductor fuses into its own norm kernel"
        if _gathers_embeddings(node):
            return "its input is an embedding lookup, which Inductor gathers inside its own norm kernel"
    fused_consumers = sorted({str(c.target) for c in _consumers(output) if _fuses_with_inductor(c)})
    if fused_consumers:
        return f"its output feeds {', '.join(fused_consumers)}, which Inductor fuses with the norm"
    return None


# Measured on the H200 (docs/RUNS.md, run 12), compiled without CUDA graphs: Qwen3 and Llama 3 decode at
# batch 1 read 0.95x with these norms replaced (quartiles 0.94-0.98 and 0.90-0.98; the same graph on both sides
# read 0.97x and 1.05x, so this is at the edge of the noise), at batch 32 1.01x (1.00-1.02).
LAUNCH_BOUND_ROWS = 32


def _launch_bound_reason(x_value: torch.Tensor) -> str | None:
    if x_value.device.type != "cuda" or inductor_config.triton.cudagraphs:
        return None
    rows = math.prod(x_value.shape[:-1])
    if not isinstance(rows, int) or rows >= LAUNCH_BOUND_ROWS:  # symbolic (dynamic) rows: replaced
        return None
    return (f"{rows} rows without CUDA graphs: launch-bound, where the op's call gains nothing over Inductor's "
            "own kernel")


@dataclasses.dataclass(frozen=True)
class _Options:
    on_unsupported: str
    policy: str


class RMSNormPass(CustomGraphPass):
    """The post-grad pass. `previous` (a pass the user had installed) runs first."""

    _patterns: PatternMatcherPass | None = None  # registered once per process, on first use

    def __init__(self, on_unsupported: str = "fallback", policy: str = "auto", previous=None):
        if on_unsupported not in ON_UNSUPPORTED:
            raise ValueError(f"on_unsupported={on_unsupported!r} is not one of {ON_UNSUPPORTED}")
        if policy not in POLICIES:
            raise ValueError(f"policy={policy!r} is not one of {POLICIES}")
        self.options = _Options(on_unsupported, policy)
        self.previous = previous
        self._declined: set[torch.fx.Node] = set()
        # this graph's replaced norms, by the names of the nodes that read their output: the report's entry of each
        self._replaced_by_readers: dict[frozenset[str], int] = {}

    def __call__(self, graph: torch.fx.Graph) -> None:
        if self.previous is not None:
            self.previous(graph)
        if RMSNormPass._patterns is None:
            RMSNormPass._patterns = PatternMatcherPass(pass_name="inductor_rmsnorm")
            patterns.register(RMSNormPass._patterns, _decide)
        self._declined = set()
        self._replaced_by_readers = {}
        global _active
        _active = self
        try:
            RMSNormPass._patterns.apply(graph)
        finally:
            _active = None
        for readers, rows in narrowing.narrow_to_kept_rows(graph).items():
            # A replacement keeps the readers of the norm it replaces; an op the graph had before has no entry.
            entry = self._replaced_by_readers.get(readers)
            if entry is not None:
                _report[entry] = dataclasses.replace(_report[entry], rows_kept=rows)
        self._report_unmatched(graph)

    def uuid(self) -> bytes | None:
        previous = self.previous
        if previous is not None and not isinstance(previous, CustomGraphPass):
            return None  # a plain function cannot be hashed: Inductor then bypasses its cache, as it would anyway
        here = Path(__file__).parent
        sources = tuple(str(here / name) for name in (
            "inductor_pass.py", "patterns.py", "narrowing.py", "dispatch.py", "ops.py", "lowering.py"))
        extra = f"{self.options}|{None if previous is None else previous.uuid()}"
        return get_hash_for_files(sources, extra)

    # ------------------------------------------------------------------------------------------ decisions
    def decide(self, match: Match, search: patterns.Search) -> bool:
        """Accept (replace) or decline one match, recording why."""
        x, residual, weight = match.kwargs["x"], match.kwargs.get("residual"), match.kwargs.get("weight")
        output = match.output_nodes()[0]  # the norm's output (a fused-add match also returns the sum)
        if output in self._declined:  # part of a larger match (weighted, or after an add) declined a moment ago
            self._declined.update(match.nodes)
            return False
        x_value = x.meta["val"]
        weight_value = None if weight is None else weight.meta["val"]
        hidden = x_value.shape[-1]
        reason = self._unsupported_reason(hidden, x_value, weight_value)
        if reason is None and residual is not None:
            reason = self._residual_reason(x_value, residual.meta["val"])
        # Before torch 2.13 extra_check sees the match re-traced with the real eps, in which a literal eps is part
        # of the pattern and so absent from kwargs: only an eps computed in the graph (a Node) is there.
        eps = match.kwargs.get("eps")
        if reason is None and isinstance(eps, torch.fx.Node):
            reason = self._eps_reason(eps.meta.get("val"))
        candidate = functools.partial(
            Candidate, output.name, search.name, search.residual, hidden if isinstance(hidden, int) else None,
            _dtype_name(x_value),
            None if weight_value is None else _dtype_name(weight_value),
        )
        if reason is not None:
            self._on_unsupported(output, reason, candidate(None, reason))
        elif self.options.policy == "auto":
            reason = _cost_reason([x] if residual is None else [x, residual], output, set(match.nodes))
            reason = reason or _launch_bound_reason(x_value)
        if reason is not None:
            self._declined.update(match.nodes)
            self._record(candidate(None, reason))
            return False
        self._replaced_by_readers[frozenset(user.name for user in output.users)] = len(_report)
        kernel = dispatch.kernel_for(hidden, x_value.dtype, fused_add=search.residual != "plain")
        self._record(candidate(kernel, None))
        return True

    @staticmethod
    def _unsupported_reason(hidden, x_value, weight_value) -> str | None:
        if not isinstance(hidden, int):
            return f"the hidden size is symbolic ({hidden}); kernels are built per size"
        reason = dispatch.unsupported_reason(hidden, x_value.dtype, None if weight_value is None else weight_value.dtype)
        if reason is None and weight_value is not None and tuple(weight_value.shape) != (hidden,):
            reason = f"the weight has shape {list(weight_value.shape)}, not [{hidden}]"
        if reason is None and hidden > 1 and x_value.stride(-1) != 1:
            reason = f"the input's last dimension is not contiguous (stride {x_value.stride(-1)})"
        if reason is None and x_value.device.type == "cuda":
            reason = dispatch.gpu_reason(x_value.device.index)
        return reason

    @staticmethod
    def _eps_reason(eps_value) -> str | None:
        """torch.compile(dynamic=True) passes eps as a 0-d tensor: the op's eps_tensor overloads take that."""
        if isinstance(eps_value, torch.Tensor) and eps_value.dim() == 0 and eps_value.dtype.is_floating_point:
            return None
        return f"eps is computed in the graph as {eps_value!r}, not a number or a 0-d float tensor"

    @staticmethod
    def _residual_reason(x_value, residual_value) -> str | None:
        if residual_value.dtype != x_value.dtype or residual_value.shape != x_value.shape:
            return (f"the residual ({residual_value.dtype}{list(residual_value.shape)}) does not match the input "
                    f"({x_value.dtype}{list(x_value.shape)})")
        if x_value.shape[-1] > 1 and residual_value.stride(-1) != 1:
            return f"the residual's last dimension is not contiguous (stride {residual_value.stride(-1)})"
        return None

    def _on_unsupported(self, output: torch.fx.Node, reason: str, candidate: Candidate) -> None:
        mode = self.options.on_unsupported
        if mode == "error":
            weight = f"{candidate.weight_dtype} weight" if candidate.weight_dtype else "no weight"
            raise RuntimeError(
                f"inductor_rmsnorm: the RMSNorm at node {output.name} (hidden size {candidate.hidden_size}, "
                f"{candidate.dtype} input, {weight}) cannot be replaced: {reason} "
                "(on_unsupported='error'; 'fallback' leaves it to Inductor)"
            )
        size = (candidate.hidden_size, candidate.dtype, candidate.weight_dtype)
        if mode == "warn" and size not in _warned_sizes:
            _warned_sizes.add(size)
            logger.warning("inductor_rmsnorm: the RMSNorm at node %s is left to Inductor: %s", output.name, reason)

    def _record(self, candidate: Candidate) -> None:
        _report.append(candidate)
        if candidate.replaced:
            logger.info("replaced %s (%s, hidden %s, %s) with the %s kernel", candidate.node, candidate.search,
                        candidate.hidden_size, candidate.dtype, candidate.kernel)
        else:
            logger.info("left %s (%s, hidden %s, %s) alone: %s", candidate.node, candidate.search,
                        candidate.hidden_size, candidate.dtype, candidate.reason)

    def _report_unmatched(self, graph: torch.fx.Graph) -> None:
        """Norms no pattern matched because an intermediate has users outside them (saved for backward)."""
        for node in graph.nodes:
            if node.target is not _aten.rsqrt.default or node in self._declined or len(node.users) < 2:
                continue
            variance = node.args[0]
            if not (variance.op == "call_function" and variance.target in (_aten.add.Tensor, _aten.add.Scalar)
                    and getattr(variance.args[0], "target", None) is _aten.mean.dim):
                continue  # an rsqrt that is not an RMSNorm's
            self._record(Candidate(
                node.name, "unmatched", "plain", None, _dtype_name(node.meta["val"]), None, None,
                "an intermediate (rsqrt) is used outside the norm, e.g. saved for backward",
            ))


def _dtype_name(value: torch.Tensor) -> str:
    return str(value.dtype).removeprefix("torch.")


# The patterns are registered once per process with one check function, while each pass carries its own
# options: the pass that is applying them is the one that decides. (Inductor compiles a graph on one thread.)
_active: RMSNormPass | None = None


def _decide(match: Match, search: patterns.Search) -> bool:
    return _active.decide(match, search)


# ------------------------------------------------------------------------------------------------ installation
def _without_ours(installed):
    """The user's own pass beneath ours, if ours is installed."""
    return installed.previous if isinstance(installed, RMSNormPass) else installed


def enable(*, on_unsupported: str = "fallback", policy: str = "auto") -> None:
    """Install the pass for every later `torch.compile` (keeping, and running first, a pass already installed)."""
    installed = inductor_config.post_grad_custom_post_pass
    inductor_config.post_grad_custom_post_pass = RMSNormPass(on_unsupported, policy, _without_ours(installed))


def disable() -> None:
    """Remove the pass, putting back the pass it had found installed."""
    inductor_config.post_grad_custom_post_pass = _without_ours(inductor_config.post_grad_custom_post_pass)


@contextlib.contextmanager
def enabled(*, on_unsupported: str = "fallback", policy: str = "auto"):
    """`with enabled(): ...` compiles inside with the pass, and restores what was installed before."""
    saved = inductor_config.post_grad_custom_post_pass
    enable(on_unsupported=on_unsupported, policy=policy)
    try:
        yield
    finally:
        inductor_config.post_grad_custom_post_pass = saved


def compile_options(*, on_unsupported: str = "fallback", policy: str = "auto", mode: str | None = None) -> dict:
    """Options for `torch.compile(model, options=...)` that run the pass in that compile only.

    `torch.compile` takes `mode` or `options`, not both: pass the mode here instead (e.g. "reduce-overhead") and
    its options are included."""
    installed = inductor_config.post_grad_custom_post_pass
    options = dict(torch._inductor.list_mode_options(mode)) if mode is not None else {}
    options["post_grad_custom_post_pass"] = RMSNormPass(on_unsupported, policy, _without_ours(installed))
    return options
