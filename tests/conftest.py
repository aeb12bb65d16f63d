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


def tiny_training_config(path, **sections):
    """The tests' tiny training run: an 8-wide TAESD VAE on the file ``path`` (e.g. ``tiny_data``), MSE + KL,
    2 epochs of batches of 4, on the CPU. ``sections`` are merged over it, e.g.
    ``tiny_training_config(path, optim={"batch_size": 5}, data={"cache": "memory"})``. Test modules
    import it (``from conftest import tiny_training_config``)."""
    from microlatent.training import DEFAULTS
    from microlatent.training.config import merge

    base = {
        "name": "tiny",
        "seed": 3,
        "data": {"path": str(path)},
        "model": {"name": "taesd_vae", "width": 8, "depth": 1, "latent_channels": 4},
        "loss": {"mse": 1.0, "kl": 1e-4},
        "optim": {"batch_size": 4, "epochs": 2, "lr": 3e-3},
        "schedule": {"period_epochs": 1},
        "train": {"log_every": 1, "device": "cpu"},
    }
    for section, values in sections.items():
        base[section] = {**base[section], **values} if isinstance(base.get(section), dict) else values
    return merge(DEFAULTS, base)


def _train_tiny_model(data, out_dir, name="tiny-props"):
    """A tiny TAESD-style VAE (3 stages: 32 px -> 4 x 4 x 4 latent) trained 12 epochs (~100 steps) with
    MSE on the 60/10/30 % train split; it learns the phase layout coarsely (val MSE ~0.16 vs 0.25 for
    a constant 0.5). Returns the path of its model.pt."""
    from microlatent.training import train

    config = tiny_training_config(
        data,
        name=name,
        data={"split_fractions": [0.6, 0.1, 0.3]},
        model={"width": 16, "stages": 3},
        optim={"batch_size": 8, "epochs": 12, "lr": 1e-2},
        schedule={"name": "constant"},
        train={"log_every": 50},
    )
    train(config, out_dir, progress=False)
    return out_dir / "model.pt"


@pytest.fixture(scope="session")
def train_tiny_model():
    """The function that trains the property tests' tiny model (module-scoped fixtures call it)."""
    return _train_tiny_model
