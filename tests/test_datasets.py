import numpy as np
import pytest
from scipy import ndimage

from keras_unet.datasets import synthetic_cells


@pytest.fixture(scope="module")
def sample():
    return synthetic_cells(3, size=256, seed=7)


def test_shapes_dtypes_and_ids(sample):
    images, instances = sample
    assert images.shape == instances.shape == (3, 256, 256)
    assert images.dtype == np.uint8 and instances.dtype == np.int32
    for lab in instances:
        ids = np.unique(lab)
        assert ids[0] == 0
        np.testing.assert_array_equal(ids[1:], np.arange(1, len(ids)))  # 1..k
        assert len(ids) - 1 >= 25
        # every id is one 4-connected piece
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            assert ndimage.label(lab[sl] == i)[1] == 1


def test_deterministic_and_prefix_stable(sample):
    images, instances = sample
    again = synthetic_cells(3, size=256, seed=7)
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], instances)
    first = synthetic_cells(1, size=256, seed=7)
    np.testing.assert_array_equal(first[0][0], images[0])
    other = synthetic_cells(1, size=256, seed=8)
    assert not np.array_equal(other[1][0], instances[0])


def _touching_pairs(lab):
    pairs = set()
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:])):
        m = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[m], b[m])}
    return pairs


def test_dense_touching_cells_with_dark_membranes(sample):
    images, instances = sample
    for img, lab in zip(images, instances):
        n_cells = lab.max()
        # most cells touch a neighbour directly (no background between them)
        touching = {i for pair in _touching_pairs(lab) for i in pair}
        assert len(touching) >= 0.6 * n_cells
        # some extracellular background, but cells dominate
        assert 0.05 < (lab == 0).mean() < 0.5
        # borders between touching cells are darker than cell interiors
        border = np.zeros(lab.shape, bool)
        border[:, 1:] |= (
            (lab[:, 1:] != lab[:, :-1]) & (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
        )
        interior = ndimage.binary_erosion(lab > 0, iterations=4)
        assert img[border].mean() < img[interior].mean() - 40


def test_a_threshold_does_not_separate_touching_cells(sample):
    """The data needs boundaries learnt: no grey threshold gives the cells."""
    images, instances = sample
    img, lab = images[0].astype(float), instances[0]
    smooth = ndimage.gaussian_filter(img, 2)  # what a threshold-er would do
    best = 0.0
    for t in np.percentile(smooth, np.arange(5, 96, 5)):
        comps, _ = ndimage.label(smooth > t)
        # fraction of cells that own a component covering >50% of them alone
        hits = 0
        for i in range(1, lab.max() + 1):
            cell = lab == i
            ids, counts = np.unique(comps[cell], return_counts=True)
            j = ids[counts.argmax()]
            if (
                j
                and counts.max() > 0.5 * cell.sum()
                and (lab[comps == j] == i).mean() > 0.5
            ):
                hits += 1
        best = max(best, hits / lab.max())
    assert best < 0.6


def test_illumination_is_uneven(sample):
    images, instances = sample
    img, lab = images[0].astype(float), instances[0]
    # mean interior grey value differs between image quadrants
    q = [img[:128, :128], img[:128, 128:], img[128:, :128], img[128:, 128:]]
    m = [
        qi[lab[:128, :128] > 0].mean() if i == 0 else qi.mean()
        for i, qi in enumerate(q)
    ]
    assert np.ptp(m) > 3


def test_non_square_and_bad_arguments():
    images, instances = synthetic_cells(1, size=(64, 100), seed=0)
    assert images.shape == (1, 64, 100)
    for kwargs, match in [
        (dict(n=0), "`n`"),
        (dict(n=2.5), "`n`"),
        (dict(n=1, size=16), "`size`"),
        (dict(n=1, size=(64, 64, 3)), "`size`"),
        (dict(n=1, seed="a"), "`seed`"),
    ]:
        with pytest.raises(ValueError, match=match):
            synthetic_cells(**kwargs)
