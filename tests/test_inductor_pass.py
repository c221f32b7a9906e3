"""The Inductor pass on the CPU: post-pass graphs (expecttest), match counts, numerics against Inductor without
the pass, batch sizes, unsupported sizes, training graphs, the cost policy, installation and the cache key."""

import logging

import expecttest
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._inductor import config as inductor_config
from torch._inductor.pattern_matcher import stable_topological_sort
from torch._inductor.utils import run_and_get_code

import inductor_rmsnorm
from inductor_rmsnorm.inductor_pass import RMSNormPass
from inductor_rmsnorm.numerics import ulp_difference
from inductor_rmsnorm.reference import rms_norm_reference
from modules import DecoderLayerTail, GemmaRMSNorm, LlamaRMSNorm, Olmo2RMSNorm, randomised

SHORT_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.float64: "fp64"}


def format_graph(graph: torch.fx.Graph) -> str:
    """A post-grad graph in a form stable across torch versions: inputs named by dtype and shape, nodes numbered."""
    names, lines = {}, []

    def show(value):
        if isinstance(value, torch.fx.Node):
            return names[value]
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else repr(value)

    for node in graph.nodes:
        if node.op == "placeholder":
            value = node.meta["val"]
            if isinstance(value, torch.SymInt):
                names[node] = "size"
            else:  # symbolic sizes print as "s": their numbering differs between torch versions
                shape = ", ".join(str(d) if isinstance(d, int) else "s" for d in value.shape)
                names[node] = f"{SHORT_DTYPES[value.dtype]}[{shape}]"
        elif node.op == "call_function":
            names[node] = f"v{len(lines)}"
            target = node.target if isinstance(node.target, torch._ops.OpOverload) else node.target.__name__
            lines.append(f"{names[node]} = {target}({', '.join(show(a) for a in node.args)})")
        elif node.op == "output":
            lines.append(f"return {show(node.args[0])}")
    return "\n".join(lines)


class RecordingPass(RMSNormPass):
    """The pass, keeping the graph it leaves for the test to read, in the order Inductor sorts it into next (a
    replacement may leave a node before an argument of its own, as the eps conversion of dynamic=True)."""

    def __call__(self, graph):
        super().__call__(graph)
        stable_topological_sort(graph)
        self.graph_after = format_graph(graph)


@pytest.fixture(autouse=True)
def fresh_compiles():
    # config.patch, not monkeypatch: undoing a monkeypatch hides the option in some torch versions (2.11)
    with inductor_config.patch(fx_graph_cache=False, post_grad_custom_post_pass=None):  # every compile runs the pass
        torch._dynamo.reset()
        inductor_rmsnorm.report(clear=True)
        yield
        torch._dynamo.reset()


def compile_with(module, *inputs, **options):
    """Compile `module` with a recording pass and call it on `inputs`; returns (output, the pass)."""
    recorder = RecordingPass(**options)
    with torch.no_grad():
        output = torch.compile(module, options={"post_grad_custom_post_pass": recorder})(*inputs)
    torch._dynamo.reset()
    return output, recorder


def compiled_without_pass(module, *inputs):
    with torch.no_grad():
        output = torch.compile(module)(*inputs)
    torch._dynamo.reset()
    return output


