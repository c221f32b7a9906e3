"""The op on the CPU: reference math, opcheck, fake (symbolic batch), bad input, the eager API's modes."""

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import inductor_rmsnorm
from inductor_rmsnorm import ops
from inductor_rmsnorm.numerics import ulp_difference
from inductor_rmsnorm.reference import rms_norm_reference
from modules import eager_module, random_weight

DTYPES = [torch.bfloat16, torch.float16, torch.float32]
FORMULATIONS = ["torch", "llama", "gemma", "llama_single_rounding"]


def float64_truth(x, weight, eps, formulation):
    h = x.double()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    if weight is None:
        return h
    return h * (1.0 + weight.double()) if formulation == "gemma" else h * weight.double()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_reference_is_close_to_float64(dtype, formulation):
    x = torch.randn(64, 1024, dtype=dtype) * 3
    weight = random_weight(formulation, 1024, dtype, "cpu")
    actual = rms_norm_reference(x, weight, 1e-6, formulation).double()
    truth = float64_truth(x, weight, 1e-6, formulation)
    relative = (actual - truth).norm() / truth.norm()
    # one rounding to the output dtype (two for llama in 16 bits) bounds the error
    bound = {torch.bfloat16: 4e-3, torch.float16: 6e-4, torch.float32: 1e-6}[dtype]
    assert relative < bound, relative


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_reference_matches_the_eager_module(dtype, formulation):
    x = torch.randn(33, 512, dtype=dtype)
    weight = random_weight(formulation, 512, dtype, "cpu")
    with torch.no_grad():
        expected = eager_module(formulation, 512, weight, 1e-5)(x)
    actual = rms_norm_reference(x, weight, 1e-5, formulation)
    assert actual.dtype == expected.dtype
    assert ulp_difference(actual, expected).within(max_ulps=1, max_fraction=0.01)


def test_llama_rounds_twice_and_torch_once():
    # The two formulations must really differ in 16 bits, or the tests above prove nothing about rounding order.
    x = torch.randn(64, 1024, dtype=torch.bfloat16)
    weight = random_weight("llama", 1024, torch.bfloat16, "cpu")
    llama = rms_norm_reference(x, weight, 1e-6, "llama")
    torch_style = rms_norm_reference(x, weight, 1e-6, "torch")
    assert ulp_difference(llama, torch_style).fraction_different > 0.05


def sample_arguments():
    yield torch.randn(3, 7, 256, dtype=torch.bfloat16), torch.randn(256, dtype=torch.bfloat16), "llama"
    yield torch.randn(5, 512, dtype=torch.float16), torch.randn(512), "llama"
    yield torch.randn(5, 512, dtype=torch.bfloat16), torch.randn(512), "llama_single_rounding"
    yield torch.randn(5, 512, dtype=torch.float32), None, "torch"
    yield torch.randn(2, 4, 1024, dtype=torch.bfloat16), torch.randn(1024, dtype=torch.bfloat16), "gemma"


@pytest.mark.parametrize("arguments", list(sample_arguments()), ids=lambda a: f"{a[0].dtype}-{a[2]}")
def test_opcheck(arguments):
    x, weight, formulation = arguments
    torch.library.opcheck(ops.rms_norm, (x, weight, 1e-6, formulation))
    out = torch.empty(x.shape, dtype=inductor_rmsnorm.dispatch.output_dtype(
        x.dtype, None if weight is None else weight.dtype, formulation))
    torch.library.opcheck(ops.rms_norm_out, (out, x, weight, 1e-6, formulation))


def test_fake_keeps_the_batch_dimension_symbolic():
    def f(x, weight):
        return ops.rms_norm(x, weight, 1e-6, "llama")

    x, weight = torch.randn(6, 128, dtype=torch.bfloat16), torch.randn(128, dtype=torch.float32)
    graph = make_fx(f, tracing_mode="symbolic")(x, weight)
    (output,) = [n for n in graph.graph.nodes if n.op == "call_function"]
    value = output.meta["val"]
    assert isinstance(value.shape[0], torch.SymInt) and value.shape[1] == 128
    assert value.dtype == torch.float32  # llama promotes to the fp32 weight's dtype


def test_one_compile_serves_several_batch_sizes():
    counts = {"frames": 0}

    def backend(graph_module, example_inputs):
        counts["frames"] += 1
        return graph_module

    compiled = torch.compile(lambda x, w: ops.rms_norm(x, w, 1e-6, "torch"), backend=backend, dynamic=True)
    weight = torch.randn(512)
    for tokens in (3, 17, 64):
        x = torch.randn(tokens, 512)
        torch.testing.assert_close(compiled(x, weight), rms_norm_reference(x, weight, 1e-6, "torch"))
    assert counts["frames"] == 1


def test_zero_tokens_give_an_empty_result():
    x = torch.randn(0, 4096, dtype=torch.bfloat16)
    out = ops.rms_norm(x, torch.ones(4096, dtype=torch.bfloat16), 1e-6, "torch")
    assert out.shape == (0, 4096) and out.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "weight, formulation, message",
    [
        (torch.ones(4095), "torch", r"weight has shape \[4095\]; expected \[4096\]"),
        (torch.ones(2, 4096), "torch", r"weight has shape \[2, 4096\]"),
        (torch.ones(4096, device="meta"), "torch", "weight is on meta but input is on cpu"),
        (torch.ones(4096, dtype=torch.float16), "torch", "weight dtype torch.float16 with input dtype torch.bfloat16"),
        (torch.ones(4096), "rmsnorm", "formulation 'rmsnorm' is not one of"),
    ],
)
def test_bad_arguments_raise_clear_errors(weight, formulation, message):
    x = torch.randn(2, 4096, dtype=torch.bfloat16)
    with pytest.raises((ValueError, RuntimeError), match=message):
        ops.rms_norm(x, weight, 1e-6, formulation)


