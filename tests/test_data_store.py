"""MICRO2D-layout HDF5 storage: round trips, appending, the real file's layout, errors."""

import h5py
import numpy as np
import pytest

from microlatent.data import (
    ensure_dataset,
    file_info,
    generate,
    list_classes,
    read_images,
    read_labels,
    read_property,
    write_class,
    write_class_batches,
    write_property,
)
from microlatent.data.store import property_instructions
from microlatent.errors import DataError, InputError


@pytest.fixture()
def sets():
    return generate("lines", 7, seed=1)["lines"], generate("GRF", 5, size=32, seed=1)["GRF"]


def test_round_trip_and_layout(tmp_path, sets):
    (lines, line_labels), (grf, grf_labels) = sets
    path = tmp_path / "set.h5"
    assert write_class(path, "lines", lines, line_labels) == 7
    write_class(path, "GRF", grf, grf_labels, compression="lzf")
    assert sorted(list_classes(path)) == ["GRF", "lines"]
    assert np.array_equal(read_images(path, "lines"), lines)
    assert read_labels(path, "GRF") == grf_labels
    with h5py.File(path) as f:
        images = f["lines"]["lines"]
        assert images.dtype == np.uint8 and images.shape == (7, 224, 224)
        assert images.chunks == (1, 224, 224) and images.compression == "gzip"
        assert f["GRF"]["GRF"].compression == "lzf"
        labels = f["lines"]["lines - labels"]
        assert h5py.check_string_dtype(labels.dtype).encoding == "utf-8"


def test_indexed_reads_keep_order_and_repeats(tmp_path, sets):
    (lines, labels), _ = sets
    path = tmp_path / "set.h5"
    write_class(path, "lines", lines, labels)
    assert np.array_equal(read_images(path, "lines", [5, 1, 5, -1]), lines[[5, 1, 5, -1]])
    assert np.array_equal(read_images(path, "lines", 3), lines[3])
    assert np.array_equal(read_images(path, "lines", slice(2, 6, 2)), lines[2:6:2])
    assert read_labels(path, "lines", [6, 0]) == [labels[6], labels[0]]
    assert read_labels(path, "lines", 2) == labels[2]
    assert read_images(path, "lines", []).shape == (0, 224, 224)
    with pytest.raises(InputError, match="index 7 out of range"):
        read_images(path, "lines", [7])


def test_writing_a_class_again_replaces_only_that_group(tmp_path, sets):
    (lines, labels), (grf, grf_labels) = sets
    path = tmp_path / "set.h5"
    write_class(path, "lines", lines, labels)
    write_class(path, "GRF", grf, grf_labels)
    write_class(path, "lines", lines[:2], labels[:2])
    assert read_images(path, "lines").shape[0] == 2
    assert np.array_equal(read_images(path, "GRF"), grf)


def test_failed_write_leaves_the_file_as_it_was(tmp_path, sets):
    (lines, labels), _ = sets
    path = tmp_path / "set.h5"
    write_class(path, "lines", lines, labels)

    def batches():
        yield lines[:3], labels[:3]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_class_batches(path, "lines", batches(), 7, (224, 224))
    assert list_classes(path) == ["lines"]
    assert np.array_equal(read_images(path, "lines"), lines)
    with h5py.File(path) as f:
        assert list(f) == ["lines"]


def test_streamed_write_equals_whole_write(tmp_path, sets):
    _, (grf, labels) = sets
    path = tmp_path / "set.h5"
    write_class_batches(path, "GRF", ((grf[i : i + 2], labels[i : i + 2]) for i in range(0, 5, 2)), 5, (32, 32))
    assert np.array_equal(read_images(path, "GRF"), grf) and read_labels(path, "GRF") == labels


def test_file_info_streams_volume_fractions(tmp_path, sets):
    (lines, labels), (grf, grf_labels) = sets
    path = tmp_path / "set.h5"
    write_class(path, "lines", lines, labels)
    write_class(path, "GRF", grf, grf_labels)
    seen = []
    info = file_info(path, progress=lambda name, done: seen.append((name, done)))
    entry = info["classes"]["lines"]
    vf = lines.mean(axis=(1, 2))
    assert entry["count"] == 7 and entry["shape"] == (224, 224)
    assert entry["vf_mean"] == pytest.approx(vf.mean()) and entry["vf_min"] == pytest.approx(vf.min())
    assert entry["vf_max"] == pytest.approx(vf.max())
    assert info["classes"]["GRF"]["vf_mean"] == pytest.approx(grf.mean())
    assert not entry["has_mechanical"] and not entry["has_thermal"]
    assert ("lines", 7) in seen
    assert "vf_mean" not in file_info(path, volume_fractions=False)["classes"]["GRF"]


def _micro2d_like_file(path, images, labels, fixed_bytes=False):
    """A file built exactly as MICRO2D's is, without our writer: contiguous, properties attached."""
    with h5py.File(path, "w") as f:
        group = f.create_group("VoidSmall")
        group.create_dataset("VoidSmall", data=images)
        if fixed_bytes:
            group.create_dataset("VoidSmall - labels", data=np.array([s.encode() for s in labels]))
        else:
            group.create_dataset("VoidSmall - labels", data=labels, dtype=h5py.string_dtype("utf-8"))
        mech = group.create_dataset("homogenized_mechanical", data=np.ones((len(images), 6, 5)))
        mech.attrs["INSTRUCTIONS"] = "index 0: contrast case; index 1: Ex, nu_xy, Ey, nu_yx, Gxy"
        group.create_dataset("homogenized_thermal", data=np.ones((len(images), 6, 2)))
        f.create_group("notes")  # a group that is not a class