class TestGraphs(expecttest.TestCase):
    def check(self, module, x, expected_graph, against_eager=False, **options):
        output, recorder = compile_with(module, x, policy="always", **options)
        self.assertExpectedInline(recorder.graph_after, expected_graph, skip=1)
        if against_eager:
            with torch.no_grad():
                reference = module(x)
        else:
            reference = compiled_without_pass(module, x)
        self.assertEqual(output.dtype, reference.dtype)
        difference = ulp_difference(output, reference)
        # 16-bit outputs: the 1-ulp bar; float32 outputs show the reduction order: a few ulps
        ok = difference.max_ulps <= 8 if output.dtype == torch.float32 else difference.within()
        self.assertTrue(ok, difference)

    def test_hf_llama_bf16(self):
        self.check(randomised(LlamaRMSNorm(256, eps=1e-5), torch.bfloat16), torch.randn(2, 3, 256, dtype=torch.bfloat16), """\
v0 = inductor_rmsnorm.rms_norm.default(bf16[2, 3, 256], bf16[256], 1e-05, 'llama_single_rounding')
return [v0]""")

    def test_hf_llama_float32_weight_keeps_the_promoted_output(self):
        self.check(randomised(LlamaRMSNorm(512)), torch.randn(4, 512, dtype=torch.bfloat16), """\
v0 = inductor_rmsnorm.rms_norm.default(bf16[4, 512], fp32[512], 1e-06, 'llama_single_rounding')
return [v0]""")

    def test_hf_llama_with_emulated_precision_casts_rounds_twice(self):
        # The flag asks for eager's roundings; Inductor's C++ backend honours it only from torch 2.13, so the
        # reference is the eager module.
        with inductor_config.patch(emulate_precision_casts=True):
            self.check(randomised(LlamaRMSNorm(256), torch.float16), torch.randn(5, 256, dtype=torch.float16), """\
v0 = inductor_rmsnorm.rms_norm.default(fp16[5, 256], fp16[256], 1e-06, 'llama')
return [v0]""", against_eager=True)

    def test_nn_rmsnorm_bf16(self):
        self.check(randomised(torch.nn.RMSNorm(1024, eps=1e-6), torch.bfloat16), torch.randn(7, 1024, dtype=torch.bfloat16), """\
v0 = inductor_rmsnorm.rms_norm.default(bf16[7, 1024], bf16[1024], 9.999999974752427e-07, 'torch')
return [v0]""")

    def test_gemma_bf16(self):
        module = randomised(GemmaRMSNorm(512), torch.bfloat16)
        self.check(module, torch.randn(2, 2, 2, 512, dtype=torch.bfloat16), """\
v0 = inductor_rmsnorm.rms_norm.default(bf16[2, 2, 2, 512], bf16[512], 1e-06, 'gemma')
return [v0]""")

    def test_olmo2_bf16_with_a_float32_weight(self):
        module = randomised(Olmo2RMSNorm(1024, eps=1e-6), torch.float32)  # OLMo's weight may stay float32
        self.check(module, torch.randn(6, 1024, dtype=torch.bfloat16), """\
v0 = inductor_rmsnorm.rms_norm.default(bf16[6, 1024], fp32[1024], 1e-06, 'torch')
return [v0]""")

    def test_olmo2_bf16(self):
        module = randomised(Olmo2RMSNorm(256, eps=1e-5), torch.bfloat16)
        self.check(module, torch.randn(3, 256, dtype=torch.bfloat16), """\
v0 = inductor_rmsnorm.rms_norm.default(bf16[3, 256], bf16[256], 1e-05, 'torch')
return [v0]""")

    def test_no_weight_float32(self):
        self.check(torch.nn.RMSNorm(768, eps=1e-5, elementwise_affine=False), torch.randn(3, 768), """\
v0 = inductor_rmsnorm.rms_norm.default(fp32[3, 768], None, 9.999999747378752e-06, 'torch')
return [v0]""")

    def test_per_head_qk_norm_on_a_projection(self):
        class Attention(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.q_proj = torch.nn.Linear(512, 512, bias=False)
                self.q_norm = LlamaRMSNorm(128)

            def forward(self, x):
                q = self.q_norm(self.q_proj(x).view(*x.shape[:-1], 4, 128))
                return q @ q.transpose(-1, -2)

        module = randomised(Attention(), torch.bfloat16)
        output, recorder = compile_with(module, torch.randn(2, 5, 512, dtype=torch.bfloat16), policy="auto")
        self.assertIn("inductor_rmsnorm.rms_norm.default(v4, bf16[128], 1e-06, 'llama_single_rounding')",
                      recorder.graph_after)
        (candidate,) = inductor_rmsnorm.report()
        self.assertEqual((candidate.kernel, candidate.hidden_size), ("warp", 128))


def test_exact_match_counts_in_a_stack_of_norms():
    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norms = torch.nn.ModuleList([LlamaRMSNorm(256), torch.nn.RMSNorm(256), GemmaRMSNorm(256)])
            self.projections = torch.nn.ModuleList([torch.nn.Linear(256, 256) for _ in range(3)])

        def forward(self, x):
            for norm, projection in zip(self.norms, self.projections):
                x = projection(norm(x))
            return x

    module = randomised(Stack(), torch.bfloat16)
    x = torch.randn(4, 256, dtype=torch.bfloat16)
    output, recorder = compile_with(module, x, policy="auto")
    assert recorder.graph_after.count("inductor_rmsnorm.rms_norm.default") == 3
    assert [c.search for c in inductor_rmsnorm.report().replaced] == ["gemma", "torch", "hf_llama"]
    assert ulp_difference(output, compiled_without_pass(module, x)).max_ulps <= 2  # through the linears


@pytest.mark.parametrize("weight_dtype, x_dtype, call", [
    (torch.bfloat16, torch.bfloat16, "extern_kernels.inductor_rmsnorm_fused_add_rms_norm("),
    # Llama's float32 output (float32 weight) next to a bfloat16 sum: not one buffer, so a fallback kernel
    (torch.float32, torch.bfloat16, "torch.ops.inductor_rmsnorm.fused_add_rms_norm.default("),
])
def test_generated_code_calls_the_kernels_into_inductors_buffers(weight_dtype, x_dtype, call):
    """The ops' lowerings (`inductor_rmsnorm.lowering`): a plain call into buffers Inductor allocates, not the
    op through the dispatcher, with the operands of its own norm."""
    class TwoNorms(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.tail = LlamaRMSNorm(512), DecoderLayerTail(LlamaRMSNorm(512))
            self.projection = torch.nn.Linear(512, 512)

        def forward(self, x, residual):
            projected = self.projection(self.first(x).to(self.projection.weight.dtype))
            return self.tail(projected.to(x.dtype), residual)

    module = randomised(TwoNorms(), weight_dtype)
    x, residual = (torch.randn(2, 9, 512, dtype=x_dtype) for _ in range(2))
    with inductor_rmsnorm.enabled(policy="always"), torch.no_grad():
        outputs, code = run_and_get_code(torch.compile(module), x, residual)
    code = "\n".join(code)
    assert code.count("extern_kernels.inductor_rmsnorm_rms_norm(") == 1 and code.count(call) == 1
    assert [c.residual for c in inductor_rmsnorm.report().replaced] == ["fused_add", "plain"]
    # Each call got its own operands: the op's CPU implementation is the reference math. Not against a pass-off
    # compile: there the cast of a float32 projection to bfloat16 fuses into the add unrounded, where the fused op
    # reads it rounded, as eager does (policy="always" in the README).
    with torch.no_grad():
        first = rms_norm_reference(x, module.first.weight, module.first.variance_epsilon, "llama_single_rounding")
        s = module.projection(first.to(weight_dtype)).to(x_dtype) + residual
        norm = module.tail.norm
        expected = rms_norm_reference(s, norm.weight, norm.variance_epsilon, "llama_single_rounding"), s
    assert all(torch.equal(output, reference) for output, reference in zip(outputs, expected))


def test_one_compile_serves_several_batch_sizes():
    module = randomised(LlamaRMSNorm(512), torch.bfloat16)
    counter = CompileCounterWithBackend("inductor")
    with inductor_rmsnorm.enabled(policy="always"), torch.no_grad():
        compiled = torch.compile(module, backend=counter)
        for tokens in (3, 17, 64):
            x = torch.randn(tokens, 512, dtype=torch.bfloat16)
            torch._dynamo.mark_dynamic(x, 0)
            assert ulp_difference(compiled(x), compiled_reference(module, x)).within()
    assert counter.frame_count == 1
    assert len(inductor_rmsnorm.report().replaced) == 1


def test_dynamic_true_passes_eps_as_a_tensor():
    # torch.compile(dynamic=True) turns float attributes into graph inputs: the op's eps_tensor overload takes it.
    module = randomised(LlamaRMSNorm(512), torch.bfloat16)
    recorder = RecordingPass(policy="always")
    counter = CompileCounterWithBackend("inductor")
    with torch.no_grad():
        compiled = torch.compile(module, backend=counter, dynamic=True)
        with inductor_config.patch(post_grad_custom_post_pass=recorder):
            for tokens in (6, 33):
                x = torch.randn(tokens, 512, dtype=torch.bfloat16)
                assert torch.equal(compiled(x), compiled_reference(module, x))
    assert counter.frame_count == 1
    assert "inductor_rmsnorm.rms_norm.eps_tensor(bf16[s, 512], bf16[512], v0, 'llama_single_rounding')" in (
        recorder.graph_after), recorder.graph_after


def test_dynamic_true_generated_code_reads_eps_from_its_tensor():
    """dynamic=True lifts the Llama modules' eps into the graph: the eps_tensor overloads' lowerings, with and
    without a weight, next to a float eps (`nn.RMSNorm` passes its own as a constant)."""
    class UnweightedLlamaRMSNorm(torch.nn.Module):
        def __init__(self, eps=1e-6):
            super().__init__()
            self.variance_epsilon = eps

        def forward(self, x):
            hidden = x.to(torch.float32)
            variance = hidden.pow(2).mean(-1, keepdim=True)
            return (hidden * torch.rsqrt(variance + self.variance_epsilon)).to(x.dtype)

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # eps values apart and large enough to show in bf16: a call given another's eps gives other values
            self.first, self.tail = UnweightedLlamaRMSNorm(0.25), DecoderLayerTail(LlamaRMSNorm(512, eps=0.5))
            self.last = torch.nn.RMSNorm(512, eps=0.125, elementwise_affine=False)

        def forward(self, x, residual):
            return *self.tail(self.first(x), residual), self.last(x)

    module = randomised(Layer(), torch.bfloat16)
    x, residual = (torch.randn(9, 512, dtype=torch.bfloat16) for _ in range(2))
    with inductor_rmsnorm.enabled(policy="always"), torch.no_grad():
        outputs, code = run_and_get_code(torch.compile(module, dynamic=True), x, residual)
    code = "\n".join(code)
    for call in ("rms_norm_eps_tensor", "fused_add_rms_norm_eps_tensor", "rms_norm"):
        assert code.count(f"extern_kernels.inductor_rmsnorm_{call}(") == 1, call
    assert [(c.search, c.residual) for c in inductor_rmsnorm.report().replaced] == [
        ("torch_no_weight", "plain"), ("hf_llama", "fused_add"), ("hf_no_weight", "plain")]
    # the op's CPU implementation is the reference math: the values show that each call got its own eps and
    # weight (Inductor's pass-off code rounds the first norm's output before the add differently)
    s = rms_norm_reference(x, None, 0.25, "llama") + residual
    expected = (rms_norm_reference(s, module.tail.norm.weight, 0.5, "llama_single_rounding"), s,
                rms_norm_reference(x, None, 0.125, "torch"))
    assert all(torch.equal(output, reference) for output, reference in zip(outputs, expected))


def compiled_reference(module, x):
    return inductor_rmsnorm.ops.rms_norm(x, module.weight, module.variance_epsilon, "llama_single_rounding")


def test_unsupported_size_is_left_to_inductor_by_default():
    module = randomised(LlamaRMSNorm(2882), torch.bfloat16)
    x = torch.randn(3, 2882, dtype=torch.bfloat16)
    output, recorder = compile_with(module, x)
    assert "inductor_rmsnorm" not in recorder.graph_after
    (candidate,) = inductor_rmsnorm.report()
    assert candidate.reason.startswith("hidden size 2882 has no kernel")
    torch.testing.assert_close(output, compiled_without_pass(module, x), rtol=0, atol=0)


def test_unsupported_size_raises_in_error_mode():
    module = randomised(LlamaRMSNorm(2882), torch.bfloat16)
    with pytest.raises(Exception, match=r"RMSNorm at node \w+ \(hidden size 2882, bfloat16 input, bfloat16 weight\) "
                                        r"cannot be replaced: hidden size 2882 has no kernel; "
                                        r"supported hidden sizes: multiples of 8 elements"):
        compile_with(module, torch.randn(3, 2882, dtype=torch.bfloat16), on_unsupported="error")


def test_warn_mode_warns_once_per_size(caplog):
    module = randomised(LlamaRMSNorm(100), torch.float16)
    with caplog.at_level(logging.WARNING, logger="inductor_rmsnorm"):
        for tokens in (2, 3):
            compile_with(module, torch.randn(tokens, 100, dtype=torch.float16), on_unsupported="warn")
    warnings = [r for r in caplog.records if "hidden size 100" in r.getMessage()]
    assert len(warnings) == 1
    assert len(inductor_rmsnorm.report().left_alone) == 2


def test_training_graph_is_left_alone_and_gradients_match_eager():
    module = randomised(LlamaRMSNorm(256))
    x = torch.randn(4, 256, requires_grad=True)
    recorder = RecordingPass(policy="always")
    compiled = torch.compile(module, options={"post_grad_custom_post_pass": recorder})
    compiled(x).sum().backward()
    grads = (x.grad.clone(), module.weight.grad.clone())
    x.grad, module.weight.grad = None, None
    module(x).sum().backward()
    torch.testing.assert_close(grads[0], x.grad)
    torch.testing.assert_close(grads[1], module.weight.grad)
    assert "inductor_rmsnorm" not in recorder.graph_after
    (candidate,) = inductor_rmsnorm.report()
    assert "saved for backward" in candidate.reason


class TestResidualAdd(expecttest.TestCase):
    def test_add_and_norm_become_one_fused_op(self):
        module = randomised(DecoderLayerTail(LlamaRMSNorm(512)), torch.bfloat16)
        x, residual = (torch.randn(4, 512, dtype=torch.bfloat16) for _ in range(2))
        recorder = RecordingPass()
        with torch.no_grad():
            output = torch.compile(module, options={"post_grad_custom_post_pass": recorder})(x, residual)
            torch._dynamo.reset()
            reference = torch.compile(module)(x, residual)
        self.assertExpectedInline(recorder.graph_after, """\
v0 = inductor_rmsnorm.fused_add_rms_norm.default(bf16[4, 512], bf16[4, 512], bf16[512], 1e-06, 'llama_single_rounding')
v1 = getitem(v0, 0)
v2 = getitem(v0, 1)
return [v1, v2]""")
        self.assertEqual([(c.search, c.residual, c.kernel) for c in inductor_rmsnorm.report()],
                         [("hf_llama", "fused_add", "cta")])
        self.assertIn("hf_llama after a residual add hidden=512 bfloat16", str(inductor_rmsnorm.report()))
        self.assertTrue(ulp_difference(output[0], reference[0]).within())
        self.assertTrue(torch.equal(output[1], reference[1]))

    def test_a_sum_used_only_by_the_norm(self):
        module = randomised(LlamaRMSNorm(256), torch.float16)
        x, residual = (torch.randn(3, 256, dtype=torch.float16) for _ in range(2))
        recorder = RecordingPass()
        with torch.no_grad():
            torch.compile(lambda a, b: module(a + b), options={"post_grad_custom_post_pass": recorder})(x, residual)
        self.assertIn("inductor_rmsnorm.fused_add_rms_norm.default(fp16[3, 256], fp16[3, 256], fp16[256]",
                      recorder.graph_after)


class TestRowNarrowing(expecttest.TestCase):
    """A norm read only through a slice of rows (the last token, for the logits) runs on those rows alone."""

    def test_the_last_token_after_the_residual_add(self):
        norm = randomised(LlamaRMSNorm(256), torch.bfloat16)
        x, residual = (torch.randn(2, 9, 256, dtype=torch.bfloat16) for _ in range(2))
        output, recorder = compile_with(lambda a, b: norm(a + b)[:, -1:], x, residual)
        self.assertExpectedInline(recorder.graph_after, """\
v0 = aten.slice.Tensor(bf16[2, 9, 256], 1, -1, 9223372036854775807, 1)
v1 = aten.slice.Tensor(bf16[2, 9, 256], 1, -1, 9223372036854775807, 1)
v2 = inductor_rmsnorm.fused_add_rms_norm.default(v0, v1, bf16[256], 1e-06, 'llama_single_rounding')
v3 = getitem(v2, 0)
return [v3]""")
        self.assertIn("replaced (warp kernel, on the 2 of 18 rows a slice keeps)", str(inductor_rmsnorm.report()))
        every_row, _ = torch.ops.inductor_rmsnorm.fused_add_rms_norm(x, residual, norm.weight, 1e-6,
                                                                      "llama_single_rounding")
        self.assertTrue(torch.equal(output, every_row[:, -1:]))  # the op's bits on every row, then sliced

    def test_a_plain_norm_of_two_dimensional_rows(self):
        norm = randomised(LlamaRMSNorm(256), torch.float16)
        x = torch.randn(18, 256, dtype=torch.float16)
        output, recorder = compile_with(lambda a: norm(a)[-4::2], x)
        self.assertExpectedInline(recorder.graph_after, """\
v0 = aten.slice.Tensor(fp16[18, 256], 0, -4, 9223372036854775807, 2)
v1 = inductor_rmsnorm.rms_norm.default(v0, fp16[256], 1e-06, 'llama_single_rounding')
return [v1]""")
        self.assertIn("on the 2 of 18 rows a slice keeps", str(inductor_rmsnorm.report()))
        every_row = torch.ops.inductor_rmsnorm.rms_norm(x, norm.weight, 1e-6, "llama_single_rounding")
        self.assertTrue(torch.equal(output, every_row[-4::2]))

    def test_the_op_called_in_the_model_is_narrowed_and_not_reported(self):
        # no candidate of the pass's own: the report stays empty, and the op still runs on the kept rows
        weight = torch.randn(256, dtype=torch.bfloat16)
        x = torch.randn(6, 256, dtype=torch.bfloat16)
        output, recorder = compile_with(lambda a: torch.ops.inductor_rmsnorm.rms_norm(a, weight, 1e-6, "torch")[-1:], x)
        self.assertExpectedInline(recorder.graph_after, """\
v0 = aten.slice.Tensor(bf16[6, 256], 0, -1, 9223372036854775807, 1)
v1 = inductor_rmsnorm.rms_norm.default(v0, bf16[256], 1e-06, 'torch')
return [v1]""")
        self.assertEqual(list(inductor_rmsnorm.report()), [])
        self.assertTrue(torch.equal(output, torch.ops.inductor_rmsnorm.rms_norm(x, weight, 1e-6, "torch")[-1:]))


def test_a_slice_of_symbolic_rows_is_narrowed_in_a_dynamic_compile():
    """dynamic=True: symbolic row counts, and eps a graph input (the op's eps_tensor overload)."""
    norm = randomised(LlamaRMSNorm(256), torch.bfloat16)
    recorder = RecordingPass(policy="always")
    compiled = torch.compile(lambda a, b: norm(a + b)[:, -1:], dynamic=True,
                             options={"post_grad_custom_post_pass": recorder})
    with torch.no_grad():
        for tokens in (3, 5, 9):  # one compile serves them all
            x, residual = (torch.randn(2, tokens, 256, dtype=torch.bfloat16) for _ in range(2))
            every_row, _ = torch.ops.inductor_rmsnorm.fused_add_rms_norm(x, residual, norm.weight, 1e-6,
                                                                          "llama_single_rounding")
            assert torch.equal(compiled(x, residual), every_row[:, -1:])
    assert "inductor_rmsnorm.fused_add_rms_norm.eps_tensor(v" in recorder.graph_after, recorder.graph_after
    (candidate,) = inductor_rmsnorm.report()
    assert candidate.rows_kept is not None and candidate.rows_kept.endswith(" rows")


@pytest.mark.parametrize("tail", [
    lambda y, s: (y[:, -1:], s),  # the sum is read in full
    lambda y, s: y[..., :128],  # a slice of the hidden dimension
    lambda y, s: (y[:, -1:], y[:, :1]),  # two different slices
    lambda y, s: (y[:, -1:], y.sum()),  # another consumer reads every row
], ids=["sum read", "hidden slice", "two slices", "another consumer"])
def test_norms_whose_rows_are_all_needed_run_on_every_row(tail):
    norm = randomised(LlamaRMSNorm(256), torch.bfloat16)
    x, residual = (torch.randn(2, 9, 256, dtype=torch.bfloat16) for _ in range(2))

    def layer_tail(a, b):
        s = a + b
        return tail(norm(s), s)

    outputs, recorder = compile_with(layer_tail, x, residual, policy="always")
    graph = recorder.graph_after
    assert "fused_add_rms_norm.default(bf16[2, 9, 256], bf16[2, 9, 256], bf16[256]" in graph, graph
    (candidate,) = inductor_rmsnorm.report()
    assert candidate.replaced and candidate.rows_kept is None
    y, s = torch.ops.inductor_rmsnorm.fused_add_rms_norm(x, residual, norm.weight, 1e-6, "llama_single_rounding")
    for output, expected in zip(torch.utils._pytree.tree_leaves(outputs), torch.utils._pytree.tree_leaves(tail(y, s))):
        assert torch.equal(output, expected) if output.dim() else torch.allclose(output, expected)


def test_auto_policy_leaves_a_norm_after_another_pointwise_op():
    module = randomised(LlamaRMSNorm(512), torch.bfloat16)
    x = torch.randn(4, 512, dtype=torch.bfloat16)
    with torch.no_grad():
        torch.compile(lambda a: module(torch.nn.functional.silu(a)), options=inductor_rmsnorm.compile_options())(x)
        torch._dynamo.reset()
        (candidate,) = inductor_rmsnorm.report(clear=True)
        assert candidate.reason.startswith("its input comes from ")
        assert candidate.reason.endswith(", which Inductor fuses into its own norm kernel")
        output = torch.compile(lambda a: module(torch.nn.functional.silu(a)),
                               options=inductor_rmsnorm.compile_options(policy="always"))(x)
        (candidate,) = inductor_rmsnorm.report()
        # The op reads what the graph holds. torch 2.13 keeps silu's bf16 output: the op reads it rounded, as eager
        # does, where Inductor's kernel keeps it fp32 (a quarter of the elements then 1 ulp apart). torch 2.8-2.10
        # fold silu's casts: the norm matched is float32's, without its weight, on silu's fp32 output.
        silu = torch.nn.functional.silu(x if candidate.dtype == "bfloat16" else x.float())
        expected = rms_norm_reference(silu, module.weight, 1e-6, "llama_single_rounding").to(torch.bfloat16)
    assert candidate.replaced
    assert ulp_difference(output, expected).within()


@pytest.mark.parametrize("rows, cudagraphs, launch_bound", [
    (1, False, True), (31, False, True), (32, False, False), (1, True, False)])
def test_auto_policy_leaves_few_rows_on_a_gpu_without_cuda_graphs_to_inductor(rows, cudagraphs, launch_bound):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():  # a GPU tensor as the pass sees it, without a GPU
        x = torch.empty(rows, 1, 4096, device="cuda", dtype=torch.bfloat16)
    with inductor_config.patch({"triton.cudagraphs": cudagraphs}):
        reason = inductor_rmsnorm.inductor_pass._launch_bound_reason(x)
    expected = (f"{rows} rows without CUDA graphs: launch-bound, where the op's call gains nothing over "
                "Inductor's own kernel")
    assert reason == (expected if launch_bound else None)
    assert inductor_rmsnorm.inductor_pass._launch_bound_reason(torch.empty(1, 4096)) is None  # the CPU: no launches


def test_auto_policy_leaves_norms_of_embeddings_even_when_they_are_needed_again():
    """Inductor gathers embedding rows inside each kernel that reads them: a norm of the embeddings, and a residual
    add onto them, stay with Inductor even though the embeddings are the residual too."""
    class FirstLayer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.norm, self.next_norm = torch.nn.Embedding(64, 256), LlamaRMSNorm(256), LlamaRMSNorm(256)
            self.projection = torch.nn.Linear(256, 256)

        def forward(self, ids):
            embeddings = self.embed(ids)
            s = embeddings + self.projection(self.norm(embeddings))
            return self.next_norm(s), s

    module = randomised(FirstLayer())
    ids = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        torch.compile(module, options=inductor_rmsnorm.compile_options())(ids)
        torch._dynamo.reset()
        reasons = [c.reason for c in inductor_rmsnorm.report(clear=True).left_alone]
        assert reasons == ["its input is an embedding lookup, which Inductor gathers inside its own norm kernel"] * 2
        torch.compile(module, options=inductor_rmsnorm.compile_options(policy="always"))(ids)
    assert len(inductor_rmsnorm.report().replaced) == 2


def test_uuid_follows_the_options():
    assert RMSNormPass().uuid() == RMSNormPass().uuid()
    assert RMSNormPass(policy="always").uuid() != RMSNormPass().uuid()
    assert RMSNormPass(on_unsupported="error").uuid() != RMSNormPass().uuid()
    assert RMSNormPass(previous=lambda graph: None).uuid() is None  # a plain function: the cache is bypassed
    with pytest.raises(ValueError, match="policy='sometimes'"):
        RMSNormPass(policy="sometimes")


class CountingPass(torch._inductor.custom_graph_pass.CustomGraphPass):
    def __init__(self):
        self.calls = 0

    def __call__(self, graph):
        self.calls += 1

    def uuid(self):
        return b"counting"


def test_a_user_pass_still_runs_and_enable_disable_restore_it():
    user_pass = CountingPass()
    inductor_config.post_grad_custom_post_pass = user_pass
    inductor_rmsnorm.enable(policy="always")
    installed = inductor_config.post_grad_custom_post_pass
    assert isinstance(installed, RMSNormPass) and installed.previous is user_pass
    assert installed.uuid() != RMSNormPass(policy="always").uuid()  # the user's pass is part of the key
    with torch.no_grad():
        torch.compile(randomised(LlamaRMSNorm(256)))(torch.randn(2, 256))
    assert user_pass.calls == 1 and len(inductor_rmsnorm.report().replaced) == 1
    inductor_rmsnorm.enable()  # enabling again replaces ours, keeps the user's
    assert inductor_config.post_grad_custom_post_pass.previous is user_pass
    inductor_rmsnorm.disable()
    assert inductor_config.post_grad_custom_post_pass is user_pass
    with inductor_rmsnorm.enabled():
        assert isinstance(inductor_config.post_grad_custom_post_pass, RMSNormPass)
    assert inductor_config.post_grad_custom_post_pass is user_pass


def test_report_prints_what_happened():
    compile_with(randomised(LlamaRMSNorm(256), torch.bfloat16), torch.randn(2, 256, dtype=torch.bfloat16),
                 policy="always")
    compile_with(randomised(LlamaRMSNorm(2882), torch.bfloat16), torch.randn(2, 2882, dtype=torch.bfloat16))
    text = str(inductor_rmsnorm.report())
    assert text.splitlines()[0] == "inductor_rmsnorm: 1 replaced, 1 left alone"
    assert "hf_llama hidden=256 bfloat16 weight bfloat16: replaced (warp kernel)" in text
    assert "hidden=2882 bfloat16 weight bfloat16: left alone: hidden size 2882 has no kernel" in text


def test_auto_policy_leaves_a_head_norm_that_feeds_rotary_embedding():
    class RotaryAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = torch.nn.Linear(256, 256, bias=False)
            self.q_norm = LlamaRMSNorm(64)

        def forward(self, x, cos, sin):
            q = self.q_norm(self.q_proj(x).view(*x.shape[:-1], 4, 64))
            rotated = torch.cat((-q[..., 32:], q[..., :32]), dim=-1)
            return q * cos + rotated * sin

    module = randomised(RotaryAttention(), torch.bfloat16)
    x = torch.randn(2, 3, 256, dtype=torch.bfloat16)
    cos, sin = (torch.randn(3, 1, 64, dtype=torch.bfloat16) for _ in range(2))
    with torch.no_grad():
        torch.compile(module, options=inductor_rmsnorm.compile_options())(x, cos, sin)
    (candidate,) = inductor_rmsnorm.report()
    assert candidate.reason.startswith("its output feeds ") and "aten.mul.Tensor" in candidate.reason


def test_compile_options_carry_a_compile_mode_torch_compile_takes_only_without_options():
    options = inductor_rmsnorm.compile_options(mode="reduce-overhead")
    assert options["triton.cudagraphs"] is True
    assert isinstance(options["post_grad_custom_post_pass"], RMSNormPass)
    assert set(inductor_rmsnorm.compile_options()) == {"post_grad_custom_post_pass"}
    with pytest.raises(RuntimeError, match="Unrecognized mode=fastest"):
        inductor_rmsnorm.compile_options(mode="fastest")


def test_fx_graph_cache_stays_on_and_keys_on_the_options(monkeypatch, tmp_path):
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    module = randomised(LlamaRMSNorm(256), torch.bfloat16)
    x = torch.randn(4, 256, dtype=torch.bfloat16)
    counters.clear()
    outcomes = []
    with inductor_config.patch(fx_graph_cache=True):
        for options in ({"policy": "always"}, {"policy": "always"}, {"policy": "always", "on_unsupported": "warn"}):
            torch._dynamo.reset()
            with torch.no_grad():
                torch.compile(module, options=inductor_rmsnorm.compile_options(**options))(x)
            outcomes.append((counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"],
                             len(inductor_rmsnorm.report(clear=True))))
    # hits, misses, candidates seen: compiled; served from the cache (no pass ran); other options: compiled again
    assert outcomes == [(0, 1, 1), (1, 1, 0), (1, 2, 1)]
    assert counters["inductor"]["fxgraph_cache_bypass"] == 0
