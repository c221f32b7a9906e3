"""The correctness bar the CUDA tests apply (`modules.check_against_eager`), checked on the CPU: it must pass the
eager module's own output, allow the rare flipped first rounding of the Llama formulation, and fail real errors."""

import torch

from modules import _step_one_ulp, check_against_eager, eager_module, random_weight

EPS = 1e-6


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


def test_one_flipped_rounding_passes_in_a_small_tensor_and_two_do_not():
    x, weight, expected, flipped = llama_case(7, 64)  # 448 elements: one flip is 0.22 %
    actual = expected.clone()
    actual[3, 10] = flipped[3, 10]
    assert check(actual, x, weight, expected) is None
    actual[5, 20] = flipped[5, 20]
    assert check(actual, x, weight, expected) == "0.446% of elements (2) from a flipped first rounding (bar 0.1 %)"


def test_flips_beyond_one_in_a_thousand_fail_in_a_large_tensor():
    x, weight, expected, flipped = llama_case(64, 4096)  # 262144 elements: 262 flips allowed
    actual = expected.clone().flatten()
    actual[:262] = flipped.flatten()[:262]
    assert check(actual.view_as(expected), x, weight, expected) is None
    actual[:263] = flipped.flatten()[:263]
    assert "(263) from a flipped first rounding" in check(actual.view_as(expected), x, weight, expected)


def test_an_element_off_by_more_than_a_flip_fails():
    x, weight, expected, _ = llama_case(7, 64)
    actual = expected.clone()
    actual[2, 7] += 1.0
    assert check(actual, x, weight, expected).startswith("1 elements beyond 1 ulp")
