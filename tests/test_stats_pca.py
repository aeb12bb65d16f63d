"""PCA of 2-point statistics: against its definition and scikit-learn, exact with every component,
the mean code decodes to the mean statistics, and it saves without pickles."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from microlatent.data import generate
from microlatent.errors import DataError, InputError
from microlatent.stats import StatisticsPCA, two_point


@pytest.fixture(scope="module")
def images():
    sets = [generate(kind, 8, size=24, seed=3)[kind][0] for kind in ("GRF", "VoronoiSmall", "RandomEllipse")]
    return np.concatenate(sets).astype(np.float64)


def test_codes_equal_scikit_learns_pca_of_the_flattened_autocorrelations(images):
    pca = StatisticsPCA(n_components=5, svd_solver="full").fit(images)
    features = two_point(images, pairs=[(1, 1)]).reshape(len(images), -1)
    reference = PCA(n_components=5, svd_solver="full").fit(features)
    codes, expected = pca.transform(images), reference.transform(features)
    signs = np.sign((codes * expected).sum(axis=0))  # a component's sign is arbitrary
    np.testing.assert_allclose(codes * signs, expected, atol=1e-10)
    np.testing.assert_allclose(pca.explained_variance_ratio_, reference.explained_variance_ratio_, rtol=1e-10)
    assert (np.diff(pca.explained_variance_ratio_) <= 1e-15).all() and pca.explained_variance_ratio_.sum() <= 1


def test_every_component_recovers_the_statistics_and_the_mean_code_gives_the_mean(images):
    stats = two_point(images, pairs="all")
    pca = StatisticsPCA(n_components=len(images), pairs="all", svd_solver="full").fit(images)  # N < D: every component
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(images)), stats, atol=1e-12)
    np.testing.assert_allclose(pca.inverse_transform(np.zeros((1, len(images))))[0], stats.mean(axis=0), atol=1e-14)
    few = StatisticsPCA(n_components=3, pairs="all").fit(images)
    error = np.abs(few.inverse_transform(few.transform(images)) - stats).mean()
    assert 0 < error < np.abs(stats - stats.mean(axis=0)).mean()  # 3 components: better than the mean, not exact


def test_save_and_load_give_the_same_codes_and_refuse_other_files(images, tmp_path):
    pca = StatisticsPCA(n_components=4, crop=9, periodic=False).fit(images)
    loaded = StatisticsPCA.load(pca.save(tmp_path / "pca.npz"))
    np.testing.assert_array_equal(loaded.transform(images[:5]), pca.transform(images[:5]))
    assert loaded.inverse_transform(loaded.transform(images[:2])).shape == (2, 1, 9, 9)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="not a saved StatisticsPCA"):
        StatisticsPCA.load(tmp_path / "other.npz")
    with pytest.raises(InputError, match="n_components = 99 is more than"):
        StatisticsPCA(n_components=99).fit(images)
    with pytest.raises(InputError, match="fitted on"):
        pca.transform(np.zeros((2, 16, 16)))


def test_codes_decode_to_images_with_the_encoded_statistics(images):
    from microlatent.reconstruction import from_image, statistics_error

    pca = StatisticsPCA(n_components=12).fit(images)
    mixed = [i for i, image in enumerate(images) if 0.1 < image.mean() < 0.9]  # one of each class
    originals = images[[mixed[0], [i for i in mixed if i >= 8][0], [i for i in mixed if i >= 16][0]]]
    decoded = pca.decode(pca.transform(originals), steps=300)
    assert decoded.shape == originals.shape and set(np.unique(decoded)) <= {0, 1}
    rng = np.random.default_rng(0)
    for original, image in zip(originals, decoded):
        target = from_image(original)
        random = (rng.random(original.shape) < original.mean()).astype(np.uint8)
        assert statistics_error(target, image[None])[0] < 0.2 * statistics_error(target, random[None])[0]
