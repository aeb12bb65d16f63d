"""Test-suite settings: one intra-op thread per test process.

The suite runs under pytest-xdist with one worker per core; a worker that also spreads each op over
every core oversubscribes the machine, and PyTorch's spinning OpenMP threads then run tiny models tens
of times slower.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by subprocesses the tests start

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402

from microlatent.data import generate  # noqa: E402
from microlatent.data.store import write_class  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A tiny HDF5 set in the MICRO2D layout: GRF and VoronoiSmall, 10 images of 32 x 32 each."""
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    for kind in ("GRF", "VoronoiSmall"):
        (images, labels), = generate(kind, 10, size=32, seed=1).values()
        write_class(path, kind, images, labels)
    return path