@pytest.mark.parametrize("fixed_bytes", [False, True])
def test_reads_a_file_in_micro2d_layout(tmp_path, fixed_bytes):
    images = (np.random.default_rng(0).random((4, 16, 16)) < 0.3).astype(np.uint8)
    labels = ["Voids, r=3, local A", "Voids, r=2, local B", "x", "y"]
    path = tmp_path / "MICRO2D_homogenized.h5"
    _micro2d_like_file(path, images, labels, fixed_bytes)
    assert list_classes(path) == ["VoidSmall"]
    assert np.array_equal(read_images(path, "VoidSmall", [2, 0]), images[[2, 0]])
    assert read_labels(path, "VoidSmall") == labels
    info = file_info(path)["classes"]["VoidSmall"]
    assert info["has_mechanical"] and info["has_thermal"] and info["count"] == 4
    assert read_property(path, "VoidSmall", "homogenized_mechanical", [1]).shape == (1, 6, 5)
    assert "Ex" in property_instructions(path, "VoidSmall", "homogenized_mechanical")


def test_write_property_checks_shape_and_keeps_instructions(tmp_path, sets):
    _, (grf, labels) = sets
    path = tmp_path / "set.h5"
    write_class(path, "GRF", grf, labels)
    values = np.arange(5 * 6 * 2, dtype=float).reshape(5, 6, 2)
    write_property(path, "GRF", "homogenized_thermal", values, "axis 2: kx, ky")
    assert np.array_equal(read_property(path, "GRF", "homogenized_thermal"), values)
    assert property_instructions(path, "GRF", "homogenized_thermal") == "axis 2: kx, ky"
    with pytest.raises(InputError, match=r"\(n, 6, 5\)"):
        write_property(path, "GRF", "homogenized_mechanical", values, "")
    with pytest.raises(InputError, match="4 property rows for 5 images"):
        write_property(path, "GRF", "homogenized_thermal", values[:4], "")


def _one_line_naming(err, path):
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "absent.h5"
    for call in (list_classes, file_info, lambda p: read_images(p, "GRF")):
        with pytest.raises(DataError) as err:
            call(path)
        assert "no such file" in _one_line_naming(err, path)


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("not hdf5\n")
    with pytest.raises(DataError) as err:
        list_classes(path)
    assert "not an HDF5 file" in _one_line_naming(err, path)
    with pytest.raises(DataError):  # nor is it overwritten by a write
        write_class(path, "x", np.zeros((1, 4, 4), np.uint8), ["a"])
    assert path.read_text() == "not hdf5\n"


def test_missing_group_lists_the_classes(tmp_path, sets):
    (lines, labels), _ = sets
    path = tmp_path / "set.h5"
    write_class(path, "lines", lines, labels)
    with pytest.raises(DataError) as err:
        read_labels(path, "GRF")
    message = _one_line_naming(err, path)
    assert "'GRF'" in message and "lines" in message


def test_images_that_are_not_two_phase(tmp_path):
    path = tmp_path / "grey.h5"
    grey = np.zeros((3, 8, 8), dtype=np.uint8)
    grey[2, 1, 1] = 128
    with h5py.File(path, "w") as f:
        f.create_group("G").create_dataset("G", data=grey)
    assert read_images(path, "G", [0, 1]).shape == (2, 8, 8)
    with pytest.raises(DataError) as err:
        read_images(path, "G")
    assert "not a 2-phase" in _one_line_naming(err, path)
    with pytest.raises(DataError) as err:
        file_info(path)
    assert "image 2" in _one_line_naming(err, path)


def test_write_rejects_bad_input(tmp_path):
    path = tmp_path / "set.h5"
    with pytest.raises(InputError, match="0/1"):
        write_class(path, "x", np.full((2, 4, 4), 3, np.uint8), ["a", "b"])
    with pytest.raises(InputError, match="2 images but 1 labels"):
        write_class(path, "x", np.zeros((2, 4, 4), np.uint8), ["a"])
    with pytest.raises(InputError, match=r"\(n, H, W\)"):
        write_class(path, "x", np.zeros((4, 4), np.uint8), ["a"] * 4)


def test_ensure_dataset_generates_only_what_is_missing(tmp_path):
    path = tmp_path / "auto.h5"
    assert ensure_dataset(path, "circles", 3, size=64, seed=1, radius=5) == ["circles"]
    first = read_images(path, "circles")
    assert np.array_equal(first, generate("circles", 3, size=64, seed=1, radius=5)["circles"][0])
    assert ensure_dataset(path, "circles", 3, size=64, seed=1, radius=5) == []  # already there
    assert ensure_dataset(path, "circles", 3, size=64, seed=2, radius=5) == ["circles"]  # new seed
    assert not np.array_equal(read_images(path, "circles"), first)
    assert ensure_dataset(path, "GRF", 2, size=32) == ["GRF"]
    assert sorted(list_classes(path)) == ["GRF", "circles"]


def test_info_refuses_a_file_without_classes_and_reports_malformed_datasets(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataError, match="no MICRO2D-layout class .* top-level entries: x"):
        file_info(tmp_path / "other.h5")
    path = tmp_path / "bad.h5"
    write_class(path, "A", np.zeros((4, 8, 8), np.uint8), ["a"] * 4)
    with h5py.File(path, "a") as f:
        del f["A"]["A - labels"]
        f["A"]["A - labels"] = np.array([b"a"] * 3)
        f["A"]["homogenized_mechanical"] = np.zeros((4, 6, 3))
    problems = file_info(path)["problems"]
    assert problems == [
        "A: (3,) labels for 4 images",
        "A/homogenized_mechanical: shape (4, 6, 3), expected (4, cases, 5)",
    ]
