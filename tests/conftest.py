import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests import their helpers (modules.py) by name


@pytest.fixture(autouse=True)
def release_cached_gpu_memory():
    """`pytest -n 8` puts eight processes on one GPU, and each one's caching allocator keeps the blocks of its
    largest test after it (one held 20 GiB on an 80 GB H100): together they ran the card out of memory in two tests
    of run 40. After each test, a process gives back what it no longer holds."""
    yield
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
