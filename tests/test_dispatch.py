import logging

import pytest
import torch

from inductor_rmsnorm import dispatch, kernel_for


def expected_kernel(hidden: int, dtype: torch.dtype, fused_add: bool) -> str | None:
    vector = 4 if dtype == torch.float32 else 8  # elements in 16 bytes
    if hidden <= 0 or hidden % vector:
        return None
    if hidden <= (256 if dtype == torch.float32 or fused_add else 512):
        return "warp"
    if hidden <= (12288 if dtype == torch.float32 else 24576):
        return "cta"
    if hidden <= 65536:
        return "wide"
    return None


@pytest.mark.parametrize("fused_add", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_kernel_for_every_hidden_size(dtype, fused_add):
    for hidden in range(-8, 70001):
        assert kernel_for(hidden, dtype, fused_add=fused_add) == expected_kernel(hidden, dtype, fused_add), hidden


def test_counts_of_supported_sizes():
    for dtype, vector, largest_warp in ((torch.bfloat16, 8, 512), (torch.float32, 4, 256)):
        supported = [h for h in range(70001) if kernel_for(h, dtype)]
        assert len([h for h in supported if kernel_for(h, dtype) == "warp"]) == largest_warp // vector
        largest_cta = 12288 if dtype == torch.float32 else 24576  # rows of 48 KiB
        assert len([h for h in supported if kernel_for(h, dtype) == "cta"]) == (largest_cta - largest_warp) // vector
        assert len([h for h in supported if kernel_for(h, dtype) == "wide"]) == (65536 - largest_cta) // vector
        assert supported[:3] == [vector, 2 * vector, 3 * vector]
        assert supported[-1] == 65536
        # the residual add serves the same sizes, 16-bit rows of 264-512 with the CTA kernel
        assert [h for h in range(70001) if kernel_for(h, dtype, fused_add=True)] == supported
        assert [h for h in supported if kernel_for(h, dtype, fused_add=True) != kernel_for(h, dtype)] == (
            list(range(264, 513, 8)) if dtype == torch.bfloat16 else [])
    real_models = (2880, 5376, 7168, 12288, 16384, 1536, 512, 96, 192)  # issue 4's list
    assert [h for h in real_models if kernel_for(h)] == list(real_models)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, torch.float8_e4m3fn])
def test_no_kernel_for_other_dtypes(dtype):
    assert kernel_for(4096, dtype) is None
    assert "input dtype" in dispatch.unsupported_reason(4096, dtype, None)


def test_unsupported_reason_names_size_and_supported_set():
    for hidden in (2884, 65544):
        reason = dispatch.unsupported_reason(hidden, torch.bfloat16, torch.bfloat16)
        assert reason == (f"hidden size {hidden} has no kernel; supported hidden sizes: multiples of 8 elements in "
                          "16-bit types, of 4 in float32: up to 512 in 16-bit types (256 with the residual add), up "
                          "to 256 in float32 (warp kernel); from 520 (264 with the residual add) to 24576 in 16-bit "
                          "types, from 260 to 12288 in float32 (cta kernel); from 24584 (16-bit) or 12292 (float32) "
                          "to 65536 (wide kernel)")


def test_weight_dtype_rules():
    assert dispatch.unsupported_reason(4096, torch.bfloat16, torch.float32) is None
    assert dispatch.unsupported_reason(4096, torch.bfloat16, None) is None
    assert "weight dtype" in dispatch.unsupported_reason(4096, torch.bfloat16, torch.float16)
    assert "weight dtype" in dispatch.unsupported_reason(4096, torch.float32, torch.bfloat16)


def test_kernel_variants_pair_each_weight_with_every_formulation_and_no_weight_with_one():
    variants = list(dispatch.kernel_variants())
    assert len(variants) == len(set(variants)) == 23  # 16-bit: 2 weights x 4 formulations + none; float32: 4 + 1
    for dtype in dispatch.INPUT_DTYPES:
        for weight in dispatch.weight_dtypes_for(dtype):
            assert [f for d, w, f in variants if (d, w) == (dtype, weight)] == list(dispatch.FORMULATIONS)
        assert [f for d, w, f in variants if (d, w) == (dtype, None)] == ["torch"]


def test_output_dtype_follows_each_formulation():
    bf16, fp32 = torch.bfloat16, torch.float32
    assert dispatch.output_dtype(bf16, fp32, "llama") == fp32  # w * h.to(bf16) promotes
    assert dispatch.output_dtype(bf16, fp32, "torch") == bf16
    assert dispatch.output_dtype(bf16, fp32, "gemma") == bf16
    assert dispatch.output_dtype(bf16, None, "llama") == bf16


@pytest.fixture
def gpu_of_capability(monkeypatch):
    """Pretend every GPU has the given compute capability (gpu_reason's cache cleared around the test)."""
    def pretend(major, minor):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    dispatch.gpu_reason.cache_clear()
    yield pretend
    dispatch.gpu_reason.cache_clear()


def test_gpus_older_than_sm80_have_no_kernel_and_one_warning(gpu_of_capability, caplog):
    gpu_of_capability(7, 5)
    with caplog.at_level(logging.WARNING, logger="inductor_rmsnorm"):
        reasons = [dispatch.gpu_reason(0) for _ in range(3)]
    assert reasons == ["GPU 0 (Tesla T4) is sm_75; the kernels need sm_80 or newer"] * 3
    assert [r.getMessage() for r in caplog.records] == [
        "inductor_rmsnorm: GPU 0 (Tesla T4) is sm_75; the kernels need sm_80 or newer: its RMSNorms run torch's "
        "computation"]


def test_sm80_and_newer_gpus_have_kernels(gpu_of_capability):
    gpu_of_capability(8, 0)
    assert dispatch.gpu_reason(0) is None
