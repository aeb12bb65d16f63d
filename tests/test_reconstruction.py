"""Statistical reconstruction: error measure, incremental swaps, both methods, targets and their checks."""

import json
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from microlatent.data.generators import circles
from microlatent.errors import DataError, InputError
from microlatent.losses import msess
from microlatent.reconstruction import (
    as_target,
    cross_entropy_error,
    from_image,
    from_map,
    random_labels,
    reconstruct,
    statistics_error,
)
from microlatent.reconstruction.swaps import SwapState, anneal_state
from microlatent.stats import offsets, resolve_pairs, two_point


def disc_target(size=32, seed=0):
    """A small periodic 2-phase microstructure: discs (volume fraction ~0.2)."""
    return circles(1, size=size, seed=seed, n_discs=4, radius=size / 9, periodic=True)[0][0]


def three_phase_target(size=24):
    """Phase 1 discs and phase 2 stripes in a phase-0 matrix."""
    labels = np.zeros((size, size), np.int64)
    labels[:, ::8] = 2
    labels[:, 1::8] = 2
    labels[disc_target(size, seed=3) == 1] = 1
    return labels


def random_image_error(target, seed=0, repeats=3):
    rng = np.random.default_rng(seed)
    return float(np.mean([statistics_error(target, random_labels(target, rng))[0] for _ in range(repeats)]))


# ------------------------------------------------------------------------------------------ measure


def test_statistics_error_is_msess_over_all_pairs_and_offsets():
    image = disc_target().astype(np.float64)
    other = np.roll(disc_target(seed=1), 3, axis=0).astype(np.float64)
    expected = msess(torch.from_numpy(other)[None], torch.from_numpy(image)[None], pairs="all").item()
    assert statistics_error(image, other)[0] == pytest.approx(expected, rel=1e-9)
    by_hand = ((two_point(image, pairs="all") - two_point(other, pairs="all")) ** 2).sum(1).mean()
    assert statistics_error(image, other.astype(np.uint8))[0] == pytest.approx(by_hand, rel=1e-9)
    # a periodic shift has the same statistics
    assert statistics_error(image, np.roll(image, (5, 7), axis=(0, 1)))[0] == pytest.approx(0, abs=1e-15)
    assert cross_entropy_error(image, np.roll(image, 4, axis=1))[0] == pytest.approx(0, abs=1e-9)
    assert cross_entropy_error(image, other)[0] > 0


# ------------------------------------------------------------------------------------ swap updates


@pytest.mark.parametrize(
    ("periodic", "n_phases", "crop"),
    [
        (True, 2, None),
        (False, 2, None),
        (True, 3, None),
        (False, 3, None),
        (True, 2, 9),
        (False, 2, 11),
    ],
)
def test_incremental_swap_update_equals_full_recomputation(periodic, n_phases, crop):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, n_phases, (14, 17))
    target = from_image(labels, periodic=periodic, n_phases=n_phases)
    if crop is not None:
        f = two_point(
            np.eye(n_phases)[labels].transpose(2, 0, 1)[None].astype(np.float64),
            periodic=periodic,
            pairs="all",
            crop=crop,
        )[0]
        target = from_map(f, periodic=periodic, size=labels.shape)
        assert target.crop == (crop, crop)
    state = SwapState(rng.permutation(labels.ravel()).reshape(labels.shape), target)
    for _ in range(400):
        a, b, p, q = state.propose(rng, 6)
        change, counts = state.energy_changes(a, b, p, q)
        i = int(rng.integers(len(p)))
        before = state.energy
        state.apply(a, b, p[i], q[i], counts(i))
        # the changes are scored in float32; the counts themselves are exact integers
        assert state.energy - before == pytest.approx(change[i], rel=1e-3, abs=1e-5 * before)
    np.testing.assert_array_equal(state.S, state.full_counts())
    assert state.energy == pytest.approx(statistics_error(target, state.labels.astype(np.int64))[0], rel=1e-9)
    # swaps preserve every phase's pixel count
    np.testing.assert_array_equal(
        np.bincount(state.labels.ravel(), minlength=n_phases), np.bincount(labels.ravel(), minlength=n_phases)
    )


