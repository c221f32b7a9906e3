"""The JIT cache on the CPU: nvcc builds for sm_90 here, nothing is loaded onto a GPU."""

import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from inductor_rmsnorm import cli, jit

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None and not os.environ.get(jit.NVCC_ENV), reason="no nvcc")


def test_key_names_and_template_arguments():
    key = jit.KernelKey.create(4096, torch.bfloat16, torch.float32, "llama")
    assert key.name == "cta_h4096_bf16_wfp32_ofp32_llama"
    assert key.defines() == [
        "-DKERNEL_CLASS=CtaRmsNorm", "-DHIDDEN=4096", "-DINPUT_T=__nv_bfloat16", "-DWEIGHT_T=float",
        "-DOUTPUT_T=float", "-DFORMULATION=kLlama", "-DFUSED_ADD=0",
    ]
    fused = jit.KernelKey.create(4096, torch.bfloat16, torch.bfloat16, "llama", fused_add=True)
    assert fused.name == "cta_h4096_bf16_wbf16_obf16_llama_add" and "-DFUSED_ADD=1" in fused.defines()
    assert fused.cxx_type().endswith("inductor_rmsnorm::Formulation::kLlama, true>")
    no_weight = jit.KernelKey.create(128, torch.float16, None, "gemma")
    assert no_weight.name == "warp_h128_fp16_wnone_ofp16_torch"  # one instance serves every formulation
    wide = jit.KernelKey.create(16384, torch.float32, torch.float32, "gemma")
    assert wide.name == "wide_h16384_fp32_wfp32_ofp32_gemma" and "-DKERNEL_CLASS=WideRmsNorm" in wide.defines()


def test_key_rejects_what_no_kernel_serves():
    with pytest.raises(ValueError, match="hidden size 2882"):
        jit.KernelKey.create(2882, torch.bfloat16, None, "torch")
    with pytest.raises(ValueError, match="formulation 'rms'"):
        jit.KernelKey.create(512, torch.bfloat16, None, "rms")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path / "cache"))
    assert jit.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(jit.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit.cache_dir() == tmp_path / "xdg" / "inductor_rmsnorm"


def test_missing_nvcc_names_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(jit.NVCC_ENV, str(tmp_path / "no-such-nvcc"))
    key = jit.KernelKey.create(512, torch.bfloat16, None, "torch")
    with pytest.raises(jit.BuildError, match="no-such-nvcc"):
        jit.build(key, "sm_90")


@needs_nvcc
def test_build_caches_and_rebuilds_a_corrupt_entry(monkeypatch, tmp_path):
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path))
    key = jit.KernelKey.create(512, torch.bfloat16, torch.bfloat16, "llama")
    library = jit.build(key, "sm_90")
    assert library.is_file() and library.parent.parent == tmp_path
    assert "ptxas info" in library.with_suffix(".log").read_text()
    assert jit.cached_instances("sm_90") == [library]

    built_at = library.stat().st_mtime_ns
    start = time.perf_counter()
    assert jit.build(key, "sm_90") == library
    assert time.perf_counter() - start < 0.5 and library.stat().st_mtime_ns == built_at  # served from cache

    library.write_bytes(library.read_bytes()[:1000])  # what a killed copy could leave
    assert jit.cached_instances("sm_90") == []
    jit.build(key, "sm_90")
    assert jit.cached_instances("sm_90") == [library] and library.stat().st_size > 100_000


@needs_nvcc
def test_a_failed_build_names_the_command_and_the_log(monkeypatch, tmp_path):
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path))
    key = jit.KernelKey.create(512, torch.float32, None, "torch")
    with pytest.raises(jit.BuildError, match=r"(?s)failed.*command: .*nvcc.*log: .*\.log"):
        jit.build(key, "sm_1")
    assert list(tmp_path.glob("sm_1-*/*.so")) == []  # nothing half-built left behind as an instance


