"""Generators: determinism, binary output, each class checked against its definition."""

import math

import numpy as np
import pytest
from scipy import ndimage

from microlatent.data import GENERATORS, MICRO2D_CLASSES, generate, iter_batches, parse_label
from microlatent.data.generators import n_phases, resolve_kind
from microlatent.data.generators._common import format_label, image_rng, raster_ellipses
from microlatent.data.generators.voronoi import tessellate
from microlatent.errors import InputError

SMALL = {name: (224 if name in ("lines", "circles") else 64) for name in GENERATORS}


# ---------------------------------------------------------------- registry, determinism, labels


def test_registry_has_every_class():
    assert set(GENERATORS) == {"lines", "circles", *MICRO2D_CLASSES, "GRF3", "Voronoi3"}
    assert len(MICRO2D_CLASSES) == 10
    assert resolve_kind("micro2d-like") == list(MICRO2D_CLASSES)
    assert resolve_kind("voronoimediumspaced") == ["VoronoiMediumSpaced"]
    with pytest.raises(InputError, match="unknown kind 'Voronoi'"):
        resolve_kind("Voronoi")


@pytest.mark.parametrize("name", list(GENERATORS))
def test_same_seed_same_bytes_different_seed_different(name):
    size = SMALL[name]
    a, labels_a = generate(name, 3, size=size, seed=7)[name]
    b, labels_b = generate(name, 3, size=size, seed=7)[name]
    c, _ = generate(name, 3, size=size, seed=8)[name]
    assert a.dtype == np.uint8 and a.shape == (3, size, size)
    assert set(np.unique(a)) <= set(range(n_phases(name)))
    assert a.tobytes() == b.tobytes() and labels_a == labels_b
    assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("name", list(GENERATORS))
def test_image_depends_only_on_seed_and_index(name):
    size = SMALL[name]
    whole, labels = GENERATORS[name](5, size=size, seed=3)
    pieces = list(iter_batches(name, 5, size=size, seed=3, batch_size=2))
    assert [len(p[0]) for p in pieces] == [2, 2, 1]
    assert np.array_equal(np.concatenate([p[0] for p in pieces]), whole)
    assert sum((p[1] for p in pieces), []) == labels
    tail, tail_labels = GENERATORS[name](2, size=size, seed=3, start=3)
    assert np.array_equal(tail, whole[3:]) and tail_labels == labels[3:]


@pytest.mark.parametrize("name", list(GENERATORS))
def test_labels_parse_and_name_their_class(name):
    _, labels = GENERATORS[name](2, size=SMALL[name], seed=5, start=10)
    for i, label in enumerate(labels):
        parsed = parse_label(label)
        assert parsed["class"] == name
        assert parsed["seed"] == 5 and parsed["index"] == 10 + i
        assert len(parsed) >= 4  # class, seed, index and at least one drawn parameter


def test_classes_have_independent_streams():
    assert image_rng(0, "GRF", 0).random() != image_rng(0, "NBSA", 0).random()
    assert image_rng(0, "GRF", 0).random() == image_rng(0, "GRF", 0).random()


def test_parse_label_types_and_round_trip():
    text = format_label(**{"class": "x"}, n=3, f=0.25, s="abc", xs=[1, 2], ys=[0.5], e=[])
    assert parse_label(text) == {"class": "x", "n": 3, "f": 0.25, "s": "abc", "xs": [1, 2], "ys": [0.5], "e": []}
    assert parse_label("heuristic strategy; a=1")["text"] == "heuristic strategy"
    with pytest.raises(InputError):
        format_label(bad="a;b")


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="unknown parameter 'colour'"):
        generate("GRF", 1, colour=3)
    with pytest.raises(InputError, match="n must be an integer"):
        generate("lines", -1)
    with pytest.raises(InputError, match="need .* px"):
        generate("lines", 1, size=64)  # 5 lines of 9 px with 10 px gaps do not fit in 64
    with pytest.raises(InputError, match="volume_fraction"):
        generate("GRF", 1, volume_fraction=(0.8, 0.2))


# ---------------------------------------------------------------- lines


def _components(image):
    labelled, count = ndimage.label(image, structure=np.ones((3, 3)))
    return [image[s].shape for s in ndimage.find_objects(labelled)], labelled, count


