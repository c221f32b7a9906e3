"""Build kernel instances with nvcc on first use, cache them on disk, load them with ctypes.

An instance is one kernel class at one hidden size, dtype triple and formulation, compiled for one GPU
architecture into a shared library that exports a C launcher. The sources include no torch headers, so a
cold build takes seconds and a cached one loads in milliseconds.

Cache layout: ``<cache dir>/<arch>-<key>/<instance>.so`` plus ``<instance>.sha256`` (written last, so a
library without a matching digest is a partial or corrupt entry and is rebuilt) and ``<instance>.log``
(nvcc's output). ``key`` hashes the sources, the flags, the nvcc and torch versions.

Shared objects are loaded only from directories that belong to this user (or root) and that no one else can
write to; the cache's directories are created private (0700). A cache that is unsafe, cannot be created or
is read-only where a build is needed is replaced, with one warning, by a private directory under the system's
temporary directory.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch

from . import dispatch

logger = logging.getLogger("inductor_rmsnorm")

CACHE_DIR_ENV = "INDUCTOR_RMSNORM_CACHE_DIR"
NVCC_ENV = "INDUCTOR_RMSNORM_NVCC"
# Tuning switches for every instance this process builds or loads, e.g. "PDL=0,STREAMING=1": the
# INDUCTOR_RMSNORM_* macros of csrc/rmsnorm.cuh without the prefix, for experiments on whole models.
TUNING_ENV = "INDUCTOR_RMSNORM_TUNING"

# -fvisibility=hidden: a library exports its C entry points alone (csrc/entry.cu says why)
NVCC_FLAGS = ("-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC,-fvisibility=hidden", "--ptxas-options=-v")

_CXX_TYPES = {torch.bfloat16: "__nv_bfloat16", torch.float16: "__half", torch.float32: "float"}
_SHORT_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
_KERNEL_CLASSES = {"warp": "WarpRmsNorm", "cta": "CtaRmsNorm", "wide": "WideRmsNorm"}
# llama_single_rounding is the torch math with the Llama output dtype: the key's output type carries the difference.
_FORMULATION_ENUMS = {"torch": "kTorch", "llama": "kLlama", "gemma": "kGemma", "llama_single_rounding": "kTorch"}


class BuildError(RuntimeError):
    """nvcc is missing or failed; the message names the command and the log file."""


def csrc_dir() -> Path:
    """The CUDA sources: shipped inside the package in a wheel, beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "csrc", here.parent / "csrc"):
        if (candidate / "rmsnorm.cuh").is_file():
            return candidate
    raise BuildError(f"the CUDA sources (rmsnorm.cuh) are neither in {here / 'csrc'} nor in {here.parent / 'csrc'}")


