"""The RMSNorm subgraphs the Inductor pass replaces, and their replacement.

Each formulation is written as its library writes it (the search function); tracing it through Inductor's own
decompositions gives the pattern, so the patterns follow the torch version. One table, `SEARCHES` (the norms of
`_NORMS`, each plain and behind a residual add), lists them; a pattern is registered for every dtype family whose
graph differs (float32 inputs lose the casts; a float32 weight
beside 16-bit activations loses the weight's cast). Any eps matches (`scalar_workaround`); any rank, as the
search functions reduce over the last dimension the way the originals do.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch._inductor import config as inductor_config
from torch._inductor.pattern_matcher import Match, PatternMatcherPass, fwd_only, register_replacement

from . import ops  # noqa: F401  (registers torch.ops.inductor_rmsnorm, which the replacements call)

# An eps that float32 represents exactly: F.rms_norm's decomposition rounds eps to float32, and the scalar
# workaround finds eps in the traced pattern by value.
_EXAMPLE_EPS = 2.0**-10


def hf_llama(x, weight, eps):
    """transformers' LlamaRMSNorm (Mistral, Qwen, Qwen3's q/k norms...)."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def hf_no_weight(x, eps):
    """The Hugging Face formulation without a weight."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return h.to(x.dtype)


def torch_rms_norm(x, weight, eps):
    """F.rms_norm / nn.RMSNorm as Inductor decomposes them."""
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def torch_rms_norm_no_weight(x, eps):
    return F.rms_norm(x, (x.shape[-1],), None, eps)


def gemma(x, weight, eps):
    """transformers' GemmaRMSNorm (Gemma 2 and 3): the weight is an offset from 1."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (h * (1.0 + weight.float())).type_as(x)


def olmo2(x, weight, eps):
    """transformers' Olmo2RMSNorm (OLMo 2 and 3): the weight multiplies in float32, one rounding at the end."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * h).to(x.dtype)


def _llama_formulation() -> str:
    # Inductor keeps h in float32 unless asked to emulate eager's casts: the replacement does what Inductor does.
    return "llama" if inductor_config.emulate_precision_casts else "llama_single_rounding"


# How a norm meets a decoder layer's residual add, `s = x + residual`:
#   "fused_add": s is used again (the next residual): (norm(s), s) become one fused_add_rms_norm;
#   "fused_add_norm_only": s feeds only the norm (the last layer's sum before the final norm);
#   "plain": no add. Fused forms are registered first: the plain pattern sits inside them.
RESIDUAL_FORMS = ("fused_add", "fused_add_norm_only", "plain")


@dataclasses.dataclass(frozen=True)
class Search:
    name: str
    norm: Callable  # the formulation as its library writes it: norm(x, weight, eps) or norm(x, eps)
    has_weight: bool
    formulation: Callable[[], str]  # the op's formulation, decided when a match is replaced
    residual: str = "plain"

    @property
    def argnames(self) -> tuple[str, ...]:
        return ("x",) + (("residual",) if self.residual != "plain" else ()) + (
            ("weight",) if self.has_weight else ()) + ("eps",)

    def function(self) -> Callable:
        """The search function: `norm` itself, or the residual add and `norm` (register_replacement reads the
        argument names, so each form has its own signature)."""
        norm, keep_sum = self.norm, self.residual == "fused_add"
        if self.residual == "plain":
            return norm
        if self.has_weight:
            def fused(x, residual, weight, eps):
                s = x + residual
                return (norm(s, weight, eps), s) if keep_sum else norm(s, weight, eps)
        else:
            def fused(x, residual, eps):
                s = x + residual
                return (norm(s, eps), s) if keep_sum else norm(s, eps)
        return fused

    def replacement(self) -> Callable:
        def replace(*args):
            named = dict(zip(self.argnames, args))
            weight, eps, formulation = named.get("weight"), named["eps"], self.formulation()
            overload = "eps_tensor" if isinstance(eps, torch.Tensor) else "default"  # dynamic=True: eps is an input
            if self.residual == "plain":
                return getattr(torch.ops.inductor_rmsnorm.rms_norm, overload)(named["x"], weight, eps, formulation)
            y, s = getattr(torch.ops.inductor_rmsnorm.fused_add_rms_norm, overload)(
                named["x"], named["residual"], weight, eps, formulation
            )
            return (y, s) if self.residual == "fused_add" else y
        return replace


# (name, norm, has weight, formulation). Weighted norms come first: the pass visits a weighted norm's last node
# before the unweighted part inside it.
_NORMS = (
    ("hf_llama", hf_llama, True, _llama_formulation),
    ("torch", torch_rms_norm, True, lambda: "torch"),
    ("gemma", gemma, True, lambda: "gemma"),
    ("olmo2", olmo2, True, lambda: "torch"),  # F.rms_norm's math: fp32 throughout, one rounding
    ("hf_no_weight", hf_no_weight, False, lambda: "torch"),
    ("torch_no_weight", torch_rms_norm_no_weight, False, lambda: "torch"),
)
SEARCHES = tuple(Search(*norm, residual=form) for form in RESIDUAL_FORMS for norm in _NORMS)

# (input dtype, weight dtype) to trace each search with: one per distinct graph.
_DTYPE_FAMILIES = ((torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32), (torch.float32, torch.float32))


def _trace(function: Callable, example_inputs, **options) -> torch.fx.GraphModule:
    """Inductor's forward tracing, with in-place ops made functional: F.rms_norm's decomposition adds eps in
    place (`add_`), while the post-grad graph the patterns meet has been functionalised (`add`)."""
    graph_module = fwd_only(function, example_inputs, **options)
    for node in graph_module.graph.nodes:
        target = node.target
        if isinstance(target, torch._ops.OpOverload) and target._schema.is_mutable:
            packet = getattr(torch.ops.aten, target._schema.name.split("::")[-1].rstrip("_"))
            node.target = getattr(packet, target._overloadname)
    graph_module.recompile()
    return graph_module


def register(pass_dict: PatternMatcherPass, decide: Callable[[Match, Search], bool]) -> None:
    """Register every search x dtype family into `pass_dict`; `decide(match, search)` accepts or declines each."""
    with warnings.catch_warnings():
        # tracing F.rms_norm with a float32 weight beside bf16 activations warns that eager can't fuse it
        warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
        _register_all(pass_dict, decide)


def _register_all(pass_dict: PatternMatcherPass, decide: Callable[[Match, Search], bool]) -> None:
    for search in SEARCHES:
        families = _DTYPE_FAMILIES if search.has_weight else dict.fromkeys((x, None) for x, _ in _DTYPE_FAMILIES)
        for x_dtype, weight_dtype in families:
            examples = {"x": torch.empty(8, 256, dtype=x_dtype), "residual": torch.empty(8, 256, dtype=x_dtype),
                        "weight": torch.empty(256, dtype=weight_dtype), "eps": _EXAMPLE_EPS}
            register_replacement(
                search.function(), search.replacement(), [examples[name] for name in search.argnames[:-1]],
                _trace, pass_dict, extra_check=functools.partial(decide, search=search),
                scalar_workaround={"eps": _EXAMPLE_EPS}, skip_duplicates=True,
            )