def test_greedy_swaps_never_raise_the_error():
    target = from_image(disc_target())
    state = SwapState(random_labels(target, np.random.default_rng(0)), target)
    history = []
    anneal_state(state, np.random.default_rng(0), steps=3000, greedy=True, history=history)
    errors = [h["error"] for h in history]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]


# ----------------------------------------------------------------------------------- reconstruction


@pytest.mark.parametrize(
    ("method", "optimizer", "loss"),
    [
        ("gradient", "lbfgs", "cess"),
        ("gradient", "adam", "cess"),
        ("gradient", "adam", "msess"),
        ("annealing", None, "cess"),
    ],
)
def test_reconstruction_matches_the_statistics_far_better_than_a_random_image(method, optimizer, loss):
    image = disc_target()
    target = as_target(image)
    steps = 300 if method == "gradient" else 30_000
    options = {"optimizer": optimizer} if optimizer else {}
    results = reconstruct(image, method=method, loss=loss, n_samples=2, steps=steps, seed=0, **options)
    assert len(results) == 2
    baseline = random_image_error(target)
    pixels = image.size
    for r in results:
        assert r.image.shape == image.shape and r.image.dtype == np.uint8
        assert set(np.unique(r.image)) <= {0, 1}  # binary
        assert abs(r.image.sum() - image.sum()) <= 1  # volume fraction preserved to a pixel
        assert r.volume_fractions[1] == pytest.approx(image.mean(), abs=1 / pixels)
        assert r.error < 0.1 * baseline, (r.error, baseline)
        assert r.error == pytest.approx(statistics_error(target, r.image)[0], rel=1e-9)
        assert r.history and r.history[-1]["error"] == pytest.approx(r.error) and r.seconds > 0
        assert r.cess >= -1e-9
        if method == "gradient":
            assert r.soft_error is not None and r.soft.shape == image.shape
        else:
            assert r.soft_error is None


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_gradient_reconstruction_is_reproducible_and_runs_to_a_time_limit(optimizer):
    image = disc_target(24)
    first = reconstruct(image, steps=60, seed=3, polish=0, optimizer=optimizer)[0]
    second = reconstruct(image, steps=60, seed=3, polish=0, optimizer=optimizer)[0]
    np.testing.assert_array_equal(first.image, second.image)
    assert first.optimizer == optimizer
    budget = reconstruct(image, time_limit=0.5, seed=3, optimizer=optimizer)[0]
    assert budget.seconds < 1.5
    assert budget.seconds > 0.45 or budget.error < 1e-20  # the whole budget, unless it matched exactly
    timed = reconstruct(image, method="annealing", time_limit=0.3, seed=1)[0]
    assert 0.25 < timed.seconds < 3 and timed.steps > 0


def test_three_phase_reconstruction_works():
    labels = three_phase_target()
    target = from_image(labels)
    assert target.n_phases == 3 and target.statistics.shape == (9, 24, 24)
    baseline = random_image_error(target)
    for method, steps in (("gradient", 300), ("annealing", 20_000)):
        r = reconstruct(labels, method=method, steps=steps, seed=0)[0]
        assert set(np.unique(r.image)) <= {0, 1, 2}
        np.testing.assert_allclose(r.volume_fractions, target.volume_fractions, atol=1.5 / labels.size)
        assert r.error < 0.25 * baseline, (method, r.error, baseline)


def test_non_periodic_reconstruction_works():
    image = disc_target(20)
    target = from_image(image, periodic=False)
    assert target.statistics.shape == (4, 39, 39)
    r = reconstruct(image, periodic=False, steps=200, seed=0)[0]
    assert r.error < 0.2 * random_image_error(target)