@needs_nvcc
def test_a_library_exports_its_entry_points_alone(monkeypatch, tmp_path):
    """Left visible, a kernel's launch facts (template statics) would be GNU unique symbols: one per process,
    shared by every library of the same kernel type loaded beside it (tuning variants of one instance)."""
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path))
    library = jit.build(jit.KernelKey.create(1280, torch.bfloat16, torch.bfloat16, "llama"), "sm_90")
    table = subprocess.run(["readelf", "--dyn-syms", "-W", str(library)], capture_output=True, text=True, check=True)
    # rows of "Num: Value Size Type Bind Vis Ndx Name"
    symbols = [line.split() for line in table.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row for row in symbols if row[4] == "UNIQUE"] == []
    ours = sorted(row[7] for row in symbols if len(row) > 7 and "inductor_rmsnorm" in row[7] and row[6] != "UND")
    assert ours == ["inductor_rmsnorm_error_string", "inductor_rmsnorm_launch", "inductor_rmsnorm_launch_contiguous"]


BUILD_IN_A_PROCESS = """
import sys, torch
from inductor_rmsnorm import cli, jit
compiled = []
original = jit._compile
jit._compile = lambda *args: (compiled.append(1), original(*args))
jit.build(jit.KernelKey.create(256, torch.float16, None, "torch"), "sm_90")
print(len(compiled))
"""


@needs_nvcc
def test_concurrent_builders_of_one_instance_build_it_once(tmp_path):
    env = dict(os.environ, **{jit.CACHE_DIR_ENV: str(tmp_path)})
    builders = [subprocess.Popen([sys.executable, "-c", BUILD_IN_A_PROCESS], env=env, stdout=subprocess.PIPE,
                                 text=True) for _ in range(3)]
    outputs = [builder.communicate(timeout=300)[0] for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0, 0]
    assert sum(int(output.strip().splitlines()[-1]) for output in outputs) == 1
    assert len(list(tmp_path.glob("sm_90-*/*.so"))) == 1


