"""The CUDA code paths, checked against the CPU: skipped on machines without a GPU (CI has none).

On a GPU machine: ``python -m pytest -q tests/test_cuda.py tests/test_training_amp.py``.
"""

import numpy as np
import pytest
import torch

from microlatent.data.loading import make_loader
from microlatent.models import load_model
from microlatent.training import train
from microlatent.training.loop import Interrupted

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

from test_training import rows, tiny_config  # noqa: E402


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("phases", [2, 3])
def test_two_point_statistics_on_cuda_equal_the_cpu_ones(periodic, phases):
    from microlatent.stats import two_point

    rng = np.random.default_rng(0)
    labels = rng.integers(0, phases, (4, 37, 50))
    x = labels == 1 if phases == 2 else np.eye(phases)[labels].transpose(0, 3, 1, 2)
    cpu = two_point(torch.as_tensor(x, dtype=torch.float64), periodic=periodic, pairs="all")
    gpu = two_point(torch.as_tensor(x, dtype=torch.float32, device="cuda"), periodic=periodic, pairs="all")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.double().cpu(), cpu, atol=2e-6, rtol=0)


def test_cuda_run_with_bf16_autocast_resumes_to_the_uninterrupted_run(tiny_data, tmp_path):
    """The CUDA RNG (latent noise on the GPU) is checkpointed: an interrupted and resumed run ends where the
    uninterrupted one does. The tolerance allows for cuDNN's non-deterministic convolution backward."""
    config = tiny_config(tiny_data, train__device="cuda", train__amp="auto")
    train(config, tmp_path / "whole", progress=False)
    with pytest.raises(Interrupted):
        train(config, tmp_path / "split", stop_after_steps=3, progress=False)
    train(config, tmp_path / "split", resume=True, progress=False)
    whole, split = load_model(tmp_path / "whole" / "model.pt"), load_model(tmp_path / "split" / "model.pt")
    for (name, a), b in zip(whole.state_dict().items(), split.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
    val = [[float(r["val_loss"]) for r in rows(tmp_path / run / "epochs.csv")] for run in ("whole", "split")]
    assert np.isfinite(val).all() and val[1] == pytest.approx(val[0], rel=1e-3)


def test_cuda_and_cpu_runs_reach_similar_losses(tiny_data, tmp_path):
    """Same config and seed, float32 on both. The latent noise comes from each device's own generator, so
    the runs differ draw for draw and only their validation losses are compared."""
    cpu = tiny_config(tiny_data, train__amp="off")
    gpu = tiny_config(tiny_data, train__device="cuda", train__amp="off")
    train(cpu, tmp_path / "cpu", progress=False)
    train(gpu, tmp_path / "gpu", progress=False)
    val = [float(rows(tmp_path / run / "epochs.csv")[-1]["val_loss"]) for run in ("cpu", "gpu")]
    assert val[1] == pytest.approx(val[0], rel=0.1)


def test_the_loader_pins_batches_for_the_gpu(tiny_data):
    from microlatent.data import MicrostructureDataset

    loader, sampler = make_loader(MicrostructureDataset(tiny_data), 1, torch.device("cuda"), persistent=False)
    sampler.batches = [torch.arange(4)]
    (batch,) = list(loader)
    assert batch.is_pinned() and batch.shape == (4, 1, 32, 32)


def test_gradient_reconstruction_on_cuda_matches_the_target():
    from microlatent.data import generate
    from microlatent.reconstruction import reconstruct
    from microlatent.stats import two_point

    ((images, _),) = generate("GRF", 1, size=48, seed=2).values()
    target = images[0].astype(np.float32)
    (result,) = reconstruct(target, device="cuda", steps=300, seed=0)
    got, want = two_point(result.image.astype(np.float64)), two_point(target.astype(np.float64))
    random = two_point((np.random.default_rng(0).random(target.shape) < target.mean()).astype(np.float64))
    assert np.abs(got - want).mean() < 0.2 * np.abs(random - want).mean()
