"""Tests for keras_unet.data.weight_maps, against slow references written
here."""

import doctest
import itertools
import math
import os

import numpy as np
import pytest
from scipy import ndimage

from keras_unet.data import weight_cache, weight_maps
from keras_unet.data.synthetic import synthetic_cells
from keras_unet.io.images import read_image, write_image

# ---------------------------------------------------------------------------
# Independent references: obviously correct, slow.
# ---------------------------------------------------------------------------


def ref_two_nearest(instances):
    """One full-image distance transform per cell; the two smallest."""
    ids = [i for i in np.unique(instances) if i != 0]
    if not ids:
        inf = np.full(instances.shape, np.inf)
        return inf, inf.copy()
    stack = np.stack(
        [ndimage.distance_transform_edt(instances != i) for i in ids]
    )
    stack = np.sort(stack, axis=0)
    d1 = stack[0]
    d2 = stack[1] if len(ids) > 1 else np.full(instances.shape, np.inf)
    return d1, d2


def ref_border(instances, w0=10.0, sigma=5.0):
    d1, d2 = ref_two_nearest(instances)
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return np.where(instances == 0, term, 0.0)


def ref_separate(instances, connectivity=2):
    """Pixel loop: background if a neighbour has another non-zero id."""
    h, w = instances.shape
    if connectivity == 2:
        offsets = [
            (dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0)
        ]
    else:
        offsets = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    out = instances.copy()
    for y, x in itertools.product(range(h), range(w)):
        i = instances[y, x]
        if i == 0:
            continue
        for dy, dx in offsets:
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w:
                j = instances[yy, xx]
                if j != 0 and j != i:
                    out[y, x] = 0
                    break
    return out


def ref_balance(mask):
    """N / (K * n_k), by counting each class with a Python loop."""
    out = np.zeros(mask.shape)
    classes = sorted(set(mask.ravel().tolist()))
    for k in classes:
        n_k = int((mask == k).sum())
        out[mask == k] = mask.size / (len(classes) * n_k)
    return out


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