def test_target_statistics_file_and_mapping_and_volume_fraction_override(tmp_path):
    image = disc_target()
    f = two_point(image.astype(np.float64)[None], pairs="auto")  # autocorrelations only, as --pairs auto saves
    ry, rx = offsets(image.shape)
    path = tmp_path / "stats.npz"
    np.savez(
        path,
        statistics=f,
        pairs=np.array(resolve_pairs("auto", 2)),
        offsets_y=ry,
        offsets_x=rx,
        periodic=True,
        names=np.array(["discs"]),
    )
    target = as_target(str(path))
    assert target.name == "discs" and target.image is None and target.shape == image.shape
    np.testing.assert_allclose(target.statistics, as_target(image).statistics, atol=1e-6)
    assert target.volume_fractions[1] == pytest.approx(image.mean())
    r = reconstruct(np.load(path), steps=100, seed=0, polish=0)[0]
    assert r.image.shape == image.shape
    shifted = reconstruct(path, steps=20, volume_fraction=0.3, polish=0)[0]
    assert shifted.volume_fractions[1] == pytest.approx(0.3, abs=1 / image.size)


def test_cropped_statistics_reconstruct_at_the_given_size():
    image = disc_target()
    crop = two_point(image.astype(np.float64), pairs="all", crop=15)[0]
    assert from_map(crop).shape == (15, 15)  # without a size, the full map of a 15 x 15 image
    with pytest.raises(InputError, match="more offsets than"):
        from_map(crop, size=10)
    target = from_map(crop, size=32)
    r = reconstruct(target, steps=150, seed=0)[0]
    assert r.image.shape == (32, 32)
    assert r.error < 0.2 * random_image_error(target)


def test_lbfgs_finds_an_image_with_exactly_the_target_statistics_and_restarts_when_stalled(monkeypatch):
    """From 2-point statistics alone a generic image is fixed up to translation and point reflection:
    the L-BFGS-B search finds one (error ~1e-30); a run that stalls is restarted from a new field."""
    image = disc_target(24)
    r = reconstruct(image, steps=3000, seed=0, polish=0, optimizer="lbfgs")[0]
    assert r.error < 1e-20, r.error
    matches = [
        np.array_equal(np.roll(r.image, (dy, dx), (0, 1)), image.astype(np.uint8))
        or np.array_equal(np.roll(r.image[::-1, ::-1], (dy, dx), (0, 1)), image.astype(np.uint8))
        for dy in range(24)
        for dx in range(24)
    ]
    assert any(matches)  # a translate or point reflection of the target
    from microlatent.reconstruction import lbfgs

    monkeypatch.setattr(lbfgs, "STALL_GAIN", 1.0)  # every run counts as stalled after STALL_WINDOW evaluations
    restarted = reconstruct(image, steps=450, seed=0, polish=0, optimizer="lbfgs")[0]
    assert restarted.runs >= 4


def test_parallel_workers_keep_the_best_search_and_an_exact_match_stops_the_others():
    """Worker 0 runs the one-process search itself, so with the same evaluations each, two workers are
    never worse than one; the second worker's seed differs, so together they find more."""
    rng = np.random.default_rng(7)
    image = (rng.random((24, 24)) < 0.35).astype(np.float64)
    one = reconstruct(image, steps=150, seed=5, polish=0, optimizer="lbfgs")[0]
    two = reconstruct(image, steps=150, seed=5, polish=0, optimizer="lbfgs", workers=2)[0]
    assert two.error <= one.error
    assert two.steps > one.steps  # both workers' evaluations are counted
    assert two.error == pytest.approx(statistics_error(image, two.image)[0])
    # An easy target: a worker matches exactly well before the time limit and stops the other.
    started = time.perf_counter()
    (fast,) = reconstruct(disc_target(24), time_limit=30, seed=0, optimizer="lbfgs", workers=2)
    assert fast.error < 1e-20 and time.perf_counter() - started < 15


def test_workers_are_checked():
    image = disc_target(16)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="workers must be"):
            reconstruct(image, steps=5, workers=bad)
    with pytest.raises(InputError, match="takes workers=1"):
        reconstruct(image, method="annealing", steps=5, workers=2)
    with pytest.raises(InputError, match="takes workers=1"):
        reconstruct(image, steps=5, optimizer="adam", workers=2)