def test_lines_match_their_definition():
    images, labels = generate("lines", 60, seed=11)["lines"]
    counts = set()
    for image, label in zip(images, labels):
        p = parse_label(label)
        horizontal = p["orientation"] == "horizontal"
        grid = image if horizontal else image.T  # lines along axis 1 from here on
        labelled, count = ndimage.label(grid, structure=np.ones((3, 3)))
        assert count == p["n_lines"] == len(p["lengths"])
        assert 1 <= count <= 5
        counts.add(count)
        boxes = sorted(ndimage.find_objects(labelled), key=lambda s: s[0].start)
        for k, box in enumerate(boxes):
            thickness = box[0].stop - box[0].start
            length = box[1].stop - box[1].start
            assert 5 <= thickness <= 9 and 112 <= length <= 224
            assert grid[box].all()  # a filled rectangle: all horizontal or all vertical
            if k:
                assert box[0].start - boxes[k - 1][0].stop >= 10  # gap between facing edges
        assert sorted(p["thicknesses"]) == sorted(b[0].stop - b[0].start for b in boxes)
        assert sorted(p["positions"]) == [b[0].start for b in boxes]
    assert counts == {1, 2, 3, 4, 5}
    orientations = {parse_label(label)["orientation"] for label in labels}
    assert orientations == {"horizontal", "vertical"}


def test_lines_parameters_are_honoured():
    images, labels = generate(
        "lines", 20, seed=2, n_lines=(3, 7), thickness=2, min_gap=4, orientation="vertical", length=(50, 60)
    )["lines"]
    for image, label in zip(images, labels):
        p = parse_label(label)
        assert p["orientation"] == "vertical" and 3 <= p["n_lines"] <= 7
        assert ndimage.label(image, structure=np.ones((3, 3)))[1] == p["n_lines"]
        assert image.sum() == sum(2 * length for length in p["lengths"])
        cols = np.flatnonzero(image.any(axis=0))
        assert all(50 <= length <= 60 for length in p["lengths"])
        assert len(cols) == 2 * p["n_lines"]


# ---------------------------------------------------------------- circles

DISC_AREA = int(sum(1 for y in range(-20, 21) for x in range(-20, 21) if x * x + y * y <= 400))


def test_circles_non_overlapping_are_five_discs_of_radius_20():
    assert DISC_AREA == 1257
    images, labels = generate("circles", 15, seed=4, overlap=False)["circles"]
    for image, label in zip(images, labels):
        labelled, count = ndimage.label(image, structure=np.ones((3, 3)))
        assert count == 5
        assert np.array_equal(np.bincount(labelled.ravel())[1:], [DISC_AREA] * 5)
        for box in ndimage.find_objects(labelled):
            assert box[0].stop - box[0].start == 41 and box[1].stop - box[1].start == 41
        p = parse_label(label)
        for cy, cx in zip(p["centres_y"], p["centres_x"]):
            assert 20 <= cy <= 203 and 20 <= cx <= 203 and image[cy, cx] == 1


@pytest.mark.parametrize("periodic", [False, True])
def test_circles_are_the_union_of_their_labelled_discs(periodic):
    images, labels = generate("circles", 10, seed=9, periodic=periodic)["circles"]
    yy, xx = np.mgrid[:224, :224]
    for image, label in zip(images, labels):
        p = parse_label(label)
        expected = np.zeros((224, 224), dtype=bool)
        for cy, cx in zip(p["centres_y"], p["centres_x"]):
            dy, dx = np.abs(yy - cy), np.abs(xx - cx)
            if periodic:
                dy, dx = np.minimum(dy, 224 - dy), np.minimum(dx, 224 - dx)
            expected |= dy**2 + dx**2 <= 400
        assert np.array_equal(image.astype(bool), expected)
        assert DISC_AREA <= image.sum() <= 5 * DISC_AREA


# ---------------------------------------------------------------- rasteriser and Voronoi core


def test_raster_ellipses_match_brute_force():
    rng = np.random.default_rng(0)
    n, size, count = 2, 40, 25
    image = rng.integers(0, n, count)
    cy, cx = rng.uniform(-5, 45, count), rng.uniform(-5, 45, count)
    a = rng.uniform(1, 15, count)
    b = a * rng.uniform(0.2, 1, count)
    theta = rng.uniform(0, np.pi, count)
    yy, xx = np.mgrid[:size, :size]
    for periodic in (True, False):
        got = raster_ellipses(n, size, size, image, cy, cx, a, b, theta, periodic)
        want = np.zeros((n, size, size), dtype=bool)
        shifts = (-size, 0, size) if periodic else (0,)
        for e in range(count):
            for sy in shifts:
                for sx in shifts:
                    dy, dx = yy - cy[e] - sy, xx - cx[e] - sx
                    u = dx * np.cos(theta[e]) + dy * np.sin(theta[e])
                    v = -dx * np.sin(theta[e]) + dy * np.cos(theta[e])
                    want[image[e]] |= (u / a[e]) ** 2 + (v / b[e]) ** 2 <= 1 + 1e-9
        assert np.array_equal(got, want)


