"""Importing folders of PNG/TIFF images."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from microlatent.data import generate, import_images, parse_label, read_images, read_labels
from microlatent.errors import DataError


@pytest.fixture()
def truth():
    return generate("GRF", 4, size=40, seed=3, corr_length=(2, 5))["GRF"][0]


def _noisy_grey(binary, seed):
    rng = np.random.default_rng(seed)
    grey = 60 + 140 * binary + rng.normal(0, 12, binary.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


def _write_pngs(folder, truth):
    folder.mkdir()
    for k, binary in enumerate(truth):
        Image.fromarray(_noisy_grey(binary, k)).save(folder / f"img_{k:02d}.png")


def test_noisy_greyscale_pngs_threshold_to_the_truth(tmp_path, truth):
    folder = tmp_path / "scans"
    _write_pngs(folder, truth)
    (folder / ".hidden").write_text("ignored")
    out = tmp_path / "imported.h5"
    assert import_images(folder, out) == "scans"
    assert np.array_equal(read_images(out, "scans"), truth)
    labels = [parse_label(s) for s in read_labels(out, "scans")]
    assert [p["file"] for p in labels] == [f"img_{k:02d}.png" for k in range(4)]
    assert all(p["threshold"] == "otsu" and 60 < 255 * p["threshold_value"] < 200 for p in labels)


def test_rgb_tiff_fixed_threshold_invert_and_name(tmp_path, truth):
    folder = tmp_path / "mixed"
    folder.mkdir()
    grey = _noisy_grey(truth[0], 0)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / "a.png")  # RGB
    tifffile.imwrite(folder / "b.tif", grey.astype(np.uint16) * 257)  # 16-bit
    tifffile.imwrite(folder / "c.tiff", grey.astype(np.float32) / 255)  # float in [0, 1]
    out = tmp_path / "o.h5"
    import_images(folder, out, name="M", threshold=0.5)
    assert np.array_equal(read_images(out, "M"), np.stack([truth[0]] * 3))
    import_images(folder, out, name="M", threshold=0.5, invert=True)
    assert np.array_equal(read_images(out, "M"), 1 - np.stack([truth[0]] * 3))


def test_images_of_different_sizes(tmp_path, truth):
    folder = tmp_path / "sizes"
    _write_pngs(folder, truth)
    Image.fromarray(np.zeros((30, 41), np.uint8)).save(folder / "img_99.png")
    with pytest.raises(DataError) as err:
        import_images(folder, tmp_path / "o.h5")
    message = str(err.value)
    assert "\n" not in message and "img_99.png" in message
    assert "30x41" in message and "40x40" in message and "img_00.png" in message


def test_a_file_that_is_not_an_image(tmp_path, truth):
    folder = tmp_path / "junk"
    _write_pngs(folder, truth)
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        import_images(folder, tmp_path / "o.h5")
    assert "notes.txt" in str(err.value) and "not a readable image" in str(err.value)
    (folder / "notes.txt").unlink()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(DataError, match="broken.png"):
        import_images(folder, tmp_path / "o.h5")


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        import_images(tmp_path / "absent", tmp_path / "o.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        import_images(tmp_path / "empty", tmp_path / "o.h5")


@pytest.mark.parametrize("threshold", [float("nan"), 1.0, -0.1, 7])
def test_a_threshold_outside_0_1_is_refused_and_writes_nothing(tmp_path, truth, threshold):
    from microlatent.errors import InputError

    _write_pngs(tmp_path / "pngs", truth)
    with pytest.raises(InputError, match=r"threshold must be 'otsu' or a number in \[0, 1\)"):
        import_images(tmp_path / "pngs", tmp_path / "o.h5", threshold=threshold)
    assert not (tmp_path / "o.h5").exists()


def test_a_flat_image_is_imported_with_a_warning(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.warns(RuntimeWarning, match="flat image .* all phase 1"):
        import_images(tmp_path / "flat", tmp_path / "o.h5")
    assert read_images(tmp_path / "o.h5", "flat").all()


def test_a_failed_import_into_a_new_file_leaves_no_file(tmp_path, truth):
    folder = tmp_path / "junk"
    _write_pngs(folder, truth)
    (folder / "zz_notes.txt").write_text("hello")  # read last: the file was already being written
    with pytest.raises(DataError, match="zz_notes.txt"):
        import_images(folder, tmp_path / "o.h5", batch_size=2)
    assert not (tmp_path / "o.h5").exists()


def test_tiles_are_the_windows_of_the_image_row_by_row(tmp_path):
    """A micrograph becomes a training set: each stored image is the window at its recorded origin, for
    label .npy files and greyscale images alike; windows crossing the edge are left out."""
    from microlatent.data.importing import import_labels, tile_origins
    from microlatent.errors import InputError

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 40, 50)).astype(np.uint8)
    np.save(tmp_path / "seg.npy", labels)
    out = tmp_path / "tiles.h5"
    import_labels(tmp_path / "seg.npy", out, name="seg", tile=16, stride=12)
    origins = [(r, c) for r in (0, 12, 24) for c in (0, 12, 24)]  # 40 - 16 = 24, 50 - 16 = 34: c stops at 24
    assert tile_origins(labels.shape, 16, 12) == origins
    stored, names = read_images(out, "seg"), read_labels(out, "seg")
    assert stored.shape == (2 * len(origins), 16, 16)
    for k, (i, (r, c)) in enumerate((i, o) for i in range(2) for o in origins):
        assert np.array_equal(stored[k], labels[i, r : r + 16, c : c + 16])
        assert parse_label(names[k])["tile"] == [r, c] and parse_label(names[k])["index"] == i
    grey = (rng.random((30, 30)) * 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    import_images(tmp_path / "grey.png", out, name="grey", threshold=0.5, tile=10)  # 3 x 3 windows
    binary = (grey / 255 > 0.5).astype(np.uint8)
    assert np.array_equal(read_images(out, "grey")[4], binary[10:20, 10:20])
    with pytest.raises(InputError, match="larger than the images"):
        import_labels(tmp_path / "seg.npy", tmp_path / "none.h5", tile=64)
    assert not (tmp_path / "none.h5").exists()
