import numpy as np
import pytest
from scipy import ndimage

from keras_unet.data.synthetic import synthetic_cells


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
        # a wrong type is a TypeError, a wrong value a ValueError
        with pytest.raises((ValueError, TypeError), match=match):
            synthetic_cells(**kwargs)


# ---------------------------------------------------------------------------
# Readers

import tifffile  # noqa: E402

from keras_unet.data.ctc import load_ctc  # noqa: E402
from keras_unet.data.folders import load_folders  # noqa: E402
from keras_unet.data.isbi2012 import load_isbi2012  # noqa: E402
from keras_unet.data.synthetic import load_synthetic  # noqa: E402
from keras_unet.io.images import write_image  # noqa: E402


def test_isbi_png_slices(shared_data):
    train = load_isbi2012(shared_data / "isbi2012-em")
    assert len(train) == 24 and train.names[0] == "00"
    assert (
        train.images[0].shape == (512, 512)
        and train.images[0].dtype == np.uint8
    )
    raw = cv2_read(shared_data / "isbi2012-em/train/label/05.png")
    np.testing.assert_array_equal(
        train.labels[5], (raw == 255).astype(np.int32)
    )
    assert train.class_of_interest == 0  # membrane
    test = load_isbi2012(shared_data / "isbi2012-em", split="test")
    assert len(test) == 30 and test.labels is None


