"""Run a replaced norm on only the rows its consumers keep.

A causal LM's prefill normalises every token with the final norm, then keeps the last one for the logits
(Hugging Face's `logits_to_keep=1`, which `generate` passes): `norm(h)[:, -1:]`. An RMSNorm is row by row, so
`norm(h)[:, -1:] == norm(h[:, -1:])`, bit for bit with these kernels (a row's result does not depend on its batch).
Inductor's own code writes only the kept rows but still reduces every one (its reduction is a buffer of all of
them); after the pass our op reads and writes the kept rows alone: Qwen3 8 x 2048 prefill normalises 8 rows,
not 16384.

The rewrite applies where every consumer of the norm's output reads it through the same slice along a row
dimension (not the hidden one), with constant bounds, and, for the fused residual add, nothing reads the sum.
"""

from __future__ import annotations

import math
import operator

import torch
from torch._guards import detect_fake_mode
from torch.fx.experimental.symbolic_shapes import statically_known_true

from . import ops  # noqa: F401 (defines the ops named below)

_aten = torch.ops.aten
_PLAIN = (torch.ops.inductor_rmsnorm.rms_norm.default, torch.ops.inductor_rmsnorm.rms_norm.eps_tensor)
_FUSED = (torch.ops.inductor_rmsnorm.fused_add_rms_norm.default,
          torch.ops.inductor_rmsnorm.fused_add_rms_norm.eps_tensor)


def _slice_arguments(node: torch.fx.Node) -> tuple:
    """(dim, start, end, step) of an `aten.slice.Tensor` node, defaults filled in."""
    names, defaults = ("dim", "start", "end", "step"), (0, None, None, 1)
    given = node.args[1:]
    return tuple(node.kwargs.get(name, given[i] if i < len(given) else default)
                 for i, (name, default) in enumerate(zip(names, defaults)))


def row_slice(norm_output: torch.fx.Node) -> tuple | None:
    """The (dim, start, end, step) through which every consumer reads `norm_output`, when it is one slice of
    rows with constant bounds that drops some; else None."""
    users = list(norm_output.users)
    if not users or any(user.op != "call_function" or user.target is not _aten.slice.Tensor for user in users):
        return None
    arguments = {_slice_arguments(user) for user in users}
    if len(arguments) != 1:
        return None
    (dim, start, end, step), = arguments
    if any(isinstance(a, torch.fx.Node) for a in (dim, start, end, step)):
        return None  # a bound computed in the graph may come after the norm: the inputs' slice could not use it
    full, kept = norm_output.meta["val"].shape, users[0].meta["val"].shape
    if dim % len(full) == len(full) - 1:
        return None
    # fewer rows for certain, without a guard on a symbolic size (the graph's guards are settled by now)
    if not any(statically_known_true(k != f) for k, f in zip(kept, full)):
        return None
    return dim, start, end, step


def narrow_to_kept_rows(graph: torch.fx.Graph) -> dict[frozenset[str], str]:
    """Rewrite each of our ops whose output is only read through a slice of rows to run on those rows. Returns,
    for each, the names of the slices that read it (now gone), and what it runs on: "8 of 16384 rows"."""
    narrowed = {}
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in _PLAIN + _FUSED:
            continue
        fused = node.target in _FUSED
        if fused:
            results = {user.args[1]: user for user in node.users}  # getitem(node, 0) and (node, 1)
            if 1 in results and results[1].users:
                continue  # the sum is needed in full
            norm_output = results.get(0)
        else:
            norm_output = node
        bounds = row_slice(norm_output) if norm_output is not None else None
        if bounds is None:
            continue
        full, kept = norm_output.meta["val"].shape, next(iter(norm_output.users)).meta["val"].shape
        narrowed[frozenset(user.name for user in norm_output.users)] = (
            f"{math.prod(kept[:-1])} of {math.prod(full[:-1])} rows")
        _rewrite(graph, node, norm_output, bounds, rows_arguments=2 if fused else 1)
    return narrowed


def _rewrite(graph: torch.fx.Graph, node: torch.fx.Node, norm_output: torch.fx.Node, bounds: tuple,
             rows_arguments: int) -> None:
    fake_mode = detect_fake_mode([node.args[0].meta["val"]])

    def add(target, args, kwargs=None):
        new = graph.call_function(target, args, kwargs)
        value = torch.fx.node.map_arg((args, kwargs or {}), lambda a: a.meta["val"])
        with fake_mode:
            new.meta["val"] = target(*value[0], **value[1])
        return new

    with graph.inserting_before(node):
        rows = [add(_aten.slice.Tensor, (row_input, *bounds)) for row_input in node.args[:rows_arguments]]
        narrowed = add(node.target, (*rows, *node.args[rows_arguments:]), node.kwargs)
        result = narrowed if norm_output is node else add(operator.getitem, (narrowed, 0))
    for user in list(norm_output.users):  # the slices: their rows are now the whole result
        user.replace_all_uses_with(result)
        graph.erase_node(user)
    for user in list(node.users):  # the fused op's getitems, none of them read now
        graph.erase_node(user)
    graph.erase_node(node)
