"""The main command (`python -m inductor_rmsnorm demo`) and `info`, on whatever machine runs the tests."""

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest
import torch

import inductor_rmsnorm
from inductor_rmsnorm import cli, demo, jit

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None and not os.environ.get(jit.NVCC_ENV), reason="no nvcc")


@pytest.fixture(autouse=True)
def fresh_compiles():
    with torch._inductor.config.patch(fx_graph_cache=False):  # every compile runs the pass
        torch._dynamo.reset()
        yield
        torch._dynamo.reset()


def test_demo_matches_every_norm_checks_against_eager_and_times_only_on_a_gpu(capsys):
    on_gpu = torch.cuda.is_available()
    shape = demo.GPU_SHAPE if on_gpu else demo.CPU_SHAPE
    shape = dataclasses.replace(shape, layers=3)  # layer count shows in the number of matches
    assert demo.run(shape) == 0
    printed = capsys.readouterr().out
    report = inductor_rmsnorm.report()
    # after each of the layers' six residual adds a norm: the post-attention norm, the next layer's input norm,
    # the final norm (all fused); layer 0's input norm and its first residual add read the embeddings, which
    # Inductor gathers inside its own norm kernels, so they stay
    assert [(c.search, c.residual) for c in report.replaced] == [("hf_llama", "fused_add")] * 5
    assert [c.reason for c in report.left_alone] == [
        "its input is an embedding lookup, which Inductor gathers inside its own norm kernel"] * 2
    assert "inductor_rmsnorm: 5 replaced, 2 left alone" in printed
    assert ": match" in printed
    if on_gpu:
        assert "with the pass" in printed and "ms per forward" in printed
    else:
        assert "[5/5] timing needs a CUDA GPU: skipped" in printed
        assert "kernel builds skipped" in printed


def test_demo_fails_when_the_logits_do_not_match(monkeypatch, capsys):
    monkeypatch.setattr(demo, "relative_error", lambda actual, expected: 1.0)
    assert demo.run(demo.CPU_SHAPE) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_decoder_norms_are_the_hugging_face_llama_formulation():
    norm = demo.LlamaStyleRMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    expected = inductor_rmsnorm.rms_norm(x, norm.weight.detach().to(torch.bfloat16), 1e-5, formulation="llama")
    torch.testing.assert_close(norm.to(torch.bfloat16)(x), expected, rtol=0, atol=0)


@needs_nvcc
def test_info_lists_the_environment_and_the_cached_instances(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path))
    assert cli.main(["info"]) == 0
    assert "empty (instances are built on first use" in capsys.readouterr().out
    key = jit.KernelKey.create(512, torch.bfloat16, torch.bfloat16, "torch")
    library = jit.build(key, "sm_90")
    assert cli.main(["info", "--verbose"]) == 0
    printed = capsys.readouterr().out
    assert f"torch {torch.__version__}" in printed
    assert f"kernel cache: {tmp_path}" in printed
    assert f"  {library.parent.name}: 1 instance(s)\n    {key.name}\n" in printed
    assert "nvcc: " in printed and "release" in printed
    assert f"hidden sizes with a kernel: {inductor_rmsnorm.SUPPORTED_SIZES}" in printed
    assert ("GPU 0: " if torch.cuda.is_available() else "GPU: none visible") in printed


def test_module_entry_point_runs_info():
    result = subprocess.run([sys.executable, "-m", "inductor_rmsnorm", "info"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "formulations: torch, llama, gemma, llama_single_rounding" in result.stdout
