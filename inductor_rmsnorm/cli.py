"""Command line: `python -m inductor_rmsnorm demo | info | build ...`.

  demo   the main job: a small decoder compiled with the pass, what matched, a check against eager, and on a GPU
         the speed-up over Inductor's default code
  info   the environment: torch, CUDA, GPUs, nvcc, the kernel cache and what it holds, the supported sizes
  build  prebuild kernel instances into the cache, with progress
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import itertools
import os
import time

import torch

from . import demo, dispatch, jit

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


_WEIGHTS = {"same": lambda input_dtype: input_dtype, "float32": lambda _: torch.float32, "none": lambda _: None}


def _keys(args: argparse.Namespace) -> list[jit.KernelKey]:
    """The instances the arguments ask for, saying once per size and dtype why one has no kernel."""
    keys: list[jit.KernelKey] = []
    for hidden, dtype_name in itertools.product(args.hidden, args.dtype):
        input_dtype = _DTYPES[dtype_name]
        for weight_dtype in dict.fromkeys(_WEIGHTS[choice](input_dtype) for choice in args.weight):
            reason = dispatch.unsupported_reason(hidden, input_dtype, weight_dtype)
            if reason is not None:
                print(f"skipped: {reason}")
                continue
            for formulation, variant in itertools.product(
                args.formulation if weight_dtype is not None else ["torch"], args.variant
            ):
                key = jit.KernelKey.create(hidden, input_dtype, weight_dtype, formulation, variant == "fused-add")
                if key not in keys:  # formulations can share an instance
                    keys.append(key)
    return keys


def _build_command(args: argparse.Namespace) -> int:
    if args.arch:
        arch = args.arch
    elif torch.cuda.is_available():
        arch = jit.arch_for_device(torch.cuda.current_device())
    else:
        arch = "sm_90"
        print("no CUDA GPU here: building for sm_90 (H100/H200; choose with --arch); loading and running skipped")
    keys = _keys(args)
    if not keys:
        print("nothing to build")
        return 1
    print(f"building {len(keys)} instance(s) for {arch} into {jit.build_dir(arch)}", flush=True)
    start = time.perf_counter()

    def progress(index, total, key, seconds, error):
        status = f"FAILED\n{error}" if error else f"ready in {seconds:.1f} s"
        print(f"[{index}/{total}] {key.name}: {status}", flush=True)

    results = jit.build_many(keys, arch, args.jobs, progress)
    failures = sum(error is not None for _, error in results)
    print(f"{len(keys) - failures} of {len(keys)} ready in {time.perf_counter() - start:.1f} s")
    return 1 if failures else 0


def _info_command(args: argparse.Namespace) -> int:
    try:
        version = importlib.metadata.version("inductor-rmsnorm")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed (source checkout)"
    print(f"inductor-rmsnorm {version}")
    print(f"torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none (CPU build)'}")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton: not installed (Inductor needs it to compile for GPUs)")
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            print(f"GPU {index}: {torch.cuda.get_device_name(index)} ({jit.arch_for_device(index)})")
    else:
        print("GPU: none visible (the op runs its CPU reference; kernels need a CUDA GPU)")
    try:
        nvcc = jit.nvcc_path()
        release = next((line for line in jit.nvcc_version(nvcc).splitlines() if "release" in line), "?")
        print(f"nvcc: {nvcc} ({release.strip()})")
    except jit.BuildError as error:
        print(f"nvcc: {error}")
    print(f"kernel cache: {jit.cache_dir()} (${jit.CACHE_DIR_ENV} overrides)")
    if os.environ.get(jit.TUNING_ENV):
        print(f"tuning switches (${jit.TUNING_ENV}): {os.environ[jit.TUNING_ENV]}")
    libraries = jit.cached_instances()
    by_directory = collections.Counter(library.parent.name for library in libraries)
    for directory, count in sorted(by_directory.items()):
        print(f"  {directory}: {count} instance(s)")
        if args.verbose:
            for library in libraries:
                if library.parent.name == directory:
                    print(f"    {library.stem}")
    if not libraries:
        print("  empty (instances are built on first use, or with `python -m inductor_rmsnorm build`)")
    print(f"hidden sizes with a kernel: {dispatch.SUPPORTED_SIZES}")
    names = ", ".join(str(d).removeprefix("torch.") for d in dispatch.INPUT_DTYPES)
    print(f"input dtypes: {names}; weight: the input's dtype, float32, or none")
    print(f"formulations: {', '.join(dispatch.FORMULATIONS)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inductor_rmsnorm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="the main job: a small decoder compiled with the pass, checked and timed")
    info = commands.add_parser("info", help="the environment, the kernel cache and the supported sizes")
    info.add_argument("--verbose", action="store_true", help="list every cached instance")
    build = commands.add_parser("build", help="prebuild kernel instances into the on-disk cache")
    build.add_argument("--hidden", type=int, nargs="+", required=True, help="hidden sizes")
    build.add_argument("--dtype", nargs="+", choices=sorted(_DTYPES), default=["bfloat16"], help="input dtypes")
    build.add_argument(
        "--weight", nargs="+", choices=["same", "float32", "none"], default=["same"],
        help="weight dtype: the input's, float32, or no weight (default: same)",
    )
    build.add_argument(
        "--formulation", nargs="+", choices=dispatch.FORMULATIONS, default=list(dispatch.FORMULATIONS),
        help="formulations to build (default: all)",
    )
    build.add_argument(
        "--variant", nargs="+", choices=["plain", "fused-add"], default=["plain", "fused-add"],
        help="plain norm and/or the residual-add variant the Inductor pass uses in decoder layers (default: both)",
    )
    build.add_argument("--arch", help="GPU architecture, e.g. sm_90 (default: the current GPU's)")
    build.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)), help="parallel nvcc processes")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.run()
    if args.command == "info":
        return _info_command(args)
    try:
        return _build_command(args)
    except jit.BuildError as error:
        print(f"build skipped: {error}")
        return 1
