"""The benchmark's replay plan (scripts/bench_kernels.py), on any machine: how many calls a CUDA-graph replay
holds and how many input buffers they rotate through."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench_kernels  # noqa: E402

GiB = 2**30
COPY_BANDWIDTH = 3.0e12  # bytes/s, about an H100's
LAUNCH_FLOOR = 1.0e-6  # s


@pytest.fixture(autouse=True)
def h100_l2(monkeypatch):
    monkeypatch.setattr(bench_kernels, "l2_cache_bytes", lambda: 50 * 10**6)


def test_small_inputs_take_as_many_buffers_as_a_replay_holds_calls():
    x_bytes = 16 * 4096 * 2  # 16 rows of 4096 bf16
    calls, buffers = bench_kernels.plan_replay(x_bytes, 2 * x_bytes, COPY_BANDWIDTH, LAUNCH_FLOOR)
    assert (calls, buffers) == (200, 200)  # 25.6 MB: less than the L2, but launch-bound anyway


def test_mid_sized_inputs_rotate_through_at_least_128_mib():
    x_bytes = 8192 * 4096 * 2  # 64 MiB
    calls, buffers = bench_kernels.plan_replay(x_bytes, 2 * x_bytes, COPY_BANDWIDTH, LAUNCH_FLOOR)
    assert buffers == 2
    assert calls == 23  # 1 ms over a 44.7 µs copy of 128 MiB


@pytest.mark.parametrize("x_gib, buffers", [(1, 2), (4, 2), (8, 1), (16, 1)])
def test_buffers_together_stay_within_8_gib_down_to_one(x_gib, buffers):
    calls, planned = bench_kernels.plan_replay(x_gib * GiB, 2 * x_gib * GiB, COPY_BANDWIDTH, LAUNCH_FLOOR)
    assert planned == buffers
    assert calls == buffers  # a call takes milliseconds: one per buffer