@needs_nvcc
def test_cli_builds_with_progress_and_names_what_it_skips(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path))
    status = cli.main(["build", "--hidden", "512", "2882", "--dtype", "bfloat16", "--formulation", "llama",
                       "--variant", "plain", "--arch", "sm_90", "--jobs", "2"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "skipped: hidden size 2882 has no kernel" in printed
    assert "[1/1] warp_h512_bf16_wbf16_obf16_llama: ready in" in printed
    assert "1 of 1 ready" in printed


def test_tuning_switches_become_nvcc_flags_and_malformed_ones_are_named(monkeypatch):
    assert jit.tuning_flags(" PDL=0, CTA_MAX_THREADS=512,STREAMING=-1 ") == (
        "-DINDUCTOR_RMSNORM_PDL=0", "-DINDUCTOR_RMSNORM_CTA_MAX_THREADS=512", "-DINDUCTOR_RMSNORM_STREAMING=-1")
    assert jit.tuning_flags("") == ()
    for malformed in ("PDL", "PDL=off", "PDL=0 -o/tmp/x", "=1"):
        with pytest.raises(ValueError, match="is not NAME=INTEGER"):
            jit.tuning_flags(malformed)
    with pytest.raises(ValueError, match="tuning switch PDF is not one of .*PDL"):
        jit.tuning_flags("PDF=0")  # a typo would otherwise build the defaults into a cache directory of its own
    monkeypatch.setenv(jit.TUNING_ENV, "PDL=0,STREAMING")
    with pytest.raises(jit.BuildError, match=r"\$INDUCTOR_RMSNORM_TUNING: tuning switch 'STREAMING'"):
        jit.environment_tuning_flags()


@needs_nvcc
def test_the_environments_tuning_switches_build_into_their_own_cache_directory(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(jit.TUNING_ENV, "PDL=0")
    assert cli.main(["build", "--hidden", "64", "--formulation", "torch", "--variant", "plain", "--arch", "sm_90"]) == 0
    (library,) = tmp_path.glob("sm_90-*/*.so")
    assert library.parent == jit.build_dir("sm_90", ("-DINDUCTOR_RMSNORM_PDL=0",)) != jit.build_dir("sm_90")
    assert "-DINDUCTOR_RMSNORM_PDL=0" in library.with_suffix(".log").read_text()  # the log names the command
    assert cli.main(["info"]) == 0
    assert "tuning switches ($INDUCTOR_RMSNORM_TUNING): PDL=0" in capsys.readouterr().out


def test_cli_with_nothing_to_build_fails(capsys):
    assert cli.main(["build", "--hidden", "100", "--arch", "sm_90"]) == 1
    assert "nothing to build" in capsys.readouterr().out


@pytest.fixture
def private_tmp(monkeypatch, tmp_path):
    """tempfile's directory (where an unusable cache falls back to) inside this test's tmp_path."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp / f"inductor_rmsnorm-{os.getuid()}"


@needs_nvcc
def test_cache_directories_are_created_private(monkeypatch, tmp_path):
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path / "cache"))
    previous = os.umask(0o002)  # a umask that would make directories group-writable
    try:
        library = jit.build(jit.KernelKey.create(512, torch.bfloat16, None, "torch"), "sm_90")
    finally:
        os.umask(previous)
    assert [stat.S_IMODE(d.stat().st_mode) for d in (tmp_path / "cache", library.parent)] == [0o700, 0o700]


@needs_nvcc
def test_a_cache_other_users_can_write_to_is_not_loaded_from(monkeypatch, tmp_path, private_tmp, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(shared))
    with caplog.at_level(logging.WARNING, logger="inductor_rmsnorm"):
        library = jit.build(jit.KernelKey.create(512, torch.bfloat16, None, "torch"), "sm_90")
    assert library.parent.parent == private_tmp and library.is_file()
    assert list(shared.rglob("*.so")) == []
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"the kernel cache {shared} cannot be used ({shared} is writable by other users (mode 777))" in warning
    assert f"building in {private_tmp} instead" in warning


@needs_nvcc
def test_a_cache_it_cannot_write_to_serves_what_it_holds_and_builds_the_rest_elsewhere(monkeypatch, tmp_path,
                                                                                      private_tmp, caplog):
    """A read-only cache (say, prebuilt into an image): complete entries load from it, a missing one is built in
    the private fallback directory with one warning. Root ignores permission bits, so the test makes the cache
    unwritable where a build writes first: a directory stands where the instance's lock file goes."""
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(tmp_path / "cache"))
    built = jit.KernelKey.create(512, torch.bfloat16, None, "torch")
    prebuilt = jit.build(built, "sm_90")
    missing = jit.KernelKey.create(1024, torch.bfloat16, None, "torch")
    (prebuilt.parent / f"{missing.name}.lock").mkdir()
    with caplog.at_level(logging.WARNING, logger="inductor_rmsnorm"):
        assert jit.build(built, "sm_90") == prebuilt
        assert not caplog.records
        library = jit.build(missing, "sm_90")
    assert library.parent.parent == private_tmp and library.is_file()
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"the kernel cache {tmp_path / 'cache'} cannot be used ({prebuilt.parent} is not writable" in warning


@needs_nvcc
def test_a_cache_that_cannot_be_created_falls_back(monkeypatch, tmp_path, private_tmp):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(blocker / "cache"))
    library = jit.build(jit.KernelKey.create(512, torch.bfloat16, None, "torch"), "sm_90")
    assert library.parent.parent == private_tmp


@needs_nvcc
@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_a_fallback_directory_someone_else_owns_is_refused(monkeypatch, tmp_path, private_tmp):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    private_tmp.mkdir(mode=0o700)
    os.chown(private_tmp, 12345, 12345)  # planted by another user before us
    monkeypatch.setenv(jit.CACHE_DIR_ENV, str(shared))
    with pytest.raises(jit.BuildError, match=rf"nor {private_tmp} can be used: {private_tmp} belongs to another user "
                                             r"\(uid 12345\); point \$INDUCTOR_RMSNORM_CACHE_DIR at a private"):
        jit.build(jit.KernelKey.create(512, torch.bfloat16, None, "torch"), "sm_90")
