"""Whether the kernels compile to the same PTX as at an earlier commit (no GPU needed).

A GPU run tests the kernels of its commit. When the sources change later, this says which instances the change
left as they were, so that run still stands for them: each instance that `scripts/check_kernels.py` compiles
(its kernel classes, sizes, dtypes, weights, formulations, plain and fused), up to --max-hidden, is compiled to
PTX from REV's csrc/ and from the working tree's, and the two are compared without their comment lines (which
name the compiler and the source file).
Usage: python scripts/compare_ptx.py REV [--classes warp cta] [--max-hidden 8192] [--arch sm_90] [--jobs N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from check_kernels import keys_to_check

from inductor_rmsnorm import jit

REPO = Path(__file__).resolve().parents[1]


def sources_at(revision: str, into: Path) -> Path:
    """REV's csrc/, extracted under `into`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "csrc"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "csrc"


def ptx(key: jit.KernelKey, csrc: Path, arch: str) -> str | None:
    """The instance's PTX from these sources, without comment lines; None where they do not compile it."""
    command = [jit.nvcc_path(), "-ptx", "-O3", "-std=c++17", f"-arch={arch}", *key.defines(), f"-I{csrc}",
               str(csrc / "entry.cu"), "-o", "-"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith("//"))


def compare(key: jit.KernelKey, old_csrc: Path, arch: str) -> str | None:
    """None where the PTX is the same; otherwise how it differs."""
    new = ptx(key, jit.csrc_dir(), arch)
    if new is None:
        raise SystemExit(f"the working tree's sources do not compile {key.name}")
    old = ptx(key, old_csrc, arch)
    return None if old == new else "not compiled there" if old is None else "changed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision")
    parser.add_argument("--classes", nargs="+", default=["warp", "cta", "wide"], choices=["warp", "cta", "wide"])
    parser.add_argument("--max-hidden", type=int, default=65536)
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    groups = keys_to_check()
    keys = [key for name in args.classes for key in groups[name] if key.hidden_size <= args.max_hidden]
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        old_csrc = sources_at(args.revision, Path(tmp))
        differences = list(pool.map(lambda key: compare(key, old_csrc, args.arch), keys))
    changed = [(key.name, difference) for key, difference in zip(keys, differences) if difference is not None]
    print(f"{len(keys) - len(changed)} of {len(keys)} instances ({', '.join(args.classes)}; hidden up to "
          f"{args.max_hidden}) compile to the same {args.arch} PTX as at {args.revision}")
    for name, difference in changed:
        print(f"  {name}: {difference}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