def cache_dir() -> Path:
    """Per-user cache directory; ${INDUCTOR_RMSNORM_CACHE_DIR} overrides it."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "inductor_rmsnorm"


@dataclasses.dataclass(frozen=True)
class KernelKey:
    """Everything that selects one compiled kernel (the template key of the C++ struct)."""

    kernel_class: str
    hidden_size: int
    input_dtype: torch.dtype
    weight_dtype: torch.dtype | None
    formulation: str
    fused_add: bool = False  # the variant that adds a residual first and returns the sum too

    @staticmethod
    def create(hidden_size: int, input_dtype: torch.dtype, weight_dtype: torch.dtype | None, formulation: str,
               fused_add: bool = False):
        reason = dispatch.unsupported_reason(hidden_size, input_dtype, weight_dtype)
        if reason is not None:
            raise ValueError(reason)
        if formulation not in dispatch.FORMULATIONS:
            raise ValueError(f"formulation {formulation!r} is not one of {dispatch.FORMULATIONS}")
        if weight_dtype is None:
            formulation = "torch"  # without a weight every formulation is the same computation
        elif formulation == "llama_single_rounding" and weight_dtype == input_dtype:
            formulation = "torch"  # the same computation and output dtype
        kernel_class = dispatch.kernel_for(hidden_size, input_dtype, fused_add=fused_add)
        return KernelKey(kernel_class, hidden_size, input_dtype, weight_dtype, formulation, fused_add)

    @property
    def output_dtype(self) -> torch.dtype:
        return dispatch.output_dtype(self.input_dtype, self.weight_dtype, self.formulation)

    @property
    def name(self) -> str:
        weight = "none" if self.weight_dtype is None else _SHORT_NAMES[self.weight_dtype]
        return (
            f"{self.kernel_class}_h{self.hidden_size}_{_SHORT_NAMES[self.input_dtype]}_w{weight}"
            f"_o{_SHORT_NAMES[self.output_dtype]}_{self.formulation}{'_add' if self.fused_add else ''}"
        )

    def template_arguments(self) -> dict[str, str]:
        """The C++ template key, piece by piece (entry.cu's macros)."""
        return {
            "KERNEL_CLASS": _KERNEL_CLASSES[self.kernel_class],
            "HIDDEN": str(self.hidden_size),
            "INPUT_T": _CXX_TYPES[self.input_dtype],
            "WEIGHT_T": "NoWeight" if self.weight_dtype is None else _CXX_TYPES[self.weight_dtype],
            "OUTPUT_T": _CXX_TYPES[self.output_dtype],
            "FORMULATION": _FORMULATION_ENUMS[self.formulation],
            "FUSED_ADD": "1" if self.fused_add else "0",
        }

    def defines(self) -> list[str]:
        return [f"-D{name}={value}" for name, value in self.template_arguments().items()]

    def cxx_type(self) -> str:
        """The kernel struct's full C++ type, e.g. for explicit instantiation."""
        a = self.template_arguments()
        weight = "inductor_rmsnorm::NoWeight" if self.weight_dtype is None else a["WEIGHT_T"]
        return (
            f"inductor_rmsnorm::{a['KERNEL_CLASS']}<{a['HIDDEN']}, {a['INPUT_T']}, {weight}, {a['OUTPUT_T']}, "
            f"inductor_rmsnorm::Formulation::{a['FORMULATION']}, {'true' if self.fused_add else 'false'}>"
        )


def arch_for_device(device: torch.device | int) -> str:
    """The GPU's own architecture, e.g. "sm_90" on H100/H200."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def nvcc_path() -> str:
    explicit = os.environ.get(NVCC_ENV)
    if explicit:
        return explicit
    found = shutil.which("nvcc")
    if found:
        return found
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = Path(cuda_home) / "bin" / "nvcc"
    if candidate.is_file():
        return str(candidate)
    raise BuildError(
        f"nvcc not found (looked at ${NVCC_ENV}, PATH, $CUDA_HOME/bin): install the CUDA toolkit or point "
        f"{NVCC_ENV} at nvcc"
    )


@functools.lru_cache(maxsize=None)
def nvcc_version(nvcc: str) -> str:
    try:
        return subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise BuildError(f"`{nvcc} --version` failed: {error}") from error


@functools.lru_cache(maxsize=None)
def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(csrc_dir().glob("*")):
        if path.suffix in (".cuh", ".cu", ".h"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def tuning_switches() -> tuple[str, ...]:
    """The tuning switches csrc/rmsnorm.cuh defines: its INDUCTOR_RMSNORM_* macros without the prefix."""
    header = (csrc_dir() / "rmsnorm.cuh").read_text()
    return tuple(sorted(set(re.findall(r"^#ifndef INDUCTOR_RMSNORM_(\w+)$", header, re.MULTILINE))))


def tuning_flags(switches: str) -> tuple[str, ...]:
    """nvcc flags for comma-separated tuning switches "NAME=INTEGER" (see `tuning_switches`); ValueError names
    a malformed or unknown one."""
    flags = []
    for switch in filter(None, (part.strip() for part in switches.split(","))):
        name, _, value = switch.partition("=")
        if not (name.isidentifier() and value.lstrip("-").isdigit()):
            raise ValueError(f"tuning switch {switch!r} is not NAME=INTEGER (e.g. PDL=0)")
        if name not in tuning_switches():
            raise ValueError(f"tuning switch {name} is not one of {', '.join(tuning_switches())}")
        flags.append(f"-DINDUCTOR_RMSNORM_{name}={value}")
    return tuple(flags)


def environment_tuning_flags() -> tuple[str, ...]:
    """The flags of $INDUCTOR_RMSNORM_TUNING (none when it is unset); BuildError when it is malformed."""
    try:
        return tuning_flags(os.environ.get(TUNING_ENV, ""))
    except ValueError as error:
        raise BuildError(f"${TUNING_ENV}: {error}") from None


def build_dir(arch: str, extra_flags: tuple[str, ...] = ()) -> Path:
    """Where instances for `arch` built by this nvcc, these sources, flags and this torch live."""
    nvcc = nvcc_path()
    flags = " ".join(NVCC_FLAGS + extra_flags)
    key = hashlib.sha256(
        "\0".join([_sources_digest(), flags, arch, nvcc_version(nvcc), torch.__version__]).encode()
    ).hexdigest()[:16]
    return cache_dir() / f"{arch}-{key}"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_complete(library: Path, digest_file: Path) -> bool:
    try:
        return digest_file.read_text().strip() == _file_digest(library)
    except OSError:
        return False


def _compile(key: KernelKey, arch: str, extra_flags: tuple[str, ...], library: Path, log: Path) -> None:
    nvcc = nvcc_path()
    number = arch.removeprefix("sm_")
    with tempfile.NamedTemporaryFile(dir=library.parent, prefix=library.stem + ".", suffix=".tmp", delete=False) as tmp:
        partial = Path(tmp.name)
    command = [
        nvcc, *NVCC_FLAGS, *extra_flags, f"-gencode=arch=compute_{number},code=sm_{number}", *key.defines(),
        str(csrc_dir() / "entry.cu"), "-o", str(partial),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        log.write_text(" ".join(command) + "\n\n" + result.stdout + result.stderr)
        if result.returncode != 0:
            raise BuildError(
                f"building {key.name} for {arch} failed (exit {result.returncode}).\n"
                f"command: {' '.join(command)}\nlog: {log}\n{result.stderr[-2000:]}"
            )
        os.replace(partial, library)
    finally:
        partial.unlink(missing_ok=True)


def build(key: KernelKey, arch: str, extra_flags: tuple[str, ...] = ()) -> Path:
    """The shared library for `key` on `arch`, compiled first unless a complete one is cached. `extra_flags`
    (tuning experiments) go to nvcc and into the cache key.

    Safe across processes: builders of one instance take turns on a file lock, and the library is renamed into
    place before its digest is written, so readers never see a half-written entry as complete. Where the cache
    cannot be used (see the module's docstring) the instance is built in a private temporary directory.
    """
    directory = build_dir(arch, extra_flags)
    try:
        return _build_in(directory, key, arch, extra_flags)
    except _UnusableDirectory as problem:
        fallback = _fallback_root() / directory.name
        if directory.parent not in _warned_roots:
            _warned_roots.add(directory.parent)
            logger.warning("inductor_rmsnorm: the kernel cache %s cannot be used (%s); building in %s instead",
                           directory.parent, problem, fallback.parent)
    try:
        return _build_in(fallback, key, arch, extra_flags)
    except _UnusableDirectory as problem:
        raise BuildError(f"neither the kernel cache {directory.parent} nor {fallback.parent} can be used: "
                         f"{problem}; point ${CACHE_DIR_ENV} at a private directory") from None


class _UnusableDirectory(Exception):
    """A cache directory that must not be used, or cannot be, for this build."""


_warned_roots: set[Path] = set()


def _fallback_root() -> Path:
    return Path(tempfile.gettempdir()) / f"inductor_rmsnorm-{os.getuid()}"


def _unsafe_reason(directory: Path) -> str | None:
    """Why shared objects in `directory` must not be loaded, or None: it must belong to this user (or root)
    and be writable by no one else."""
    status = directory.stat()
    if status.st_uid not in (os.getuid(), 0):
        return f"{directory} belongs to another user (uid {status.st_uid})"
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{directory} is writable by other users (mode {stat.S_IMODE(status.st_mode):o})"
    return None


def _build_in(directory: Path, key: KernelKey, arch: str, extra_flags: tuple[str, ...]) -> Path:
    try:
        for private in (directory.parent, directory):  # the cache root, then the instance directory
            private.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise _UnusableDirectory(f"cannot create {error.filename}: {error.strerror}") from None
    for private in (directory.parent, directory):
        reason = _unsafe_reason(private)
        if reason is not None:
            raise _UnusableDirectory(reason)
    library = directory / f"{key.name}.so"
    digest_file = directory / f"{key.name}.sha256"
    if _is_complete(library, digest_file):
        return library
    try:
        lock = open(directory / f"{key.name}.lock", "w")
    except OSError as error:
        raise _UnusableDirectory(f"{directory} is not writable: {error.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_complete(library, digest_file):  # another process may have built it while we waited
            digest_file.unlink(missing_ok=True)
            _compile(key, arch, extra_flags, library, directory / f"{key.name}.log")
            digest_file.write_text(_file_digest(library))
    return library


def build_many(keys, arch: str, jobs: int, on_done=None) -> list[tuple[KernelKey, BuildError | None]]:
    """Build `keys` for `arch` with `jobs` nvcc processes at once; `on_done(index, total, key, seconds, error)`
    reports each as it finishes. Returns each key with its error (None when it built or was cached)."""
    flags = environment_tuning_flags()

    def timed(key):
        start = time.perf_counter()
        build(key, arch, flags)
        return time.perf_counter() - start

    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(timed, key): key for key in keys}
        for index, future in enumerate(concurrent.futures.as_completed(futures), 1):
            key, seconds, error = futures[future], None, None
            try:
                seconds = future.result()
            except BuildError as failure:
                error = failure
            results.append((key, error))
            if on_done is not None:
                on_done(index, len(keys), key, seconds, error)
    return results


class KernelInstance:
    """A loaded instance: `launch(...)` runs the kernel and returns a CUDA error code for `raise_error`."""

    def __init__(self, key: KernelKey, library: Path):
        self.key = key
        self.library = library
        # PyDLL: calls keep the GIL (a launch returns in microseconds, as torch's own ops do), which saves the
        # release and re-acquire, ~0.3 us of a small eager call measured on the CPU machine
        handle = ctypes.PyDLL(str(library))
        # Returns a CUDA error code, 0 on success; see csrc/entry.cu for the arguments.
        pointer, count, scalar = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
        if key.fused_add:
            self.launch = handle.inductor_rmsnorm_launch_fused_add
            self.launch.argtypes = [pointer] * 5 + [count] * 5 + [scalar, pointer, ctypes.c_int]
            self.launch_contiguous = handle.inductor_rmsnorm_launch_fused_add_contiguous
            self.launch_contiguous.argtypes = [pointer] * 5 + [count, scalar, pointer, ctypes.c_int]
        else:
            self.launch = handle.inductor_rmsnorm_launch
            self.launch.argtypes = [pointer] * 3 + [count] * 3 + [scalar, pointer, ctypes.c_int]
            # contiguous rows: each argument ctypes converts costs ~0.1-0.2 us on the eager hot path
            self.launch_contiguous = handle.inductor_rmsnorm_launch_contiguous
            self.launch_contiguous.argtypes = [pointer] * 3 + [count, scalar, pointer, ctypes.c_int]
        self.launch.restype = self.launch_contiguous.restype = ctypes.c_int
        self._error_string = handle.inductor_rmsnorm_error_string
        self._error_string.argtypes = [ctypes.c_int]
        self._error_string.restype = ctypes.c_char_p

    def raise_error(self, code: int):
        raise RuntimeError(f"inductor_rmsnorm kernel {self.key.name} failed: {self._error_string(code).decode()}")


_loaded: dict[tuple[KernelKey, str], KernelInstance] = {}
_loading = threading.Lock()


def load(key: KernelKey, arch: str) -> KernelInstance:
    """The instance for `key` on `arch` (with $INDUCTOR_RMSNORM_TUNING's switches, read on the first load of
    each instance), built if needed; a library that will not load is rebuilt once."""
    with _loading:
        instance = _loaded.get((key, arch))
        if instance is None:
            flags = environment_tuning_flags()
            library = build(key, arch, flags)
            try:
                instance = KernelInstance(key, library)
            except OSError:
                (library.parent / f"{key.name}.sha256").unlink(missing_ok=True)
                instance = KernelInstance(key, build(key, arch, flags))
            _loaded[(key, arch)] = instance
        return instance


def cached_instances(arch: str | None = None) -> list[Path]:
    """Complete libraries in the cache (for `arch`, or every architecture)."""
    root = cache_dir()
    if not root.is_dir():
        return []
    pattern = f"{arch}-*/*.so" if arch else "*/*.so"
    return sorted(p for p in root.glob(pattern) if _is_complete(p, p.with_suffix(".sha256")))
