"""Training-time augmentation: what it keeps (periodic statistics, the image's pixels) and that it is
reproducible from its generator."""

import pytest
import torch

from microlatent.data.augment import augment, check_augmentations
from microlatent.errors import InputError
from microlatent.stats import two_point
from microlatent.training.config import DEFAULTS, check_values, merge


def _batch(n=12, size=16, seed=0):
    return (torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) > 0.6).float()


def test_roll_keeps_periodic_statistics_exactly_and_moves_pixels():
    images = _batch()
    rolled = augment(images, ["roll"], torch.Generator().manual_seed(1))
    assert not torch.equal(rolled, images)
    f_in = two_point(images.double(), periodic=True, pairs="all")
    f_out = two_point(rolled.double(), periodic=True, pairs="all")
    assert torch.allclose(f_in, f_out, atol=1e-12)


def test_dihedral_maps_statistics_onto_transformed_offsets_and_reaches_all_eight():
    images = _batch(n=200)
    out = augment(images, ["dihedral"], torch.Generator().manual_seed(2))
    seen = set()
    for image, result in zip(images, out):
        candidates = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
        candidates += [c.flip(-1) for c in candidates]
        matches = [i for i, c in enumerate(candidates) if torch.equal(c, result)]
        assert matches, "the output is not a symmetry of the square applied to its input"
        seen.add(matches[0])
        f_in = two_point(image[None].double(), periodic=True, pairs=[(1, 1)])
        f_out = two_point(result[None].double(), periodic=True, pairs=[(1, 1)])
        assert torch.allclose(torch.sort(f_in.flatten()).values, torch.sort(f_out.flatten()).values, atol=1e-12)
    assert seen == set(range(8))


def test_non_square_images_get_flips_only():
    images = (torch.rand(40, 1, 8, 12, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    out = augment(images, ["dihedral"], torch.Generator().manual_seed(4))
    for image, result in zip(images, out):
        assert any(torch.equal(result, c) for c in (image, image.flip(-1), image.flip(-2), image.flip(-1).flip(-2)))


def test_same_generator_same_images_and_a_shard_gets_its_rows_of_the_whole_batch():
    images = _batch(n=10)
    kinds = ["roll", "dihedral"]
    whole = augment(images, kinds, torch.Generator().manual_seed(5))
    assert torch.equal(whole, augment(images, kinds, torch.Generator().manual_seed(5)))
    part = augment(images[4:7], kinds, torch.Generator().manual_seed(5), start=4, batch_size=10)
    assert torch.equal(part, whole[4:7])


def test_unknown_augmentation_is_refused_in_the_config():
    assert check_augmentations(None) == ()
    assert check_augmentations("roll") == ("roll",)
    config = merge(DEFAULTS, {"data": {"augment": ["roll", "mirror"]}})
    with pytest.raises(InputError, match="data.augment"):
        check_values(config)
