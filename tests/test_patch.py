import copy

import pytest
import torch

import inductor_rmsnorm
from inductor_rmsnorm import FastRMSNorm
from inductor_rmsnorm.numerics import ulp_difference
from modules import GemmaRMSNorm, LlamaRMSNorm, ScaledRMSNorm


class Block(torch.nn.Module):
    def __init__(self, hidden, norm):
        super().__init__()
        self.proj = torch.nn.Linear(hidden, hidden)
        self.norm = norm

    def forward(self, x):
        return self.norm(self.proj(x))


def randomise(model):
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter.float()).mul(0.5).add(1.0).to(parameter.dtype))
    return model


def make_model(dtype):
    hidden = 256
    model = torch.nn.Sequential(
        Block(hidden, torch.nn.RMSNorm(hidden, eps=1e-5)),
        Block(hidden, LlamaRMSNorm(hidden, eps=1e-6)),
        Block(hidden, GemmaRMSNorm(hidden, eps=1e-6)),
        Block(hidden, torch.nn.RMSNorm(hidden, elementwise_affine=False)),
        Block(hidden, ScaledRMSNorm(hidden)),
        torch.nn.LayerNorm(hidden),
    )
    return randomise(model).to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_patch_swaps_rmsnorms_and_keeps_outputs(dtype):
    model = make_model(dtype)
    x = torch.randn(9, 256, dtype=dtype)
    with torch.no_grad():
        before = model(x)
        state_before = {k: v.clone() for k, v in model.state_dict().items()}
        assert inductor_rmsnorm.patch(model) == 4
        after = model(x)
    assert [type(b.norm).__name__ for b in model[:5]] == ["FastRMSNorm"] * 4 + ["ScaledRMSNorm"]
    assert [b.norm.formulation for b in model[:4]] == ["torch", "llama", "gemma", "torch"]
    assert ulp_difference(after, before).within(max_ulps=1, max_fraction=0.01)
    assert model.state_dict().keys() == state_before.keys()
    assert inductor_rmsnorm.patch(model) == 0  # already patched


def test_unpatch_restores_the_original_modules():
    model = make_model(torch.float32)
    originals = [b.norm for b in model[:5]]
    inductor_rmsnorm.patch(model)
    assert inductor_rmsnorm.unpatch(model) == 4
    assert all(b.norm is original for b, original in zip(model[:5], originals))


def test_patched_module_shares_the_weight():
    model = Block(128, LlamaRMSNorm(128))
    inductor_rmsnorm.patch(model)
    assert isinstance(model.norm, FastRMSNorm)
    with torch.no_grad():
        model.norm.weight.fill_(2.0)
    inductor_rmsnorm.unpatch(model)
    assert torch.equal(model.norm.weight, torch.full((128,), 2.0))


def test_float32_weight_llama_module_keeps_promoting():
    norm = randomise(LlamaRMSNorm(512))  # fp32 weight, bf16 activations: HF returns fp32
    model = torch.nn.Sequential(norm)
    x = torch.randn(5, 512, dtype=torch.bfloat16)
    with torch.no_grad():
        expected = copy.deepcopy(model)(x)
        inductor_rmsnorm.patch(model)
        actual = model(x)
    assert model[0].formulation == "llama"
    assert actual.dtype == torch.float32
    assert ulp_difference(actual, expected).within()


def test_patch_passes_on_unsupported_mode():
    model = torch.nn.Sequential(torch.nn.RMSNorm(2882))
    inductor_rmsnorm.patch(model, on_unsupported="error")
    with pytest.raises(RuntimeError, match="hidden size 2882"):
        model(torch.randn(2, 2882))