def cv2_read(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_isbi_tiff_stacks(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 255, (3, 32, 40), dtype=np.uint8)
    lab = (rng.random((3, 32, 40)) > 0.3).astype(np.uint8) * 255
    tifffile.imwrite(
        tmp_path / "train-volume.tif", vol, photometric="minisblack"
    )
    tifffile.imwrite(
        tmp_path / "train-labels.tif", lab, photometric="minisblack"
    )
    tifffile.imwrite(
        tmp_path / "test-volume.tif", vol[:2], photometric="minisblack"
    )
    train = load_isbi2012(tmp_path)
    assert len(train) == 3
    np.testing.assert_array_equal(np.stack(train.images), vol)
    np.testing.assert_array_equal(np.stack(train.labels), lab // 255)
    assert len(load_isbi2012(tmp_path, "test")) == 2
    tifffile.imwrite(
        tmp_path / "train-labels.tif", lab[:2], photometric="minisblack"
    )
    with pytest.raises(ValueError, match="shape"):
        load_isbi2012(tmp_path)


def test_isbi_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ISBI 2012 layout"):
        load_isbi2012(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_isbi2012(tmp_path / "missing")
    (tmp_path / "train" / "image").mkdir(parents=True)
    write_image(tmp_path / "train/image/00.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(FileNotFoundError, match="train/label"):
        load_isbi2012(tmp_path)
    (tmp_path / "train" / "label").mkdir()
    write_image(
        tmp_path / "train/label/00.png",
        np.arange(64, dtype=np.uint8).reshape(8, 8),
    )
    with pytest.raises(ValueError, match="binary"):
        load_isbi2012(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_isbi2012(tmp_path, split="val")


def _ctc(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "01").mkdir()
    (tmp_path / "01_GT" / "SEG").mkdir(parents=True)
    (tmp_path / "01_GT" / "TRA").mkdir(parents=True)
    for t in range(4):
        tifffile.imwrite(
            tmp_path / f"01/t{t:03d}.tif",
            rng.integers(0, 4000, (40, 50), dtype=np.uint16),
        )
        tra = np.zeros((40, 50), np.uint16)
        tra[5:8, 5:8] = 1  # annotated cell below
        tra[30:33, 40:43] = 2  # a cell without segmentation
        tifffile.imwrite(tmp_path / f"01_GT/TRA/man_track{t:03d}.tif", tra)
    for t in (1, 3):  # partial annotation: frames 0 and 2 have none
        seg = np.zeros((40, 50), np.uint16)
        seg[2:12, 2:12] = 7
        seg[12:20, 2:12] = 300
        tifffile.imwrite(tmp_path / f"01_GT/SEG/man_seg{t:03d}.tif", seg)
    return tmp_path


def test_ctc_partial_annotation(tmp_path):
    data = load_ctc(_ctc(tmp_path))
    assert data.names == ["01_t001", "01_t003"]  # unannotated frames skipped
    assert data.images[0].dtype == np.uint16 and data.labels is None
    assert set(np.unique(data.instances[0])) == {0, 7, 300}
    ignore = data.ignore[0]
    assert ignore[31, 41] and not ignore[6, 6] and not ignore[0, 49]
    assert not (ignore & (data.instances[0] > 0)).any()
    assert load_ctc(tmp_path, ignore_unannotated=False).ignore is None


def test_ctc_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_GT/SEG"):
        load_ctc(tmp_path)
    _ctc(tmp_path)
    (tmp_path / "01" / "t003.tif").unlink()
    with pytest.raises(FileNotFoundError, match="t003.tif"):
        load_ctc(tmp_path)


def test_folders_classes_instances_and_formats(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    rng = np.random.default_rng(2)
    grey8 = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    grey16 = rng.integers(0, 60000, (20, 30), dtype=np.uint16)
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    write_image(tmp_path / "img/a.png", grey8)
    write_image(tmp_path / "img/b.tif", grey16)
    write_image(tmp_path / "img/c.png", rgb)
    mask = (rng.random((20, 30)) > 0.5).astype(np.uint8) * 255
    for stem in "abc":
        write_image(tmp_path / f"msk/{stem}_mask.png", mask)
    data = load_folders(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask")
    assert data.names == ["a", "b", "c"]
    assert data.images[1].dtype == np.uint16 and data.images[2].shape == (
        20,
        30,
        3,
    )
    np.testing.assert_array_equal(data.labels[0], mask // 255)
    assert data.num_classes == 2
    inst = load_folders(
        tmp_path / "img",
        tmp_path / "msk",
        mask_suffix="_mask",
        mask_type="instances",
    )
    assert inst.labels is None and inst.instances[0].max() == 255
    (tmp_path / "msk/c_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"c\.png"):
        load_folders(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        load_folders(empty, tmp_path / "msk")


def test_folders_multiclass_and_size_mismatch(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    write_image(tmp_path / "i/x.png", np.zeros((10, 10), np.uint8))
    write_image(
        tmp_path / "m/x.png", np.array([[0, 1, 2, 3]] * 10, np.uint8)[:, :4]
    )
    with pytest.raises(ValueError, match=r"is \(10, 4\) but image"):
        load_folders(tmp_path / "i", tmp_path / "m")
    write_image(
        tmp_path / "m/x.png", np.tile([0, 1, 2, 3, 4], (10, 2)).astype(np.uint8)
    )
    data = load_folders(tmp_path / "i", tmp_path / "m")
    assert data.num_classes == 5
    with pytest.raises(ValueError, match="num_classes=3"):
        load_folders(tmp_path / "i", tmp_path / "m", num_classes=3)


def test_load_synthetic_and_subset():
    data = load_synthetic(3, size=64, seed=4)
    assert len(data) == 3 and data.instances[0].shape == (64, 64)
    sub = data.subset([2, 0])
    assert sub.names == ["synthetic_002", "synthetic_000"]
    np.testing.assert_array_equal(sub.instances[1], data.instances[0])


def test_folders_images_and_masks_in_one_folder_and_duplicates(tmp_path):
    rng = np.random.default_rng(5)
    for stem in ("a", "b"):
        write_image(
            tmp_path / f"{stem}.png",
            rng.integers(0, 255, (8, 9), dtype=np.uint8),
        )
        write_image(
            tmp_path / f"{stem}_mask.png",
            (rng.random((8, 9)) > 0.5).astype(np.uint8),
        )
    data = load_folders(tmp_path, tmp_path, mask_suffix="_mask")
    assert data.names == ["a", "b"]
    write_image(tmp_path / "a.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match="share a name stem"):
        load_folders(tmp_path, tmp_path, mask_suffix="_mask")


@pytest.mark.parametrize(
    "values, match",
    [
        ([0, 128], r"values \[0, 128\], not the classes 0..K-1"),
        ([0, 1, 3], r"values \[0, 1, 3\], not the classes"),
        (list(range(40)), r"40 values up to 39 .*object ids\?"),
    ],
)
def test_folders_refuse_masks_that_are_not_classes(tmp_path, values, match):
    """A mask saved as 0/128, or object ids read as classes, would silently
    become a task of 129 or 40 classes."""
    write_image(tmp_path / "i/x.png", np.zeros((8, 40), np.uint8))
    mask = np.resize(np.array(values, np.uint8), (8, 40))
    write_image(tmp_path / "m/x.png", mask)
    with pytest.raises(ValueError, match=match):
        load_folders(tmp_path / "i", tmp_path / "m")
    # said explicitly, the values are classes
    k = max(values) + 1
    assert (
        load_folders(tmp_path / "i", tmp_path / "m", num_classes=k).num_classes
        == k
    )
    if values == [0, 128]:  # 0/255 is the one mapping done silently
        write_image(tmp_path / "m/x.png", (mask > 0).astype(np.uint8) * 255)
        assert load_folders(tmp_path / "i", tmp_path / "m").num_classes == 2


def test_float_masks_of_whole_numbers_are_masks(tmp_path):
    import tifffile

    write_image(tmp_path / "i/x.png", np.zeros((8, 40), np.uint8))
    (tmp_path / "m").mkdir()
    mask = np.resize(np.array([0.0, 1.0], np.float32), (8, 40))
    tifffile.imwrite(tmp_path / "m/x.tif", mask)
    data = load_folders(tmp_path / "i", tmp_path / "m")
    assert data.num_classes == 2
    tifffile.imwrite(tmp_path / "m/x.tif", mask * 0.5)
    with pytest.raises(ValueError, match="fractional values"):
        load_folders(tmp_path / "i", tmp_path / "m")
