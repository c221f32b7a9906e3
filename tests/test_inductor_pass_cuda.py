"""The Inductor pass on a GPU: the generated code calls the op, outputs stay within the bar of Inductor's own
code, and a `reduce-overhead` (CUDA graph) compile replays correctly."""

import pytest
import torch
from torch._inductor.utils import run_and_get_code

import inductor_rmsnorm
from inductor_rmsnorm.numerics import ulp_difference
from modules import DecoderLayerTail, GemmaRMSNorm, LlamaRMSNorm, check_against_eager, randomised

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def fresh_compiles():
    with torch._inductor.config.patch(fx_graph_cache=False):  # every compile runs the pass (config.patch: see test_inductor_pass)
        torch._dynamo.reset()
        inductor_rmsnorm.report(clear=True)
        yield
        torch._dynamo.reset()


CASES = [
    ("llama", lambda: LlamaRMSNorm(4096), torch.bfloat16, torch.bfloat16),
    ("llama mixed", lambda: LlamaRMSNorm(4096), torch.float32, torch.bfloat16),
    ("torch", lambda: torch.nn.RMSNorm(2048, eps=1e-5), torch.float16, torch.float16),
    ("gemma", lambda: GemmaRMSNorm(8192), torch.bfloat16, torch.bfloat16),
    ("head norm", lambda: LlamaRMSNorm(128), torch.bfloat16, torch.bfloat16),
]


@pytest.mark.parametrize("name, make, weight_dtype, x_dtype", CASES, ids=[c[0] for c in CASES])
def test_generated_code_calls_the_op_and_matches_inductor(name, make, weight_dtype, x_dtype):
    module = randomised(make(), weight_dtype, "cuda")
    hidden = module.weight.shape[0]
    x = torch.randn(3, 129, hidden, device="cuda", dtype=x_dtype)
    with torch.no_grad():
        reference = torch.compile(module)(x)
        torch._dynamo.reset()
        output, code = run_and_get_code(
            torch.compile(module, options=inductor_rmsnorm.compile_options(policy="always")), x
        )
    # the op's lowering: a plain call into a buffer Inductor allocates, not the op through the dispatcher
    assert "extern_kernels.inductor_rmsnorm_rms_norm(" in "\n".join(code)
    assert len(inductor_rmsnorm.report().replaced) == 1
    # Inductor's own code is the reference: the Llama bar allows its first-rounding flips only with
    # emulate_precision_casts, which is off here, so the plain 1-ulp bar applies.
    formulation = "torch" if name != "gemma" else "gemma"
    problem = check_against_eager(output, reference, x, module.weight, 1e-6, formulation)
    assert problem is None, problem


def test_generated_code_takes_the_checked_path_for_layouts_its_hot_path_refuses():
    """The lowered calls' hot path needs contiguous, 16-byte aligned operands. Norms of `x[..., 1:]` (rows one
    element off alignment, row stride hidden + 1) take the checked op from the same call, and match the pass-off
    compile: the plain norm and the residual add + norm."""
    module = randomised(DecoderLayerTail(LlamaRMSNorm(4096)), torch.bfloat16, "cuda")
    padded_x, padded_residual = (torch.randn(33, 4097, device="cuda", dtype=torch.bfloat16) for _ in range(2))

    def layer(x, residual):
        return module.norm(x[:, 1:]), module(x[:, 1:], residual[:, 1:])

    with torch.no_grad():
        expected = torch.compile(layer)(padded_x, padded_residual)
        torch._dynamo.reset()
        with inductor_rmsnorm.enabled(policy="always"):
            (plain, (fused, residual_sum)), code = run_and_get_code(torch.compile(layer), padded_x, padded_residual)
    code = "\n".join(code)
    assert "extern_kernels.inductor_rmsnorm_rms_norm(" in code
    assert "extern_kernels.inductor_rmsnorm_fused_add_rms_norm(" in code
    assert ulp_difference(plain, expected[0]).within() and ulp_difference(fused, expected[1][0]).within()
    assert torch.equal(residual_sum, expected[1][1])