@pytest.mark.parametrize("crop", [None, 7, (5, 9)])
@pytest.mark.parametrize("shape", [(20, 24), (21, 25)])  # odd widths: rfft2 has no Nyquist column
def test_closed_form_periodic_objective_matches_autograd(crop, shape):
    from microlatent.reconstruction.lbfgs import PeriodicObjective, TorchObjective

    rng = np.random.default_rng(4)
    image = (rng.random(shape) < 0.3).astype(np.float64)
    statistics = two_point(image, pairs="all", crop=crop)[0]
    target = from_map(statistics, size=shape) if crop else from_image(image)
    assert PeriodicObjective(target).every_offset == (crop is None)  # both paths are checked
    values = rng.random(shape[0] * shape[1])
    closed, closed_gradient = PeriodicObjective(target)(values)
    autograd, autograd_gradient = TorchObjective(target)(values)
    assert closed == pytest.approx(autograd, rel=1e-12)
    np.testing.assert_allclose(closed_gradient, autograd_gradient, rtol=0, atol=1e-13 * np.abs(autograd_gradient).max())


def test_a_budget_too_short_for_one_evaluation_still_gives_a_scored_image():
    image = disc_target(16)
    (r,) = reconstruct(image, time_limit=1e-6, seed=0, optimizer="lbfgs")
    assert r.image.shape == image.shape and r.error == pytest.approx(statistics_error(image, r.image)[0])
    assert abs(int(r.image.sum()) - int(image.sum())) <= 1  # the target's volume fraction


def test_optimizer_choices_are_checked():
    image = disc_target(16)
    with pytest.raises(InputError, match="optimizer must be"):
        reconstruct(image, steps=5, optimizer="sgd")
    with pytest.raises(InputError, match="belong to optimizer='adam'"):
        reconstruct(image, steps=5, lr=0.1)
    with pytest.raises(InputError, match="handles 2 phases"):
        reconstruct(three_phase_target(), steps=5, optimizer="lbfgs")


# ------------------------------------------------------------------------------------ bad targets


def valid_map():
    return two_point(disc_target().astype(np.float64), pairs="all")[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda f: f * 1.5, r"must lie in \[0, 1\]"),
        (lambda f: np.concatenate([f[:3], f[3:] * 0.5]), "sum to 1 at every offset"),
        (lambda f: f[0], r"one map \(K, H', W'\)"),
        (lambda f: f[:3], "not all ordered pairs"),
        (lambda f: np.roll(f, (5, 3), axis=(1, 2)), "not a centred map|peaks at offset"),
        (lambda f: np.concatenate([f[:3], np.roll(f[3:], 1, axis=1)]), "sum to 1 at every offset"),
        (lambda f: np.where(np.isfinite(f), np.nan, f), "NaN"),
        (lambda f: np.stack([f, f]), r"one map"),
    ],
)
def test_invalid_statistics_maps_raise_one_line_input_errors(make, message):
    with pytest.raises(InputError, match=message) as info:
        from_map(make(valid_map()))
    assert "\n" not in str(info.value)


def test_inconsistent_offsets_pairs_and_files_are_reported(tmp_path):
    f = valid_map()
    ry, rx = offsets((32, 32))
    with pytest.raises(InputError, match="offsets_y has 31 offsets"):
        from_map(f, offsets_y=ry[:-1], offsets_x=rx)
    with pytest.raises(InputError, match="offsets_x runs 0..31, not the centred"):
        from_map(f, offsets_y=ry, offsets_x=np.arange(32))
    with pytest.raises(InputError, match="non-periodic map of every offset is"):
        from_map(f, periodic=False)
    with pytest.raises(InputError, match="2 pairs are named but the map has 4"):
        from_map(f, pairs=[(0, 0), (1, 1)])
    with pytest.raises(InputError, match="needs every ordered phase pair"):
        from_map(f[[0, 3]], pairs="auto", periodic=False, size=32)
    bad_pair = f.copy()
    bad_pair[3] = np.roll(bad_pair[3], 1, axis=0)
    with pytest.raises(InputError):
        from_map(bad_pair)
    missing = tmp_path / "x.npz"
    np.savez(missing, values=f)
    with pytest.raises(DataError, match="not a statistics file"):
        as_target(missing)
    with pytest.raises(DataError, match="no such file"):
        as_target(tmp_path / "nothing.npz")
    periodic_file = tmp_path / "p.npz"
    np.savez(periodic_file, statistics=f[None], pairs=np.array(resolve_pairs("all", 2)), periodic=True)
    with pytest.raises(InputError, match="the statistics are periodic, but non-periodic"):
        as_target(periodic_file, periodic=False)
    with pytest.raises(InputError, match="no index 3"):
        as_target(periodic_file, index=3)


