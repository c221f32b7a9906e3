import logging

import pytest
import torch

from inductor_rmsnorm import dispatch, kernel_for


def expected_kernel(hidden: int) -> str | None:
    if hidden in (64, 128, 256):
        return "warp"
    if hidden % 256 == 0 and 512 <= hidden <= 8192:
        return "cta"
    return None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_kernel_for_every_hidden_size(dtype):
    for hidden in range(0, 9001):
        assert kernel_for(hidden, dtype) == expected_kernel(hidden), hidden


def test_counts_of_supported_sizes():
    supported = [h for h in range(9001) if kernel_for(h, torch.bfloat16)]
    assert len([h for h in supported if kernel_for(h) == "warp"]) == 3
    assert len([h for h in supported if kernel_for(h) == "cta"]) == 31
    assert supported[:5] == [64, 128, 256, 512, 768]
    assert supported[-1] == 8192


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, torch.float8_e4m3fn])
def test_no_kernel_for_other_dtypes(dtype):
    assert kernel_for(4096, dtype) is None
    assert "input dtype" in dispatch.unsupported_reason(4096, dtype, None)


def test_unsupported_reason_names_size_and_supported_set():
    reason = dispatch.unsupported_reason(2880, torch.bfloat16, torch.bfloat16)
    assert "2880" in reason and "multiples of 256 from 512 to 8192" in reason and "64, 128, 256" in reason


def test_weight_dtype_rules():
    assert dispatch.unsupported_reason(4096, torch.bfloat16, torch.float32) is None
    assert dispatch.unsupported_reason(4096, torch.bfloat16, None) is None
    assert "weight dtype" in dispatch.unsupported_reason(4096, torch.bfloat16, torch.float16)
    assert "weight dtype" in dispatch.unsupported_reason(4096, torch.float32, torch.bfloat16)


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
