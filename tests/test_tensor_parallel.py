"""Tensor parallelism over two ranks (tests/tensor_parallel.py): each rank compiles its shard of a Llama-style
block with the pass; every rank must see the same RMSNorms replaced, and the split model must give the unsplit
model's output. On the CPU with gloo (in CI); on two GPUs with NCCL where there are two."""

from __future__ import annotations

import queue
import socket
import time

import pytest
import torch
import torch.distributed as dist

import tensor_parallel

WORLD = 2
DEADLINE_SECONDS = 600  # each rank compiles once; a rank stuck in a collective fails the test instead of hanging
# The block's three norms: the input norm on the layer input, and two residual adds + norm whose sums are used
# on (the MLP's residual, the next layer's), each one fused-add kernel call.
EXPECTED_REPLACED = {("hf_llama", "fused_add"): 2, ("hf_llama", "plain"): 1}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(device_kind: str, dtype_name: str) -> list[tuple]:
    """Spawn WORLD ranks of tensor_parallel.run_rank; their results, by rank. A rank that dies fails the test
    at once instead of leaving the others waiting; so does passing the deadline."""
    context = torch.multiprocessing.get_context("spawn")
    results = context.Queue()
    port = free_port()
    processes = [context.Process(target=tensor_parallel.run_rank,
                                 args=(rank, WORLD, port, device_kind, dtype_name, results)) for rank in range(WORLD)]
    for process in processes:
        process.start()
    outcomes = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while len(outcomes) < WORLD:
            assert time.monotonic() < deadline, f"{WORLD - len(outcomes)} rank(s) gave no result in {DEADLINE_SECONDS} s"
            try:
                outcomes.append(results.get(timeout=5))
            except queue.Empty:
                dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                assert not dead, f"a rank exited with code {dead[0]} (its traceback is above)"
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return sorted(outcomes)


def check(outcomes: list[tuple], tolerance: float) -> None:
    (_, replaced_0, error_0), (_, replaced_1, error_1) = outcomes
    assert replaced_0 == replaced_1, f"rank 0 replaced {replaced_0}, rank 1 {replaced_1}"
    kinds = {}
    for search, residual, hidden, _, kernel in replaced_0:
        assert (hidden, kernel) == (256, "warp")
        kinds[search, residual] = kinds.get((search, residual), 0) + 1
    assert kinds == EXPECTED_REPLACED
    assert max(error_0, error_1) < tolerance, f"split model differs from the unsplit one: {error_0}, {error_1}"


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_tensor_parallel_block_on_cpu_with_gloo():
    check(run_ranks("cpu", "float32"), tolerance=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensor_parallel_block_on_two_gpus_with_nccl():
    check(run_ranks("cuda", "bfloat16"), tolerance=2e-2)
