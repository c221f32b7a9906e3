"""Hugging Face models built from small configs (no downloads), on the CPU: torch.compile with the pass matches
their RMSNorms (or says why it left one alone) and gives Inductor's logits; patch(model) gives eager's."""

import copy

import pytest
import torch
import transformers  # in the test extras
from torch._inductor import config as inductor_config

import inductor_rmsnorm

SMALL = dict(vocab_size=128, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2)

# family: (model class, config, replaced, left alone) for 2 layers under the default policy ("auto").
FAMILIES = {
    # per layer: the input norm and the post-attention norm after its residual add; then the final norm after
    # the last residual add. Layer 0's two norms read the embeddings, which Inductor gathers inside its own
    # norm kernels: they stay
    "llama": (transformers.LlamaForCausalLM, transformers.LlamaConfig(**SMALL), 3, 2),
    "mistral": (transformers.MistralForCausalLM, transformers.MistralConfig(**SMALL), 3, 2),
    # and per layer two q/k head norms, which feed rotary embedding: Inductor fuses them, so they stay
    "qwen3": (transformers.Qwen3ForCausalLM, transformers.Qwen3Config(**SMALL, head_dim=64), 3, 6),
    # sandwich norms: a norm feeding the residual add, and a norm of that sum fed by the first norm, fuse in
    # Inductor's kernels; layer 0's input norm and its first residual add read the (scaled) embeddings
    "gemma3": (transformers.Gemma3ForCausalLM,
               transformers.Gemma3TextConfig(**SMALL, head_dim=64, sliding_window=16), 0, 13),
    # post-norms (the norm's output feeds the residual add), full-width q/k norms before rotary embedding, and
    # the final norm after an add of a post-norm's output: all fuse in Inductor's kernels, so all stay
    "olmo2": (transformers.Olmo2ForCausalLM, transformers.Olmo2Config(**SMALL, pad_token_id=0), 0, 9),
}


@pytest.fixture(autouse=True)
def fresh_compiles():
    with inductor_config.patch(fx_graph_cache=False):  # every compile runs the pass (config.patch: see test_inductor_pass)
        torch._dynamo.reset()
        inductor_rmsnorm.report(clear=True)
        yield
        torch._dynamo.reset()


def build(family):
    model_class, config, _, _ = FAMILIES[family]
    torch.manual_seed(0)
    model = model_class(copy.deepcopy(config)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:  # norms start at their neutral weight: randomise, or a wrong formulation hides
                parameter.copy_(torch.randn_like(parameter) * 0.2 + (0.0 if family == "gemma3" else 1.0))
    return model


def split_by_dynamo(model, *args, **kwargs) -> str | None:
    """Why this torch's Dynamo splits `model` into several graphs (torch 2.8 with transformers 5.x: at each
    layer's cache), or None where it captures it whole. A piece's norms are judged on its own inputs (a layer's
    first norm reads a graph input, not the embeddings), so the counts in FAMILIES are a whole model's."""
    explanation = torch._dynamo.explain(model)(*args, **kwargs)
    torch._dynamo.reset()
    if explanation.graph_count == 1:
        return None
    reason = [line.strip() for line in explanation.break_reasons[0].reason.splitlines() if line.strip()]
    return (f"torch {torch.__version__} splits transformers {transformers.__version__}'s {type(model).__name__} "
            f"into {explanation.graph_count} graphs ({': '.join(reason[:2])})")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_compiled_model_with_the_pass(family):
    model = build(family)
    ids = torch.randint(0, 128, (2, 9))
    split = split_by_dynamo(model, ids)
    with torch.no_grad():
        eager = model(ids).logits
        reference = torch.compile(model)(ids).logits
        torch._dynamo.reset()
        logits = torch.compile(model, options=inductor_rmsnorm.compile_options())(ids).logits
    report = inductor_rmsnorm.report()
    assert all(c.reason for c in report.left_alone)
    torch.testing.assert_close(logits, reference)  # float32: reduction order only
    torch.testing.assert_close(logits, eager)
    if split:
        pytest.skip(f"logits checked; the counts are a whole model's: {split}")
    _, _, replaced, left_alone = FAMILIES[family]
    assert (len(report.replaced), len(report.left_alone)) == (replaced, left_alone), str(report)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_patched_model_gives_the_same_logits(family):
    model = build(family)
    norms = sum("RMSNorm" in type(m).__name__ for m in model.modules())
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        expected = model(ids).logits
        swapped = inductor_rmsnorm.patch(model)
        logits = model(ids).logits
    assert swapped == norms
    torch.testing.assert_close(logits, expected)


def test_the_final_norm_runs_on_the_tokens_whose_logits_are_kept():
    """`logits_to_keep=1` (what `generate` passes at prefill) keeps the last token's hidden state: the final norm
    runs on those 2 rows, not all 18; the layers' norms, whose every row is read, on all of them."""
    model = build("qwen3")
    ids = torch.randint(0, 128, (2, 9))
    split = split_by_dynamo(model, ids, logits_to_keep=1)
    with torch.no_grad():
        reference = torch.compile(model)(ids, logits_to_keep=1).logits
        torch._dynamo.reset()
        logits = torch.compile(model, options=inductor_rmsnorm.compile_options())(ids, logits_to_keep=1).logits
    assert logits.shape == (2, 1, 128)
    torch.testing.assert_close(logits, reference)
    if split:
        pytest.skip(f"logits checked; the norms replaced are a whole model's: {split}")
    assert [c.rows_kept for c in inductor_rmsnorm.report().replaced] == ["2 of 18 rows", None, None]
