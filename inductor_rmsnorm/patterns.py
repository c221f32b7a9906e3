"""The RMSNorm subgraphs the Inductor pass replaces, and their replacement.

Each formulation is written as its library writes it (the search function); tracing it through Inductor's own
decompositions gives the pattern, so the patterns follow the torch version. One table, `SEARCHES`, lists them; a
pattern is registered for every dtype family whose graph differs (float32 inputs lose the casts; a float32 weight
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


def _llama_formulation() -> str:
    # Inductor keeps h in float32 unless asked to emulate eager's casts: the replacement does what Inductor does.
    return "llama" if inductor_config.emulate_precision_casts else "llama_single_rounding"


@dataclasses.dataclass(frozen=True)
class Search:
    name: str
    function: Callable
    has_weight: bool
    formulation: Callable[[], str]  # the op's formulation, decided when a match is replaced


# Weighted searches come first: the pass visits a weighted norm's last node before the unweighted part inside it.
SEARCHES = (
    Search("hf_llama", hf_llama, True, _llama_formulation),
    Search("torch", torch_rms_norm, True, lambda: "torch"),
    Search("gemma", gemma, True, lambda: "gemma"),
    Search("hf_no_weight", hf_no_weight, False, lambda: "torch"),
    Search("torch_no_weight", torch_rms_norm_no_weight, False, lambda: "torch"),
)

# (input dtype, weight dtype) to trace each search with: one per distinct graph.
_DTYPE_FAMILIES = ((torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32), (torch.float32, torch.float32))


def _replacement(search: Search) -> Callable:
    if search.has_weight:
        def replace(x, weight, eps):
            return torch.ops.inductor_rmsnorm.rms_norm(x, weight, eps, search.formulation())
    else:
        def replace(x, eps):
            return torch.ops.inductor_rmsnorm.rms_norm(x, None, eps, search.formulation())
    return replace


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
        families = _DTYPE_FAMILIES if search.has_weight else dict.fromkeys(x for x, _ in _DTYPE_FAMILIES)
        for family in families:
            x_dtype, weight_dtype = family if search.has_weight else (family, None)
            example = [torch.empty(8, 256, dtype=x_dtype)]
            if search.has_weight:
                example.append(torch.empty(256, dtype=weight_dtype))
            register_replacement(
                search.function, _replacement(search), example, _trace, pass_dict,
                extra_check=functools.partial(decide, search=search),
                scalar_workaround={"eps": _EXAMPLE_EPS}, skip_duplicates=True,
            )