def test_reduce_overhead_compile_replays():
    module = randomised(LlamaRMSNorm(4096), torch.bfloat16, "cuda")
    with inductor_rmsnorm.enabled(policy="always"), torch.no_grad():
        compiled = torch.compile(module, mode="reduce-overhead")
        for _ in range(4):  # the first calls record, the later ones replay the CUDA graph
            x = torch.randn(64, 4096, device="cuda", dtype=torch.bfloat16)
            output = compiled(x).clone()
            expected = inductor_rmsnorm.ops.rms_norm(x, module.weight, 1e-6, "llama_single_rounding")
            torch.testing.assert_close(output, expected, rtol=0, atol=0)
    assert inductor_rmsnorm.report().replaced


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_a_norm_read_through_a_slice_of_rows_runs_on_those_rows(mode):
    """The final norm of a prefill whose logits keep the last token: 8 of 16384 rows, strided in x and the
    residual; the result has the bits of the op on every row."""
    module = randomised(LlamaRMSNorm(4096), torch.bfloat16, "cuda")
    x, residual = (torch.randn(8, 2048, 4096, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    options = inductor_rmsnorm.compile_options(mode=mode)
    with torch.no_grad():
        compiled = torch.compile(lambda a, b: module(a + b)[:, -1:], options=options)
        output, code = run_and_get_code(compiled, x, residual)
        output = compiled(x, residual).clone() if mode else output  # reduce-overhead: a replay too
    assert "extern_kernels.inductor_rmsnorm_fused_add_rms_norm(" in "\n".join(code)
    assert [c.rows_kept for c in inductor_rmsnorm.report().replaced] == ["8 of 16384 rows"]
    every_row, _ = inductor_rmsnorm.ops.fused_add_rms_norm(x, residual, module.weight, 1e-6, "llama_single_rounding")
    assert torch.equal(output, every_row[:, -1:])


def test_a_launch_bound_norm_is_left_to_inductor_without_cuda_graphs_and_replaced_with_them():
    module = DecoderLayerTail(randomised(LlamaRMSNorm(4096), torch.bfloat16, "cuda"))
    x, residual = (torch.randn(1, 1, 4096, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    with torch.no_grad():
        # what Inductor computes for the HF Llama norm (one rounding), by our kernel
        expected = inductor_rmsnorm.ops.fused_add_rms_norm(x, residual, module.norm.weight, 1e-6,
                                                           "llama_single_rounding")
        default = torch.compile(module, options=inductor_rmsnorm.compile_options())(x, residual)
        [left_alone] = inductor_rmsnorm.report(clear=True)
        torch._dynamo.reset()
        without_pass = torch.compile(module)(x, residual)
        torch._dynamo.reset()
        compiled = torch.compile(module, options=inductor_rmsnorm.compile_options(mode="reduce-overhead"))
        for _ in range(3):  # record, then replay
            graphed = [t.clone() for t in compiled(x, residual)]
    assert left_alone.reason.startswith("1 rows without CUDA graphs: launch-bound")
    assert [c.residual for c in inductor_rmsnorm.report().replaced] == ["fused_add"]
    assert torch.equal(graphed[0], expected[0]) and torch.equal(graphed[1], expected[1])
    # left alone: Inductor's own code, bit for bit (its reduction order differs from ours: ulps apart at times)
    assert torch.equal(default[0], without_pass[0]) and torch.equal(default[1], without_pass[1])


def test_dynamic_true_compile_with_eps_as_a_tensor():
    module = randomised(LlamaRMSNorm(4096), torch.bfloat16, "cuda")
    with inductor_rmsnorm.enabled(policy="always"), torch.no_grad():
        compiled = torch.compile(module, dynamic=True)
        for tokens in (5, 77):
            x = torch.randn(tokens, 4096, device="cuda", dtype=torch.bfloat16)
            expected = inductor_rmsnorm.ops.rms_norm(x, module.weight, 1e-6, "llama_single_rounding")
            torch.testing.assert_close(compiled(x), expected, rtol=0, atol=0)
    assert len(inductor_rmsnorm.report().replaced) == 1


def test_a_gpu_older_than_sm80_is_left_to_inductor(monkeypatch):
    # gpu_reason itself is tested on the CPU (test_dispatch); a pretended capability would also mislead Triton
    reason = "GPU 0 (Tesla T4) is sm_75; the kernels need sm_80 or newer"
    monkeypatch.setattr(inductor_rmsnorm.dispatch, "gpu_reason", lambda index: reason)
    module = randomised(LlamaRMSNorm(4096), torch.bfloat16, "cuda")
    with torch.no_grad():
        torch.compile(module, options=inductor_rmsnorm.compile_options())(
            torch.randn(8, 4096, device="cuda", dtype=torch.bfloat16))
    report = inductor_rmsnorm.report()
    assert not report.replaced
    assert [c.reason for c in report.left_alone] == [reason]
