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
        ((images, labels),) = generate(kind, 10, size=32, seed=1).values()
        write_class(path, kind, images, labels)
    return path


def _train_tiny_model(data, out_dir, name="tiny-props"):
    """A tiny TAESD-style VAE (3 stages: 32 px -> 4 x 4 x 4 latent) trained 12 epochs (~100 steps) with
    MSE on the 60/10/30 % train split; it learns the phase layout coarsely (val MSE ~0.16 vs 0.25 for
    a constant 0.5). Returns the path of its model.pt."""
    from microlatent.training import DEFAULTS, train
    from microlatent.training.config import merge

    config = merge(
        DEFAULTS,
        {
            "name": name,
            "seed": 3,
            "data": {"path": str(data), "split_fractions": [0.6, 0.1, 0.3]},
            "model": {"name": "taesd_vae", "width": 16, "depth": 1, "latent_channels": 4, "stages": 3},
            "loss": {"mse": 1.0, "kl": 1e-4},
            "optim": {"batch_size": 8, "epochs": 12, "lr": 1e-2},
            "schedule": {"name": "constant"},
            "train": {"log_every": 50, "device": "cpu"},
        },
    )
    train(config, out_dir, progress=False)
    return out_dir / "model.pt"


@pytest.fixture(scope="session")
def train_tiny_model():
    """The function that trains the property tests' tiny model (module-scoped fixtures call it)."""
    return _train_tiny_model