def _torus_distances(size, grid, seeds):
    gy, gx = grid
    yc = (np.arange(size) + 0.5) * gy / size
    xc = (np.arange(size) + 0.5) * gx / size
    sy = (np.arange(gy)[:, None] + seeds[..., 0]).ravel()
    sx = (np.arange(gx)[None, :] + seeds[..., 1]).ravel()
    dy = np.abs(yc[:, None] - sy[None, :])
    dx = np.abs(xc[:, None] - sx[None, :])
    dy, dx = np.minimum(dy, gy - dy), np.minimum(dx, gx - dx)
    return dy[:, None, :] ** 2 + dx[None, :, :] ** 2  # (size, size, seeds), cell units


@pytest.mark.parametrize("grid,jitter", [((5, 7), 1.0), ((9, 9), 0.6), ((2, 3), 0.9), ((1, 4), 1.0)])
def test_tessellate_is_the_nearest_seed_on_the_torus(grid, jitter):
    rng = np.random.default_rng(sum(grid))
    size = 48
    seeds = 0.5 + jitter * (rng.random(grid + (2,)) - 0.5)
    ids = np.arange(grid[0] * grid[1], dtype=np.uint8).reshape(grid)
    got = tessellate(size, grid, seeds, ids)
    dist = _torus_distances(size, grid, seeds)
    ordered = np.sort(dist, axis=2)
    tie = ordered[..., 1] - ordered[..., 0] < 1e-5
    assert np.array_equal(got[~tie], np.argmin(dist, axis=2)[~tie])


# ---------------------------------------------------------------- MICRO2D look-alikes


