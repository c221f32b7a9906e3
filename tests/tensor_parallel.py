"""A Llama-style decoder block split over ranks with torch.distributed tensor parallelism (Megatron style:
attention heads and MLP columns split, the output projections' partial sums all-reduced), for the test that the
pass matches the same RMSNorms on every rank and that the split, compiled model gives the unsplit model's output.

Each rank runs `run_rank` in its own process: gloo on CPU tensors, NCCL with one GPU a rank.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
import torch.nn.functional as F

import inductor_rmsnorm
from modules import LlamaRMSNorm


class Block(torch.nn.Module):
    """Norm, causal self-attention, residual add + norm, SwiGLU MLP, residual add + norm (the next layer's input
    norm). `heads` and `intermediate` are this rank's share when `world` > 1, whose partial outputs of o_proj and
    down_proj are summed over ranks."""

    def __init__(self, hidden: int, heads: int, intermediate: int, world: int = 1):
        super().__init__()
        self.heads, self.head_dim, self.world = heads, hidden // (heads * world), world
        width = heads * self.head_dim
        self.input_norm, self.post_attention_norm, self.next_norm = (LlamaRMSNorm(hidden) for _ in range(3))
        self.qkv = torch.nn.Linear(hidden, 3 * width, bias=False)
        self.o_proj = torch.nn.Linear(width, hidden, bias=False)
        self.gate_up = torch.nn.Linear(hidden, 2 * intermediate, bias=False)
        self.down_proj = torch.nn.Linear(intermediate, hidden, bias=False)

    def reduce(self, partial: torch.Tensor) -> torch.Tensor:
        return partial if self.world == 1 else collectives.all_reduce(partial, "sum", dist.group.WORLD)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(self.input_norm(x)).view(batch, tokens, 3, self.heads, self.head_dim).unbind(2)
        attention = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                   is_causal=True)
        s = x + self.reduce(self.o_proj(attention.transpose(1, 2).reshape(batch, tokens, -1)))
        gate, up = self.gate_up(self.post_attention_norm(s)).chunk(2, dim=-1)
        residual = s + self.reduce(self.down_proj(F.silu(gate) * up))
        return self.next_norm(residual), residual


def random_block(hidden: int, heads: int, intermediate: int, dtype: torch.dtype) -> Block:
    torch.manual_seed(0)
    block = Block(hidden, heads, intermediate).to(dtype).eval()
    with torch.no_grad():
        for norm in (block.input_norm, block.post_attention_norm, block.next_norm):
            norm.weight.uniform_(0.5, 1.5)
    return block


def shard(full: Block, rank: int, world: int) -> Block:
    """This rank's share of `full`: heads and MLP columns rank * share ... (rank + 1) * share, norms whole."""
    hidden = full.o_proj.out_features
    heads, intermediate = full.heads // world, full.down_proj.in_features // world
    part = Block(hidden, heads, intermediate, world).to(full.qkv.weight.device, full.qkv.weight.dtype).eval()
    width = heads * full.head_dim
    rows = slice(rank * width, (rank + 1) * width)
    columns = slice(rank * intermediate, (rank + 1) * intermediate)
    q, k, v = full.qkv.weight.chunk(3)
    gate, up = full.gate_up.weight.chunk(2)
    with torch.no_grad():
        part.qkv.weight.copy_(torch.cat([q[rows], k[rows], v[rows]]))
        part.o_proj.weight.copy_(full.o_proj.weight[:, rows])
        part.gate_up.weight.copy_(torch.cat([gate[columns], up[columns]]))
        part.down_proj.weight.copy_(full.down_proj.weight[:, columns])
        for name in ("input_norm", "post_attention_norm", "next_norm"):
            getattr(part, name).weight.copy_(getattr(full, name).weight)
    return part


def run_rank(rank: int, world: int, port: int, device_kind: str, dtype_name: str, results) -> None:
    """One rank: build the full block (same seed everywhere), compile this rank's shard with the pass, run it on
    the same input, and put (rank, replaced norms, largest output difference relative to the unsplit block's
    largest output) on `results`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device(f"cuda:{rank}") if device_kind == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        dtype = getattr(torch, dtype_name)
        full = random_block(hidden=256, heads=8, intermediate=512, dtype=dtype).to(device)
        part = shard(full, rank, world)
        torch.manual_seed(1)
        x = torch.randn(2, 16, 256, dtype=dtype).to(device)
        with torch.no_grad():
            expected = full(x)
            # each rank compiles the same graph: Inductor's caches would serve rank 1 without running the pass
            with torch._inductor.config.patch(fx_graph_cache=False), \
                    torch._functorch.config.patch(enable_autograd_cache=False):
                inductor_rmsnorm.report(clear=True)
                compiled = torch.compile(part, options=inductor_rmsnorm.compile_options())
                actual = compiled(x)
        replaced = sorted((c.search, c.residual, c.hidden_size, c.dtype, c.kernel)
                          for c in inductor_rmsnorm.report().replaced)
        error = max(float((a.float() - e.float()).abs().max() / e.float().abs().max())
                    for a, e in zip(actual, expected))
        results.put((rank, replaced, error))
    finally:
        dist.destroy_process_group()
