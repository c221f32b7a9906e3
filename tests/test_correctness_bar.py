"""The correctness bar the CUDA tests apply (`modules.check_against_eager`), checked on the CPU: it must pass the
eager module's own output, allow the rare flipped first rounding of the Llama formulation, and fail real errors."""

import pytest
import torch

from inductor_rmsnorm.reference import normalized_with
from modules import MISSES_DIR_ENV, _step_one_ulp, check_against_eager, eager_module, random_weight

EPS = 1e-6


@pytest.fixture(autouse=True)
def no_saved_misses(monkeypatch):
    """These tests miss the bar on purpose: they save nothing where a GPU run collects its misses."""
    monkeypatch.delenv(MISSES_DIR_ENV, raising=False)


def llama_case(tokens: int, hidden: int):
    """fp16 activations with a float32 weight: a flipped h is a whole fp16 ulp of h in a float32 output."""
    weight = random_weight("llama", hidden, torch.float32, "cpu")
    x = torch.randn(tokens, hidden, dtype=torch.float16) * 2
    with torch.no_grad():
        expected = eager_module("llama", hidden, weight, EPS)(x)
    h = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS)
    flipped = weight * _step_one_ulp(h.to(torch.float16), 1)  # each element's h rounded the other way
    return x, weight, expected, flipped


def check(actual, x, weight, expected):
    return check_against_eager(actual, expected, x, weight, EPS, "llama")


def test_the_eager_output_passes():
    x, weight, expected, _ = llama_case(7, 64)
    assert check(expected.clone(), x, weight, expected) is None


def test_one_flipped_rounding_passes_in_a_tiny_tensor_and_two_do_not():
    x, weight, expected, flipped = llama_case(1, 96)  # one flip is 1.04 %: one element is always allowed
    actual = expected.clone()
    actual[0, 10] = flipped[0, 10]
    assert check(actual, x, weight, expected) is None
    actual[0, 20] = flipped[0, 20]
    assert check(actual, x, weight, expected).startswith(
        "2.08% of elements differ (2 from a flipped first rounding; bar 1 %); ")


def test_flips_count_toward_the_one_percent_bar_in_a_large_tensor():
    x, weight, expected, flipped = llama_case(64, 4096)  # 262144 elements: 2621 differences allowed
    actual = expected.clone().flatten()
    actual[:2621] = flipped.flatten()[:2621]
    assert check(actual.view_as(expected), x, weight, expected) is None
    actual[:2622] = flipped.flatten()[:2622]
    assert "(2622 from a flipped first rounding; bar 1 %)" in check(actual.view_as(expected), x, weight, expected)


def test_an_element_off_by_more_than_a_flip_fails():
    x, weight, expected, _ = llama_case(7, 64)
    actual = expected.clone()
    actual[2, 7] += 1.0
    assert check(actual, x, weight, expected).startswith("1 elements beyond 1 ulp")


def test_a_failure_says_which_side_is_off_the_fp64_mean():
    """A bar miss names how many elements each side has off the output from a mean of squares summed in fp64, so
    a GPU failure shows whether the kernel's reduction or the eager module's strayed."""
    x, weight, _, _ = llama_case(1, 96)
    inv_rms = torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + EPS).float()
    exact = normalized_with(x, inv_rms, weight, "llama")
    actual = exact.clone()
    actual[0, 3:5] = (weight * _step_one_ulp((x.float() * inv_rms).to(torch.float16), 1))[0, 3:5]
    assert check(actual, x, weight, exact).endswith("; elements off the fp64-mean reference: ours 2, eager 0 of 96")
    assert check(exact, x, weight, actual).endswith("; elements off the fp64-mean reference: ours 0, eager 2 of 96")


def test_a_miss_saves_the_rows_that_differ_where_the_environment_says(tmp_path, monkeypatch):
    x, weight, expected, _ = llama_case(20, 64)
    actual = expected.clone()
    differing = [17, 3] + list(range(5, 12))  # 9 rows: the 8 with the most differences are saved, in row order
    for count, row in enumerate(differing):
        actual[row, : 9 - count] += 1.0
    monkeypatch.setenv(MISSES_DIR_ENV, str(tmp_path / "misses"))
    problem = check(actual, x, weight, expected)
    saved = list((tmp_path / "misses").iterdir())
    assert len(saved) == 1 and problem.endswith(f"; operands saved to {saved[0]}")
    miss = torch.load(saved[0])
    rows = sorted(differing[:8])
    assert miss["rows"].tolist() == rows
    for name, tensor in (("actual", actual), ("expected", expected), ("x", x)):
        assert torch.equal(miss[name], tensor[rows]), name
    assert torch.equal(miss["weight"], weight) and (miss["eps"], miss["formulation"]) == (EPS, "llama")
    assert problem.startswith(miss["problem"])
    assert check(expected.clone(), x, weight, expected) is None
    assert len(list((tmp_path / "misses").iterdir())) == 1  # a pass saves nothing