def _row_mismatch(images):
    """Mismatch rates along axis 1: across the wrap, between interior neighbours, half a period apart."""
    wrap = np.mean(images[:, -1, :] != images[:, 0, :])
    interior = np.mean(images[:, 1:, :] != images[:, :-1, :])
    far = np.mean(images != np.roll(images, images.shape[1] // 2, axis=1))
    return wrap, interior, far


def _looks_periodic(images):
    for stack in (images, images.transpose(0, 2, 1)):
        wrap, interior, far = _row_mismatch(stack)
        # The wrap seam must look like a pair of neighbouring rows, not like unrelated rows.
        if wrap > interior + 0.25 * (far - interior) + 0.01:
            return False
    return True


def test_periodicity_check_catches_a_seam():
    images, _ = generate("GRF", 12, size=128, seed=1, corr_length=(4, 8))["GRF"]
    assert _looks_periodic(images)
    assert not _looks_periodic(images[:, 10:74, 30:94])  # a crop is not periodic


@pytest.mark.parametrize("name", MICRO2D_CLASSES)
def test_micro2d_like_tiles_seamlessly(name):
    images, _ = generate(name, 12, size=128, seed=2)[name]
    assert _looks_periodic(images)


@pytest.fixture(scope="module")
def micro2d_sets():
    return generate("micro2d-like", 24, seed=3)


@pytest.mark.parametrize("name", MICRO2D_CLASSES)
def test_micro2d_like_shape_binary_and_labels(micro2d_sets, name):
    images, labels = micro2d_sets[name]
    assert images.shape == (24, 256, 256) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 1}
    for image, label in zip(images, labels):
        p = parse_label(label)
        assert p["class"] == name
        # Every class records the phase-1 fraction; it must be the image's.
        assert abs(p["volume_fraction"] - image.mean()) < 2e-5 + 1.0 / image.size


SPREAD = {  # (must reach below, must reach above) for the phase-1 fraction over 24 images
    "GRF": (0.25, 0.75),
    "NBSA": (0.25, 0.75),
    "AngEllipse": (0.3, 0.55),
    "RandomEllipse": (0.3, 0.55),
    "VoidSmall": (0.7, 0.85),
    "VoidSmallBig": (0.7, 0.85),
    "VoronoiLarge": (0.3, 0.7),
    "VoronoiMedium": (0.25, 0.75),
    "VoronoiMediumSpaced": (0.25, 0.6),
    "VoronoiSmall": (0.25, 0.75),
}


@pytest.mark.parametrize("name", MICRO2D_CLASSES)
def test_micro2d_like_volume_fractions_spread(micro2d_sets, name):
    vf = micro2d_sets[name][0].mean(axis=(1, 2))
    low, high = SPREAD[name]
    assert vf.min() < low and vf.max() > high
    assert vf.std() > 0.1


def test_micro2d_like_classes_cover_low_and_high_fractions(micro2d_sets):
    vf = np.concatenate([images.mean(axis=(1, 2)) for images, _ in micro2d_sets.values()])
    assert vf.min() < 0.15 and vf.max() > 0.85


def test_grf_and_nbsa_hit_their_target_fraction_and_anisotropy():
    images, labels = generate("GRF", 6, size=128, seed=5, corr_length=(2, 12))["GRF"]
    for image, label in zip(images, labels):
        assert abs(image.mean() - parse_label(label)["volume_fraction"]) <= 1 / image.size
    bands, labels = generate("NBSA", 4, size=128, seed=1, volume_fraction=0.5, wavelength=16)["NBSA"]

    def changes(image, step):
        shift = tuple(np.round(step * 3).astype(int))
        return np.mean(image != np.roll(image, shift, axis=(0, 1)))

    for image, label in zip(bands, labels):
        theta = math.radians(parse_label(label)["angle_deg"])
        normal = np.array([math.sin(theta), math.cos(theta)])  # (row, col) of the band normal
        along = np.array([-normal[1], normal[0]])
        # Phase changes are frequent across the bands and rare along them.
        assert changes(image, normal) > 1.5 * changes(image, along)


def _torus_components(image):
    labelled, count = ndimage.label(image)
    parent = list(range(count + 1))

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in ((labelled[0], labelled[-1]), (labelled[:, 0], labelled[:, -1])):
        for u, v in zip(a, b):
            if u and v:
                parent[find(u)] = find(v)
    return len({find(k) for k in range(1, count + 1)})


def test_voronoi_spaced_grains_never_touch():
    spaced, labels = generate("VoronoiMediumSpaced", 6, seed=8, boundary_width=(2, 3))["VoronoiMediumSpaced"]
    for image, label in zip(spaced, labels):
        p = parse_label(label)
        grains = p["n_phase1_grains"]
        assert p["n_grains"] == p["grid_y"] * p["grid_x"]
        assert grains == round(p["target_volume_fraction"] * p["n_grains"])
        # Each phase-1 grain is its own connected piece (convex core inside the band).
        assert 0.9 * grains <= _torus_components(image) <= grains
    # Without the band, neighbouring phase-1 grains merge into fewer pieces.
    plain, labels = generate("VoronoiMedium", 6, seed=8, volume_fraction=0.5)["VoronoiMedium"]
    merged = [_torus_components(image) / parse_label(label)["n_phase1_grains"] for image, label in zip(plain, labels)]
    assert np.mean(merged) < 0.8


def test_voronoi_grain_counts_follow_grain_size():
    counts = {}
    for name in ("VoronoiLarge", "VoronoiMedium", "VoronoiSmall"):
        _, labels = generate(name, 8, size=256, seed=1)[name]
        counts[name] = [parse_label(label)["n_grains"] for label in labels]
    assert max(counts["VoronoiLarge"]) < min(counts["VoronoiMedium"])
    assert max(counts["VoronoiMedium"]) < min(counts["VoronoiSmall"])


def test_voids_are_phase_zero_discs_of_the_labelled_radius():
    images, labels = generate("VoidSmall", 4, seed=2, void_fraction=0.05)["VoidSmall"]
    for image, label in zip(images, labels):
        p = parse_label(label)
        r = p["void_radius"]
        areas = np.bincount(ndimage.label(1 - image)[0].ravel())[1:]
        # At 5 % void fraction most voids stand alone; a digital disc of radius r covers about
        # pi r^2 pixels, within a perimeter's worth.
        assert math.pi * (r - 0.75) ** 2 <= np.median(areas) <= math.pi * (r + 0.75) ** 2
        assert len(areas) >= 0.8 * p["n_voids"]
        assert image.mean() > 0.9


# ---------------------------------------------------------------- three phases


def test_grf3_cuts_one_field_at_two_levels_with_exact_fractions():
    images, labels = GENERATORS["GRF3"](3, size=48, seed=2)
    for image, label in zip(images, labels):
        p = parse_label(label)
        for k in range(3):  # exact pixel counts (to one pixel) of the drawn fractions
            assert abs(np.sum(image == k) - p[f"fraction_{k}"] * image.size) <= 1
        # phase 1 lies between 0 and 2: no pixel of phase 0 touches phase 2 except through a level
        # crossing, so 0-2 neighbours are far rarer than 0-1 and 1-2 neighbours
        right = np.roll(image, -1, axis=1)
        pairs = {(a, b): np.sum((image == a) & (right == b)) for a, b in ((0, 1), (1, 2), (0, 2))}
        assert pairs[(0, 2)] < 0.1 * min(pairs[(0, 1)], pairs[(1, 2)]), pairs


def test_voronoi3_gives_each_grain_one_of_three_phases():
    images, labels = GENERATORS["Voronoi3"](3, size=64, seed=4)
    assert set(np.unique(images)) == {0, 1, 2}
    for image, label in zip(images, labels):
        p = parse_label(label)
        for k in range(3):
            assert np.mean(image == k) == pytest.approx(p[f"fraction_{k}"], abs=1e-5)
            # whole grains: a phase's connected regions are unions of grains, so at most n_grains of them
            assert 1 <= ndimage.label(image == k)[1] <= p["n_grains"]