def random_instances(seed, size=72, n=12, touching=True):
    """Blobs with non-consecutive ids; some touch, one id in two pieces."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((size, size), np.int32)
    ids = rng.choice(np.arange(3, 5000), size=n, replace=False)
    for cell_id in ids:
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(3, 10, 2)
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if touching:
            out[blob] = cell_id  # later blobs overwrite: shared borders
        else:
            out[blob & (out == 0)] = cell_id
    # One id in two pieces.
    out[2:5, 2:5] = ids[0]
    out[size - 5 : size - 2, size - 5 : size - 2] = ids[0]
    return out


@pytest.fixture(scope="module")
def synthetic_instances():
    _, instances = synthetic_cells(1, size=96, seed=3)
    return instances[0]


# ---------------------------------------------------------------------------
# d1, d2 and the border term
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_nearest_exact_without_cutoff(seed):
    inst = random_instances(seed)
    d1, d2 = weight_maps.two_nearest_distances(inst)
    r1, r2 = ref_two_nearest(inst)
    np.testing.assert_array_equal(d1, r1)
    np.testing.assert_array_equal(d2, r2)


@pytest.mark.parametrize("max_distance", [0.0, 3.0, 7.5, 20.0])
def test_two_nearest_exact_within_cutoff(synthetic_instances, max_distance):
    inst = synthetic_instances
    d1, d2 = weight_maps.two_nearest_distances(inst, max_distance)
    r1, r2 = ref_two_nearest(inst)
    inside = r1 + r2 <= max_distance
    np.testing.assert_array_equal(d1[inside], r1[inside])
    np.testing.assert_array_equal(d2[inside], r2[inside])
    # Outside, the sum is never underestimated.
    assert np.all(d1[~inside] + d2[~inside] > max_distance)
    assert np.all(d1 >= r1) and np.all(d2 >= r2)


def test_border_term_by_hand():
    # Background pixel between two cells: d1 = d2 = 1.
    inst = np.array([[1, 1, 0, 2, 2]])
    b = weight_maps.border_weights(inst, w0=10, sigma=5)
    assert b[0, 2] == pytest.approx(10 * math.exp(-4 / 50), rel=1e-6)
    assert np.all(b[inst != 0] == 0)
    # d1 = 2, d2 = 3 on the second background pixel of a 2-pixel gap
    # (d1 = 1, d2 = 2 on the first): symmetric values.
    inst = np.array([[4, 0, 0, 9]])
    b = weight_maps.border_weights(inst, w0=2, sigma=3)
    assert b[0, 1] == pytest.approx(2 * math.exp(-9 / 18), rel=1e-6)
    assert b[0, 2] == pytest.approx(b[0, 1])


@pytest.mark.parametrize(
    "w0, sigma, tol",
    [(10.0, 5.0, 1e-6), (10.0, 5.0, 1e-3), (3.0, 2.0, 1e-6), (10.0, 5.0, 0)],
)
@pytest.mark.parametrize("seed", [0, 4])
def test_border_matches_reference(w0, sigma, tol, seed):
    inst = random_instances(seed, size=80, n=16)
    got = weight_maps.border_weights(inst, w0=w0, sigma=sigma, tol=tol)
    ref = ref_border(inst, w0, sigma)
    assert got.dtype == np.float32
    kept = ref >= tol * (1 + 1e-9)
    np.testing.assert_allclose(got[kept], ref[kept], rtol=1e-6, atol=1e-6)
    # Documented truncation: exactly 0 below tol.
    assert np.all(got[ref < tol * (1 - 1e-9)] == 0)
    assert np.abs(got - ref).max() <= max(tol, 1e-6)


def test_border_matches_reference_on_synthetic_cells(synthetic_instances):
    inst = synthetic_instances
    got = weight_maps.border_weights(inst)
    ref = ref_border(inst)
    big = ref > 1e-3
    assert big.sum() > 1000
    assert np.abs(got[big] - ref[big]).max() <= 1e-4


def test_border_fewer_than_two_cells_and_w0_zero():
    zero = np.zeros((20, 30), np.int32)
    assert not weight_maps.border_weights(zero).any()
    one = zero.copy()
    one[5:10, 5:10] = 7
    one[12:15, 20:25] = 7  # one id, two pieces: still one cell
    assert not weight_maps.border_weights(one).any()
    two = one.copy()
    two[15:18, 5:9] = 8
    assert weight_maps.border_weights(two).any()
    assert not weight_maps.border_weights(two, w0=0).any()
    # tol >= w0: every value would be below tol.
    assert not weight_maps.border_weights(two, w0=1e-7, tol=1e-6).any()


def test_border_huge_and_unordered_ids():
    base = random_instances(5, size=60, n=8)
    ids = np.unique(base)[1:]
    huge = np.zeros(base.shape, np.int64)
    rng = np.random.default_rng(0)
    for i, new in zip(ids, rng.choice(2**40, len(ids), replace=False)):
        huge[base == i] = new + 1
    np.testing.assert_array_equal(
        weight_maps.border_weights(huge), weight_maps.border_weights(base)
    )
    # A cell touching every image border, and one without background.
    full = np.ones((10, 12), np.int32)
    full[:, 6:] = 2
    assert not weight_maps.border_weights(full).any()
    d1, d2 = weight_maps.two_nearest_distances(full)
    assert d1.max() == 0 and d2[0, 0] == 6 and d2[0, 11] == 6


# ---------------------------------------------------------------------------
# Separation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_separate_matches_pixel_loop(seed, connectivity):
    inst = random_instances(seed, size=48, n=10)
    target, separated = weight_maps.separate_instances(
        inst, connectivity, return_instances=True
    )
    ref = ref_separate(inst, connectivity)
    np.testing.assert_array_equal(separated, ref)
    np.testing.assert_array_equal(target, (ref != 0).astype(np.uint8))
    assert target.dtype == np.uint8


@pytest.mark.parametrize("connectivity", [1, 2])
def test_separated_cells_do_not_touch(synthetic_instances, connectivity):
    _, sep = weight_maps.separate_instances(
        synthetic_instances, connectivity, return_instances=True
    )
    structure = ndimage.generate_binary_structure(2, connectivity)
    for i in np.unique(sep)[1:]:
        grown = ndimage.binary_dilation(sep == i, structure)
        others = sep[grown]
        assert set(np.unique(others)) <= {0, i}
    if connectivity == 2:
        # Components of the target never merge two cells.
        comps, _ = ndimage.label(sep != 0, structure)
        for c in np.unique(comps)[1:]:
            assert len(np.unique(sep[comps == c])) == 1


def test_separate_edge_cases():
    zero = np.zeros((6, 7), np.uint16)
    assert not weight_maps.separate_instances(zero).any()
    one = zero.copy()
    one[1:5, 1:6] = 300
    np.testing.assert_array_equal(weight_maps.separate_instances(one), one > 0)
    # An id in two pieces that touch diagonally is never split.
    pieces = np.zeros((6, 6), np.int32)
    pieces[0:3, 0:3] = 5
    pieces[3:6, 3:6] = 5
    np.testing.assert_array_equal(
        weight_maps.separate_instances(pieces), pieces > 0
    )
    # Relabelling does not change the target.
    inst = random_instances(2, size=40, n=8)
    perm = inst.copy()
    ids = np.unique(inst)[1:]
    for a, b in zip(ids, ids[::-1]):
        perm[inst == a] = b
    np.testing.assert_array_equal(
        weight_maps.separate_instances(inst),
        weight_maps.separate_instances(perm),
    )
    # A trailing channel axis and float labels with integer values.
    np.testing.assert_array_equal(
        weight_maps.separate_instances(inst[..., None].astype(np.float32)),
        weight_maps.separate_instances(inst),
    )


def test_separate_docstring_example_is_two_pixel_line():
    inst = np.zeros((5, 6), np.int32)
    inst[1:4, 0:3] = 7
    inst[1:4, 3:6] = 9
    target = weight_maps.separate_instances(inst)
    assert target[1:4, 2:4].sum() == 0
    assert target[1:4, [0, 1, 4, 5]].all()


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 3, 4)), "2D label image"),
        (np.array([[0, -1]]), "negative"),
        (np.array([[0.5, 1.0]]), "integer labels"),
        (np.array([["a"]]), "integer"),
        (np.zeros((0, 3), np.int32), "2D label image"),
    ],
)
def test_bad_instances(bad, match):
    with pytest.raises(ValueError, match=match):
        weight_maps.separate_instances(bad)
    with pytest.raises(ValueError, match=match):
        weight_maps.unet_weight_map(bad)


def test_bad_parameters():
    inst = random_instances(0, size=30, n=4)
    with pytest.raises(ValueError, match="connectivity"):
        weight_maps.separate_instances(inst, connectivity=3)
    with pytest.raises(ValueError, match="sigma"):
        weight_maps.border_weights(inst, sigma=0)
    with pytest.raises(ValueError, match="w0"):
        weight_maps.border_weights(inst, w0=-1)
    with pytest.raises(ValueError, match="tol"):
        weight_maps.border_weights(inst, tol=float("nan"))
    with pytest.raises(ValueError, match="label_type"):
        weight_maps.unet_weight_map(inst, label_type="membrane")
    with pytest.raises(ValueError, match="max_distance"):
        weight_maps.two_nearest_distances(inst, -1)


# ---------------------------------------------------------------------------
# Binary labels
# ---------------------------------------------------------------------------


def test_instances_from_binary_diagonal_membrane():
    # A one-pixel membrane running diagonally: 4-connected cells stay apart.
    label = np.full((6, 6), 255, np.uint8)
    for k in range(6):
        label[k, k] = 0
    inst4 = weight_maps.instances_from_binary(label)
    assert inst4.max() == 2
    assert weight_maps.instances_from_binary(label, connectivity=2).max() == 1
    with pytest.raises(ValueError, match="at most one non-zero value"):
        weight_maps.instances_from_binary(np.array([[0, 1, 2]]))


def test_binary_label_weight_map_matches_reference():
    label = np.zeros((40, 40), np.uint8)
    label[2:18, 2:38] = 255
    label[20:38, 2:19] = 255
    label[20:38, 21:38] = 255
    label[10, :] = 0  # a membrane line through the first cell
    target, w = weight_maps.unet_weight_map(
        label, label_type="binary", return_target=True
    )
    np.testing.assert_array_equal(target, label > 0)
    cells, _ = ndimage.label(label > 0)
    assert cells.max() == 4
    expected = ref_balance(label > 0) + ref_border(cells)
    np.testing.assert_allclose(w, expected, rtol=1e-6, atol=1e-5)
    # bool input is binary too.
    np.testing.assert_allclose(
        weight_maps.unet_weight_map(label > 0, label_type="binary"), w
    )


def test_binary_looking_instances_warn():
    label = np.zeros((20, 20), np.uint8)
    label[2:8, 2:8] = 255
    label[10:18, 10:18] = 255
    with pytest.warns(UserWarning, match="label_type='binary'"):
        weight_maps.unet_weight_map(label)


# ---------------------------------------------------------------------------
# Class balance
# ---------------------------------------------------------------------------


def test_class_balance_per_image():
    rng = np.random.default_rng(0)
    mask = (rng.random((30, 40)) < 0.2).astype(np.int64)
    wc = weight_maps.class_balance_weights(mask)
    np.testing.assert_allclose(wc, ref_balance(mask), rtol=1e-6)
    assert wc.mean() == pytest.approx(1.0, rel=1e-6)
    # Each class carries the same total weight.
    assert wc[mask == 0].sum() == pytest.approx(wc[mask == 1].sum(), rel=1e-6)
    # Three classes, one class absent in between.
    mask3 = mask * 2
    mask3[:2] = 3
    wc3 = weight_maps.class_balance_weights(mask3)
    np.testing.assert_allclose(wc3, ref_balance(mask3), rtol=1e-6)
    # A single class: 1 everywhere.
    assert np.all(weight_maps.class_balance_weights(np.ones((4, 4), int)) == 1)


def test_class_balance_dataset_frequencies_and_fixed():
    masks = [np.array([[0, 0, 0, 1]]), np.array([[0, 1, 1, 1]])]
    freq = weight_maps.class_frequencies(masks)
    np.testing.assert_allclose(freq, [0.5, 0.5])
    freq = weight_maps.class_frequencies(masks[:1], num_classes=3)
    np.testing.assert_allclose(freq, [0.75, 0.25, 0.0])
    wc = weight_maps.class_balance_weights(masks[1], frequencies=[0.75, 0.25])
    np.testing.assert_allclose(wc, [[1 / 1.5, 2, 2, 2]], rtol=1e-6)
    # Dataset mean weight is 1.
    big = np.concatenate(masks, axis=1)
    wc = weight_maps.class_balance_weights(
        big, frequencies=weight_maps.class_frequencies(big)
    )
    assert wc.mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(
        weight_maps.class_balance_weights(masks[0], [1.0, 4.0]), [[1, 1, 1, 4]]
    )
    np.testing.assert_array_equal(
        weight_maps.class_balance_weights(masks[0], {1: 4.0, 0: 0.5}),
        [[0.5, 0.5, 0.5, 4]],
    )
    assert np.all(weight_maps.class_balance_weights(masks[0], None) == 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"class_weights": "inverse"}, "class_weights"),
        ({"class_weights": [1.0]}, "class 1"),
        ({"class_weights": {0: 1.0}}, "class 1"),
        ({"class_weights": [1.0, -2.0]}, ">= 0"),
        ({"class_weights": [1.0, float("nan")]}, ">= 0"),
        ({"frequencies": [1.0, 0.0]}, "class 1"),
        ({"frequencies": [0.5]}, "class 1"),
        ({"frequencies": [-1.0, 2.0]}, "non-negative"),
        ({"class_weights": None, "frequencies": [0.5, 0.5]}, "only used"),
    ],
)
def test_class_balance_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        weight_maps.class_balance_weights(np.array([[0, 1]]), **kwargs)


# ---------------------------------------------------------------------------
# The weight map
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 3])
def test_unet_weight_map_matches_reference(seed):
    inst = random_instances(seed, size=64, n=12)
    target, w = weight_maps.unet_weight_map(inst, return_target=True)
    sep = ref_separate(inst, 2)
    np.testing.assert_array_equal(target, sep != 0)
    expected = ref_balance(sep != 0) + ref_border(sep)
    assert w.dtype == np.float32 and w.shape == inst.shape
    big = ref_border(sep) > 1e-3
    np.testing.assert_allclose(w[big], expected[big], rtol=0, atol=1e-4)
    np.testing.assert_allclose(w, expected, rtol=0, atol=2e-6)


def test_separation_lines_get_large_weight():
    inst = np.zeros((64, 64), np.int32)
    inst[10:30, 10:32] = 3
    inst[10:30, 32:50] = 8
    target, w = weight_maps.unet_weight_map(inst, return_target=True)
    line = np.zeros_like(target, bool)
    line[10:30, 31:33] = True
    assert not target[line].any()
    # d1 = 1, d2 = 2 on the line: 10 * exp(-9 / 50) plus w_c of background.
    wc_bg = weight_maps.class_balance_weights(target)[0, 0]
    np.testing.assert_allclose(
        w[12:28, 31:33], wc_bg + 10 * math.exp(-9 / 50), rtol=1e-6
    )
    # Far from both cells only w_c is left.
    assert w[60, 60] == pytest.approx(wc_bg)


def test_weight_map_options():
    inst = random_instances(1, size=48, n=8)
    target, w = weight_maps.unet_weight_map(inst, w0=0, return_target=True)
    np.testing.assert_allclose(w, weight_maps.class_balance_weights(target))
    w_none = weight_maps.unet_weight_map(inst, class_weights=None)
    sep = weight_maps.separate_instances(inst, return_instances=True)[1]
    np.testing.assert_allclose(
        w_none, 1 + weight_maps.border_weights(sep), rtol=1e-6
    )
    # separate=False keeps touching cells touching (no line in the target).
    t2, _ = weight_maps.unet_weight_map(
        inst, separate=False, return_target=True
    )
    np.testing.assert_array_equal(t2, inst != 0)
    # One cell or none: w_c only.
    one = (inst == np.unique(inst)[1]).astype(np.int32)
    t1, w1 = weight_maps.unet_weight_map(one, return_target=True)
    np.testing.assert_allclose(w1, weight_maps.class_balance_weights(t1))
    assert np.all(weight_maps.unet_weight_map(np.zeros((8, 8), np.int32)) == 1)


def test_doctests():
    result = doctest.testmod(
        weight_maps, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 10 and result.failed == 0


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------

REAL_WEIGHT_MAP = (
    weight_maps.unet_weight_map
)  # the cache tests count calls of W's


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = weight_maps.unet_weight_map

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(weight_cache, "unet_weight_map", counting)
    return calls


def test_cache_reuses_and_invalidates(tmp_path, counted):
    a = random_instances(0, size=40, n=6).astype(np.uint16)
    b = random_instances(1, size=40, n=6).astype(np.uint16)
    pa, pb = (
        write_image(tmp_path / "a.tif", a),
        write_image(tmp_path / "b.tif", b),
    )
    cache = tmp_path / "cache"
    first = weight_cache.cached_weight_maps([pa, pb], cache, sigma=4.0)
    assert len(counted) == 2
    np.testing.assert_array_equal(first[0], REAL_WEIGHT_MAP(a, sigma=4.0))
    second = weight_cache.cached_weight_maps([pa, pb], cache, sigma=4.0)
    assert len(counted) == 2  # nothing recomputed
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    # Same parameters given explicitly at their defaults: same entry.
    weight_cache.cached_weight_maps([pa], cache, sigma=4, w0=10)
    assert len(counted) == 2
    # A changed parameter: recomputed.
    weight_cache.cached_weight_maps([pa], cache, sigma=3.0)
    assert len(counted) == 3
    # A changed label of the same size (and mtime untouched): recomputed.
    st = os.stat(pa)
    changed = a.copy()
    changed[0, 0] = 1 if a[0, 0] != 1 else 2
    write_image(pa, changed)
    os.utime(pa, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(pa) == st.st_size
    third = weight_cache.cached_weight_maps([pa], cache, sigma=4.0)
    assert len(counted) == 4
    np.testing.assert_array_equal(third[0], REAL_WEIGHT_MAP(changed, sigma=4.0))
    # No temporary files are left behind.
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]


def test_cache_targets_arrays_stat_key_and_corruption(tmp_path, counted):
    label = np.zeros((30, 30), np.uint8)
    label[2:14, 2:28] = 255
    label[16:28, 2:28] = 255
    cache = tmp_path / "c"
    [(t, w)] = weight_cache.cached_weight_maps(
        [label], cache, label_type="binary", return_targets=True
    )
    t0, w0 = REAL_WEIGHT_MAP(label, label_type="binary", return_target=True)
    np.testing.assert_array_equal(t, t0)
    np.testing.assert_array_equal(w, w0)
    assert t.dtype == np.uint8 and w.dtype == np.float32
    weight_cache.cached_weight_maps([label], cache, label_type="binary")
    assert len(counted) == 1
    # key="stat": a touched file is recomputed.
    path = write_image(tmp_path / "l.png", label)
    weight_cache.cached_weight_maps(
        [path], cache, key="stat", label_type="binary"
    )
    weight_cache.cached_weight_maps(
        [path], cache, key="stat", label_type="binary"
    )
    assert len(counted) == 2
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    weight_cache.cached_weight_maps(
        [path], cache, key="stat", label_type="binary"
    )
    assert len(counted) == 3
    # A corrupt entry is recomputed and repaired.
    for f in cache.glob("*.weights.npy"):
        f.write_bytes(b"garbage")
    weight_cache.cached_weight_maps([label], cache, label_type="binary")
    assert len(counted) == 4
    weight_cache.cached_weight_maps([label], cache, label_type="binary")
    assert len(counted) == 4
    # Memory-mapped reads.
    [w_map] = weight_cache.cached_weight_maps(
        [label], cache, label_type="binary", mmap_mode="r"
    )
    assert isinstance(w_map, np.memmap)


def test_cache_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="sigmaa"):
        weight_cache.cached_weight_maps(
            [np.zeros((4, 4), int)], tmp_path, sigmaa=3
        )
    with pytest.raises(ValueError, match="key"):
        weight_cache.cached_weight_maps(
            [np.zeros((4, 4), int)], tmp_path, key="mtime"
        )
    with pytest.raises(FileNotFoundError):
        weight_cache.cached_weight_maps([tmp_path / "missing.tif"], tmp_path)


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_dsb_nuclei_match_reference(shared_data):
    mask = read_image(shared_data / "stardist-dsb2018-nuclei-2d" / "mask.tif")
    assert len(np.unique(mask)) - 1 == 125
    got = weight_maps.border_weights(mask)
    ref = ref_border(mask.astype(np.int64))
    big = ref > 1e-3
    assert np.abs(got[big] - ref[big]).max() <= 1e-4
    target, w = REAL_WEIGHT_MAP(mask, return_target=True)
    # 21 touching pairs: separation removes pixels, and those lines are
    # among the most heavily weighted background pixels.
    lines = (mask != 0) & (target == 0)
    assert lines.sum() > 21 * 4
    assert np.median(w[lines]) > np.percentile(w[target == 0], 99)


@pytest.mark.slow
def test_isbi_label_weight_map(shared_data):
    label = read_image(
        shared_data / "isbi2012-em" / "train" / "label" / "00.png"
    )
    crop = label[:160, :160]
    target, w = REAL_WEIGHT_MAP(crop, label_type="binary", return_target=True)
    np.testing.assert_array_equal(target, crop == 255)
    cells, _ = ndimage.label(crop == 255)
    expected = ref_balance(crop == 255) + ref_border(cells)
    np.testing.assert_allclose(w, expected, rtol=0, atol=2e-6)
    # Membranes between cells get the border weight.
    assert w[target == 0].mean() > 3 * w[target == 1].mean()


# ---------------------------------------------------------------------------
# Figure
# ---------------------------------------------------------------------------


def test_weight_map_figure(tmp_path):
    from keras_unet.figures import weight_map_figure

    images, instances = synthetic_cells(1, size=64, seed=1)
    path = tmp_path / "fig.png"
    fig = weight_map_figure(
        images[0], instances[0], path, crop=(0, 0, 48, 40), scale=2
    )
    assert fig.dtype == np.uint8 and fig.ndim == 3
    assert fig.shape[0] >= 96 and fig.shape[1] >= 4 * 80
    np.testing.assert_array_equal(read_image(path), fig)
    # The weight-map panel shows the map: its colours vary, and the target
    # panel is black and white.
    target, w = REAL_WEIGHT_MAP(instances[0], return_target=True)
    fig2 = weight_map_figure(images[0], instances[0], target=target, weights=w)
    # Panels are as wide as the widest one (the map plus its colour bar),
    # with 6 px gaps and a 24 px title bar.
    column = fig2.shape[1] // 4
    assert column == 64 + 4 + 58 + 6
    target_panel = fig2[24 : 24 + 64, 2 * column : 2 * column + 64]
    np.testing.assert_array_equal(target_panel[..., 0], target * 255)
    label = (instances[0] > 0).astype(np.uint8) * 255
    weight_map_figure(images[0], label, label_type="binary")
    with pytest.raises(ValueError, match="same height and width"):
        weight_map_figure(images[0][:10], instances[0])
