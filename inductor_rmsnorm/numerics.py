"""Units-in-the-last-place comparison: the correctness bar is "within 1 ulp, at most 1 % of elements differ"."""

from __future__ import annotations

import dataclasses

import torch

_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def _ordered_bits(t: torch.Tensor) -> torch.Tensor:
    """Integers that order like the floats, one apart for adjacent floats (+0 and -0 both 0)."""
    bits = t.contiguous().view(_BITS[t.dtype]).to(torch.int64)
    magnitude = bits & (2 ** (8 * t.element_size() - 1) - 1)
    return torch.where(bits < 0, -magnitude, magnitude)


@dataclasses.dataclass(frozen=True)
class UlpDifference:
    max_ulps: int  # largest distance in ulps; a NaN on one side only counts as 2**62
    fraction_different: float  # share of elements whose bits differ (NaN matching NaN counts as equal)

    def within(self, max_ulps: int = 1, max_fraction: float = 0.01) -> bool:
        return self.max_ulps <= max_ulps and self.fraction_different <= max_fraction


def ulp_distance(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Elementwise distance in ulps (int64); NaN against NaN is 0, NaN against a number 2**62."""
    if actual.dtype != expected.dtype or actual.shape != expected.shape:
        raise ValueError(f"comparing {actual.dtype}{list(actual.shape)} with {expected.dtype}{list(expected.shape)}")
    a, b = actual.detach(), expected.detach()
    distance = (_ordered_bits(a) - _ordered_bits(b)).abs()
    nan_a, nan_b = a.isnan(), b.isnan()
    distance = torch.where(nan_a & nan_b, 0, distance)
    return torch.where(nan_a ^ nan_b, 2**62, distance)


def ulp_difference(actual: torch.Tensor, expected: torch.Tensor) -> UlpDifference:
    distance = ulp_distance(actual, expected)
    if distance.numel() == 0:
        return UlpDifference(0, 0.0)
    return UlpDifference(int(distance.max()), float((distance != 0).double().mean()))
