"""Scale-out training: two gloo processes under torchrun reach the weights of one process (also after
an interruption and --resume), and DataLoader workers and the image cache change nothing but speed."""

import csv
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import tiny_training_config

from microlatent.data import MicrostructureDataset
from microlatent.data.loading import CachedImages
from microlatent.errors import InputError
from microlatent.models import load_model
from microlatent.training import train
from microlatent.training.distributed import shard_bounds

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")


def tiny_config(data, **data_changes):
    # 16 training images in batches of 5: the last batch (1 image) leaves rank 1 of 2 without images
    return tiny_training_config(data, data=data_changes, optim={"batch_size": 5})


@pytest.fixture(scope="module")
def one_process(tiny_data, tmp_path_factory):
    return train(tiny_config(tiny_data), tmp_path_factory.mktemp("one") / "run", progress=False)


def torchrun(*args, cwd):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-4000:]


def assert_same_weights(run_a, run_b, exact=False):
    a, b = load_model(run_a / "model.pt"), load_model(run_b / "model.pt")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        if exact:
            assert torch.equal(x, y), name
        else:  # without the global-batch noise the difference is ~1e-4
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_shards_cover_each_batch_once():
    for n in (1, 5, 16):
        bounds = [shard_bounds(n, rank, 3) for rank in range(3)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(end == start for (_, end), (start, _) in zip(bounds, bounds[1:]))
        assert max(e - s for s, e in bounds) - min(e - s for s, e in bounds) <= 1


def test_two_processes_under_torchrun_match_one_process(tiny_data, one_process, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_data)))
    # the unchanged CLI under torchrun, with a DataLoader worker per rank reading a disk cache one rank writes
    torchrun(
        "-m",
        "microlatent",
        "train",
        config,
        "--out",
        tmp_path / "two",
        "--set",
        "data.num_workers=1",
        "--set",
        "data.cache=disk",
        cwd=tmp_path,
    )
    two = tmp_path / "two"
    assert_same_weights(one_process, two)
    assert json.loads((two / "run.json").read_text())["processes"] == 2
    # rank 0 alone logs, and logs the global batch's losses
    one_steps, two_steps = rows(one_process / "steps.csv"), rows(two / "steps.csv")
    assert len(two_steps) == len(one_steps) == 8
    assert [float(r["loss"]) for r in two_steps] == pytest.approx([float(r["loss"]) for r in one_steps], rel=1e-5)
    assert [float(r["val_loss"]) for r in rows(two / "epochs.csv")] == pytest.approx(
        [float(r["val_loss"]) for r in rows(one_process / "epochs.csv")], rel=1e-5
    )


def test_interrupted_two_process_run_resumes_to_the_same_weights(tiny_data, one_process, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_data)))
    script = tmp_path / "interrupt_and_resume.py"
    script.write_text(
        "import sys, yaml, torch, torch.distributed as dist\n"
        "from microlatent.training import Interrupted, train\n"
        "config = yaml.safe_load(open(sys.argv[1]))\n"
        "dist.init_process_group('gloo')\n"
        "try:\n"
        "    train(config, sys.argv[2], stop_after_steps=3, progress=False)\n"  # mid-epoch 1 (4 batches/epoch)
        "    sys.exit('not interrupted')\n"
        "except Interrupted:\n"
        "    pass\n"
        "saved = torch.load(sys.argv[2] + '/checkpoint.pt', weights_only=True)['extra']\n"
        "assert (saved['step'], saved['batch_index']) == (3, 3), saved['step']\n"
        "train(config, sys.argv[2], resume=True, progress=False)\n"
    )
    torchrun(script, config, tmp_path / "split", cwd=tmp_path)
    assert_same_weights(one_process, tmp_path / "split")
    assert len(rows(tmp_path / "split" / "steps.csv")) == 8


def test_loader_workers_and_the_image_cache_give_the_same_weights(tiny_data, one_process, tmp_path):
    train(tiny_config(tiny_data, num_workers=2), tmp_path / "workers", progress=False)
    assert_same_weights(one_process, tmp_path / "workers", exact=True)
    train(tiny_config(tiny_data, cache="memory"), tmp_path / "memory", progress=False)
    assert_same_weights(one_process, tmp_path / "memory", exact=True)  # not resized: cached as exact uint8
    train(tiny_config(tiny_data, cache="disk", num_workers=2), tmp_path / "disk", progress=False)
    assert_same_weights(one_process, tmp_path / "disk", exact=True)
    cached = sorted((tiny_data.parent / "tiny.cache").glob("*.npy"))
    assert [p.name.split("-")[0] for p in cached] == ["train", "val"]
    stamps = [p.stat().st_mtime_ns for p in cached]
    train(tiny_config(tiny_data, cache=True), tmp_path / "again", progress=False)  # true = disk: reused
    assert [p.stat().st_mtime_ns for p in sorted((tiny_data.parent / "tiny.cache").glob("*.npy"))] == stamps


def test_a_resized_cache_holds_the_binary_images_exactly_and_pickles_small(tiny_data):
    dataset = MicrostructureDataset(tiny_data, size=24)
    for cache in (CachedImages.in_memory(dataset), CachedImages.on_disk(dataset)):
        assert len(cache) == len(dataset)
        assert all(torch.equal(cache[i]["image"], dataset[i]["image"]) for i in range(len(dataset)))
    assert len(pickle.dumps(cache)) < 1000  # a DataLoader worker gets the path, not the array
    with pytest.raises(InputError, match="data.cache"):
        train(tiny_config(tiny_data, cache="gpu"), tiny_data.parent / "bad", progress=False)