def test_unsupported_size_and_layout_raise_in_the_op():
    with pytest.raises(RuntimeError, match="hidden size 2882 has no kernel"):
        ops.rms_norm(torch.randn(2, 2882), None, 1e-6, "torch")
    with pytest.raises(RuntimeError, match="last dimension of input is not contiguous"):
        ops.rms_norm(torch.randn(512, 4).t(), None, 1e-6, "torch")
    with pytest.raises(ValueError, match="at least one dimension"):
        ops.rms_norm(torch.tensor(1.0), None, 1e-6, "torch")


def test_out_variant_checks_out_and_writes_in_place():
    x = torch.randn(4, 256, dtype=torch.bfloat16)
    weight = torch.randn(256, dtype=torch.bfloat16)
    expected = rms_norm_reference(x, weight, 1e-6, "llama")
    ops.rms_norm_out(x, x, weight, 1e-6, "llama")
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="out is torch.float32"):
        ops.rms_norm_out(torch.empty(4, 256), x, weight, 1e-6, "llama")


# ------------------------------------------------------------------------------------------ the eager API
def test_eager_api_falls_back_on_unsupported_sizes():
    x, weight = torch.randn(3, 2882, dtype=torch.bfloat16), torch.randn(2882, dtype=torch.bfloat16)
    torch.testing.assert_close(
        inductor_rmsnorm.rms_norm(x, weight, 1e-6, formulation="llama"),
        rms_norm_reference(x, weight, 1e-6, "llama"), rtol=0, atol=0,
    )


@pytest.mark.parametrize("hidden", [0, 2882, 65544, 98])
def test_eager_api_error_mode_names_the_size(hidden):
    x = torch.randn(3, hidden)
    with pytest.raises(RuntimeError, match=f"hidden size {hidden} has no kernel; supported hidden sizes: multiples of 8"):
        inductor_rmsnorm.rms_norm(x, None, 1e-6, on_unsupported="error")


def test_eager_api_error_mode_passes_supported_sizes():
    x, weight = torch.randn(3, 1024), torch.randn(1024)
    torch.testing.assert_close(
        inductor_rmsnorm.rms_norm(x, weight, None, on_unsupported="error"),
        torch.nn.functional.rms_norm(x, (1024,), weight, None),
    )


def test_eager_api_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="on_unsupported='ignore'"):
        inductor_rmsnorm.rms_norm(torch.randn(2, 512), on_unsupported="ignore")


def test_eager_api_keeps_gradients():
    x = torch.randn(4, 512, requires_grad=True)
    weight = torch.randn(512, requires_grad=True)
    inductor_rmsnorm.rms_norm(x, weight, 1e-6).sum().backward()
    x2, weight2 = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    torch.nn.functional.rms_norm(x2, (512,), weight2, 1e-6).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(weight.grad, weight2.grad)


# --------------------------------------------------------------------------------- the fused residual-add op
@pytest.mark.parametrize("arguments", list(sample_arguments()), ids=lambda a: f"{a[0].dtype}-{a[2]}")
def test_fused_add_opcheck_and_reference(arguments):
    x, weight, formulation = arguments
    residual = torch.randn_like(x)
    torch.library.opcheck(ops.fused_add_rms_norm, (x, residual, weight, 1e-6, formulation))
    y, s = ops.fused_add_rms_norm(x, residual, weight, 1e-6, formulation)
    assert torch.equal(s, x + residual)  # rounded to the input dtype, as eager adds
    assert torch.equal(y, rms_norm_reference(x + residual, weight, 1e-6, formulation))


@pytest.mark.parametrize(
    "residual, message",
    [
        (torch.randn(4, 512, dtype=torch.float32), r"residual is torch.float32\[4, 512\] on cpu; the kernels need"),
        (torch.randn(2, 512, dtype=torch.bfloat16), r"residual is torch.bfloat16\[2, 512\]"),
        (torch.randn(512, 4, dtype=torch.bfloat16).t(), "last dimension of residual is not contiguous"),
    ],
)
def test_fused_add_rejects_a_mismatched_residual(residual, message):
    x = torch.randn(4, 512, dtype=torch.bfloat16)
    with pytest.raises((ValueError, RuntimeError), match=message):
        ops.fused_add_rms_norm(x, residual, None, 1e-6, "torch")


def test_eps_tensor_overloads_match_the_float_ones():
    # torch.compile(dynamic=True) hands the pass eps as a 0-d tensor
    x, residual, weight = torch.randn(3, 256), torch.randn(3, 256), torch.randn(256)
    eps = torch.tensor(1e-5, dtype=torch.float64)
    torch.library.opcheck(torch.ops.inductor_rmsnorm.rms_norm.eps_tensor, (x, weight, eps, "torch"))
    torch.library.opcheck(torch.ops.inductor_rmsnorm.fused_add_rms_norm.eps_tensor, (x, residual, weight, eps, "gemma"))
    assert torch.equal(torch.ops.inductor_rmsnorm.rms_norm.eps_tensor(x, weight, eps, "torch"),
                       ops.rms_norm(x, weight, 1e-5, "torch"))