def test_bad_arguments_raise_input_errors():
    image = disc_target(16)
    with pytest.raises(InputError, match="method must be"):
        reconstruct(image, method="genetic")
    with pytest.raises(InputError, match="loss must be"):
        reconstruct(image, loss="mse")
    with pytest.raises(InputError, match="n_samples"):
        reconstruct(image, n_samples=0)
    with pytest.raises(InputError, match="unknown gradient option"):
        reconstruct(image, steps=2, learning_rate=1, optimizer="adam")
    with pytest.raises(InputError, match="unknown annealing option"):
        reconstruct(image, method="annealing", steps=2, lr=1)
    with pytest.raises(InputError, match=r"values must lie in \[0, 1\]"):
        reconstruct(image * 2.0)
    with pytest.raises(InputError, match="volume fractions"):
        reconstruct(image, volume_fraction=1.5)


# -------------------------------------------------------------------------------------------- CLI


def test_cli_reconstructs_from_a_statistics_file(tmp_path):
    from microlatent.cli.synthesize import synthesize

    image = disc_target()
    f = two_point(image.astype(np.float64)[None], pairs="all")
    ry, rx = offsets(image.shape)
    stats_file = tmp_path / "s.npz"
    np.savez(
        stats_file,
        statistics=f,
        pairs=np.array(resolve_pairs("all", 2)),
        offsets_y=ry,
        offsets_x=rx,
        periodic=True,
        names=np.array(["discs[0]"]),
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        synthesize, [str(stats_file), "--out", str(out), "--n", "2", "--steps", "80", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("statistics error (MSESS)") == 2
    assert {p.name for p in out.iterdir()} >= {
        "discs_0_gradient_0.npy",
        "discs_0_gradient_1.png",
        "discs_0_gradient_figure.png",
        "summary.json",
    }
    summary = json.loads((out / "summary.json").read_text())
    saved = np.load(out / "discs_0_gradient_0.npy")
    assert summary[0]["error"] == pytest.approx(statistics_error(as_target(stats_file), saved)[0], rel=1e-9)

    np.save(tmp_path / "img.npy", image.astype(np.float32))
    result = CliRunner().invoke(
        synthesize, [str(tmp_path / "img.npy"), "--out", str(out), "--method", "annealing", "--steps", "2000"]
    )
    assert result.exit_code == 0, result.output
    assert "annealing: statistics error" in result.output

    bad = tmp_path / "bad.npz"
    np.savez(bad, statistics=f * 2)
    result = CliRunner().invoke(synthesize, [str(bad), "--out", str(out)])
    assert isinstance(result.exception, InputError) and "[0, 1]" in str(result.exception)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_time_budget_in_a_fresh_process_is_spent_on_the_search_and_all_of_it(optimizer):
    """The first torch.optim.Adam of a process imports torch._dynamo (1-3 s): that happened inside the
    budget, so a 2 s reconstruction spent half of it before step 0. The warm-up now runs before the
    clock starts; step 0 is recorded within milliseconds (0.5 s leaves room for a loaded machine)."""
    import json
    import subprocess
    import sys

    script = (
        "import json, numpy as np\n"
        "from microlatent.data import generate\n"
        "from microlatent.reconstruction import reconstruct\n"
        "from microlatent.reconstruction.target import from_image\n"
        "(images, _), = generate('GRF', 1, size=32, seed=0).values()\n"
        "r = reconstruct(from_image(images[0].astype(np.float32)), method='gradient', time_limit=1.0, device='cpu', "
        f"optimizer='{optimizer}')\n"
        "print(json.dumps([r[0].history[0]['seconds'], r[0].seconds, r[0].error]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    first_step, total, error = json.loads(out.stdout.strip().splitlines()[-1])
    assert first_step < 0.5, (first_step, out.stderr[-500:])
    assert total <= 1.25
    assert total >= 0.95 or error < 1e-20  # the whole budget (the polish once left ~11 % unused), unless exact
