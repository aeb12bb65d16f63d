"""Test-suite settings: one intra-op thread per test process.

The suite runs under pytest-xdist with one worker per core; a worker that also spreads each op over
every core oversubscribes the machine, and PyTorch's spinning OpenMP threads then run tiny models tens
of times slower.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by subprocesses the tests start

import torch  # noqa: E402

torch.set_num_threads(1)
