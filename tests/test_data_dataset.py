"""MicrostructureDataset: per-class splits, laziness, items, resizing, workers."""

import pickle

import numpy as np
import pytest
import torch

from microlatent.data import MicrostructureDataset, generate, split_indices, write_class
from microlatent.errors import DataError, InputError

COUNTS = {"GRF": 50, "VoidSmall": 37, "VoronoiSmall": 20}


@pytest.fixture(scope="module")
def h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "set.h5"
    data = {}
    for name, n in COUNTS.items():
        images, labels = generate(name, n, size=32, seed=0)[name]
        write_class(path, name, images, labels)
        data[name] = (images, labels)
    return path, data


def _members(ds):
    return {(ds.classes[c], int(i)) for c, i in zip(ds._class_ids, ds._indices)}


def test_splits_are_disjoint_cover_everything_and_follow_fractions(h5):
    path, _ = h5
    parts = {s: MicrostructureDataset(path, split=s) for s in ("train", "val", "test")}
    members = {s: _members(ds) for s, ds in parts.items()}
    assert not members["train"] & members["val"] and not members["train"] & members["test"]
    assert not members["val"] & members["test"]
    everything = {(name, i) for name, n in COUNTS.items() for i in range(n)}
    assert members["train"] | members["val"] | members["test"] == everything
    assert _members(MicrostructureDataset(path, split="all")) == everything
    assert parts["train"].counts == {"GRF": 40, "VoidSmall": 30, "VoronoiSmall": 16}
    # Cuts at round(n * 0.8) and round(n * 0.9): 37 images give 30 / 3 / 4.
    assert parts["val"].counts == {"GRF": 5, "VoidSmall": 3, "VoronoiSmall": 2}
    assert parts["test"].counts == {"GRF": 5, "VoidSmall": 4, "VoronoiSmall": 2}


def test_split_is_deterministic_and_seeded(h5):
    path, _ = h5
    a = _members(MicrostructureDataset(path, split="val", seed=1))
    assert a == _members(MicrostructureDataset(path, split="val", seed=1))
    assert a != _members(MicrostructureDataset(path, split="val", seed=2))


def test_split_of_a_class_does_not_depend_on_the_others(h5):
    path, _ = h5
    alone = MicrostructureDataset(path, classes="VoidSmall", split="test", seed=4)
    together = MicrostructureDataset(path, classes=["VoronoiSmall", "VoidSmall"], split="test", seed=4)
    assert _members(alone) == {m for m in _members(together) if m[0] == "VoidSmall"}
    assert together.classes == ["VoronoiSmall", "VoidSmall"]
    assert np.array_equal(split_indices(37, "VoidSmall", "test", seed=4), sorted(i for _, i in _members(alone)))


def test_items_match_the_file(h5):
    path, data = h5
    ds = MicrostructureDataset(path, classes=["VoidSmall", "GRF"], split="val")
    for k in range(len(ds)):
        item = ds[k]
        images, labels = data[item["class"]]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 32, 32)
        assert torch.equal(item["image"][0], torch.from_numpy(images[item["index"]]).float())
        assert item["label"] == labels[item["index"]]
        assert ds.classes[item["class_index"]] == item["class"]
    assert ds[-1]["index"] == ds[len(ds) - 1]["index"]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_resized_targets_stay_binary_and_keep_their_volume_fraction(h5):
    path, data = h5
    ds = MicrostructureDataset(path, classes="GRF", split="all", size=24)
    for index in range(len(ds)):
        image = ds[index]["image"]
        assert image.shape == (1, 24, 24)
        assert set(image.unique().tolist()) <= {0.0, 1.0}  # no grey training targets
        original = data["GRF"][0][ds[index]["index"]]
        assert image.sum().item() == round(original.mean() * 24 * 24)  # vf exact to one pixel


def test_dataset_is_lazy_and_pickles_without_a_handle(h5):
    path, _ = h5
    ds = MicrostructureDataset(path, split="all")
    ds[0]  # opens the file in this process
    assert ds._file is not None
    held = sum(v.nbytes for v in vars(ds).values() if isinstance(v, np.ndarray))
    assert held < 16 * len(ds)  # indices only, never pixels (one image alone is 1024 bytes)
    blob = pickle.dumps(ds)
    assert len(blob) < 4096
    copy = pickle.loads(blob)
    assert copy._file is None
    assert torch.equal(copy[5]["image"], ds[5]["image"])


def test_dataloader_workers_read_their_own_handles(h5):
    path, data = h5
    ds = MicrostructureDataset(path, split="train")
    ds[0]  # an open handle in the parent must not leak into the workers
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2, shuffle=False)
    seen = 0
    for batch in loader:
        for name, index, image in zip(batch["class"], batch["index"].tolist(), batch["image"]):
            assert torch.equal(image[0], torch.from_numpy(data[name][0][index]).float())
            seen += 1
    assert seen == len(ds)


def test_bad_arguments(h5, tmp_path):
    path, _ = h5
    with pytest.raises(DataError, match="no class 'Lines'"):
        MicrostructureDataset(path, classes=["Lines"])
    with pytest.raises(InputError, match="split must be one of"):
        MicrostructureDataset(path, split="validation")
    with pytest.raises(InputError, match="split_fractions"):
        MicrostructureDataset(path, split_fractions=(0.8, 0.3, 0.1))
    with pytest.raises(DataError, match="no such file"):
        MicrostructureDataset(tmp_path / "none.h5")


def test_classes_of_different_sizes_need_a_size(tmp_path):
    from microlatent.data.store import write_class
    from microlatent.errors import InputError

    path = tmp_path / "mixed.h5"
    write_class(path, "A", np.zeros((4, 16, 16), np.uint8), ["a"] * 4)
    write_class(path, "B", np.ones((4, 24, 24), np.uint8), ["b"] * 4)
    with pytest.raises(InputError, match=r"different image sizes \(A: 16x16, B: 24x24\)"):
        MicrostructureDataset(path)
    assert MicrostructureDataset(path, size=8, split="all")[5]["image"].shape == (1, 8, 8)
