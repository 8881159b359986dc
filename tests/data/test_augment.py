import dataclasses

import keras
import numpy as np
import pytest
from scipy import ndimage

from keras_unet.data import augment

to_np = keras.ops.convert_to_numpy
GEOMETRY_ONLY = dict(brightness=0.0, contrast=None, gamma=None, noise=0.0)


def np_reflect(i, n):
    """numpy.pad(mode='reflect') indexing, written out."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i >= n, period - i, i)


def np_bilinear(img, qy, qx):
    """Reference bilinear sampling with mirrored taps (slow and plain)."""
    h, w = img.shape
    out = np.zeros(qy.shape)
    for idx in np.ndindex(qy.shape):
        y, x = qy[idx], qx[idx]
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - y0, x - x0
        acc = 0.0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                acc += (
                    wy
                    * wx
                    * img[np_reflect(y0 + dy, h), np_reflect(x0 + dx, w)]
                )
        out[idx] = acc
    return out


def keys(t):
    """Keys' cubic convolution kernel (a = -0.5) at distance t."""
    t = abs(t)
    if t <= 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t < 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


def np_bicubic(img, qy, qx):
    """Reference cubic convolution with mirrored taps (slow and plain)."""
    h, w = img.shape
    out = np.zeros(qy.shape)
    for idx in np.ndindex(qy.shape):
        y, x = qy[idx], qx[idx]
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        for ty in range(y0 - 1, y0 + 3):
            for tx in range(x0 - 1, x0 + 3):
                out[idx] += (
                    keys(y - ty)
                    * keys(x - tx)
                    * img[np_reflect(ty, h), np_reflect(tx, w)]
                )
    return out


def reference_coordinates(params, spec):
    """Absolute source (rows, cols) of every input-tile pixel, float64."""
    (in_h, in_w), (out_h, out_w) = spec.input_shape, spec.output_shape
    rows, cols = np.mgrid[0:in_h, 0:in_w].astype(float)
    rows -= (in_h - 1) / 2
    cols -= (in_w - 1) / 2
    a = params["matrix"].astype(float)
    field = augment.interpolate_grid(params["grid"], (in_h, in_w)).astype(float)
    oy, ox = params["origin"]
    qy = oy + (out_h - 1) / 2 + a[0, 0] * rows + a[0, 1] * cols
    qx = ox + (out_w - 1) / 2 + a[1, 0] * rows + a[1, 1] * cols
    return qy + field[..., 0], qx + field[..., 1]


@pytest.mark.backend
def test_sample_matches_plain_reference_far_outside():
    rng = np.random.default_rng(0)
    img = rng.random((7, 5)).astype(np.float32)
    qy = rng.uniform(-20, 27, (30, 4)).astype(np.float32)
    qx = rng.uniform(-20, 25, (30, 4)).astype(np.float32)
    got = to_np(augment.sample(img, (qy, qx), "bilinear"))
    np.testing.assert_allclose(got, np_bilinear(img, qy, qx), atol=2e-5)
    scipy_ref = ndimage.map_coordinates(
        img.astype(float), [qy, qx], order=1, mode="mirror"
    )
    np.testing.assert_allclose(got, scipy_ref, atol=2e-5)
    near = to_np(augment.sample(img, (qy, qx), "nearest"))
    iy = np_reflect(np.floor(qy + 0.5).astype(int), 7)
    ix = np_reflect(np.floor(qx + 0.5).astype(int), 5)
    np.testing.assert_array_equal(near, img[iy, ix])
    cubic = to_np(augment.sample(img, np.stack([qy, qx], -1), "bicubic"))
    np.testing.assert_allclose(cubic, np_bicubic(img, qy, qx), atol=5e-5)


@pytest.mark.backend
def test_sample_integer_positions_are_exact_for_every_method():
    img = np.arange(35, dtype=np.float32).reshape(7, 5)
    qy, qx = np.meshgrid(np.arange(-6, 13), np.arange(-4, 9), indexing="ij")
    want = img[np_reflect(qy, 7), np_reflect(qx, 5)]
    for method in augment.INTERPOLATIONS:
        got = augment.sample(
            img, (qy.astype("float32"), qx.astype("float32")), method
        )
        np.testing.assert_array_equal(to_np(got), want, err_msg=method)


@pytest.mark.backend
def test_sample_one_pixel_image_and_channels():
    img = np.full((1, 1, 3), 7, np.uint8)
    q = np.array([[[-3.2, 5.7]]], np.float32)
    near = augment.sample(img, q, "nearest")
    assert to_np(near).tolist() == [[[7, 7, 7]]]
    assert to_np(near).dtype == np.uint8
    np.testing.assert_allclose(to_np(augment.sample(img, q)), [[[7, 7, 7]]])
    with pytest.raises(ValueError, match="interpolation"):
        augment.sample(img, q, "cubic")


def test_field_equals_control_values_and_matches_sigma():
    # Odd size: control points at pixels 0, 50, 100.
    values = []
    for seed in range(300):
        field = augment.elastic_field(seed, (101, 101), grid=3, sigma=10.0)
        grid = augment.elastic_grid_values(seed, grid=3, sigma=10.0)
        np.testing.assert_allclose(field[::50, ::50], grid, atol=1e-4)
        values.append(grid.ravel())
    values = np.concatenate(values)  # 5400 draws of N(0, 10^2)
    assert abs(values.mean()) < 0.5  # 3.7 standard errors
    assert values.std() == pytest.approx(10.0, rel=0.04)
    # Normality: about 68.3% within one sigma; nothing beyond 4 sigma.
    assert np.mean(np.abs(values) < 10) == pytest.approx(0.683, abs=0.025)
    assert np.abs(values).max() <= 40.0


def test_field_is_bicubic_between_control_points():
    """Cubic convolution reproduces linear and quadratic ramps exactly."""
    k = np.arange(5.0)
    g = np.zeros((5, 5, 2), np.float32)
    g[..., 0] = (2 * k)[:, None]  # linear in rows
    g[..., 1] = (k**2)[None, :]  # quadratic in columns
    field = augment.interpolate_grid(g, (41, 41))
    u = np.arange(41) * 4 / 40  # grid coordinate of every pixel
    np.testing.assert_allclose(field[:, 0, 0], 2 * u, atol=1e-4)
    np.testing.assert_allclose(field[0, :, 1], u**2, atol=1e-4)
    # a 3x3 grid (the paper's) reproduces any quadratic through its points
    g3 = np.zeros((3, 3, 2), np.float32)
    g3[..., 0] = np.array([1.0, -2.0, 4.0])[:, None]
    f3 = augment.interpolate_grid(g3, (21, 5))[:, 0, 0]
    v = np.arange(21) / 10
    quad = np.polyfit([0, 1, 2], [1.0, -2.0, 4.0], 2)
    np.testing.assert_allclose(f3, np.polyval(quad, v), atol=1e-4)
    # between control points it is Keys' kernel on the (ghost-extended) grid
    vals = np.array([1.0, -2.0, 4.0])
    ext = np.array([3 * 1 - 3 * -2 + 4, *vals, 3 * 4 - 3 * -2 + 1])
    for i, ui in enumerate(v):
        want = sum(keys(ui - j) * ext[j + 1] for j in range(-1, 4))
        assert f3[i] == pytest.approx(want, abs=1e-4)


@pytest.mark.backend
def test_bright_point_moves_by_the_field():
    h, w = 90, 110
    q = (40, 63)
    img = np.zeros((h, w), np.float32)
    img[q] = 1.0
    rows, cols = np.mgrid[0:h, 0:w]
    for seed in range(11, 40):  # the first field that keeps the point
        field = augment.elastic_field(seed, (h, w), 3, 10.0)
        sy, sx = rows + field[..., 0], cols + field[..., 1]
        hit = (np.floor(sy + 0.5) == q[0]) & (np.floor(sx + 0.5) == q[1])
        if hit.any():
            break
    # nearest: the point shows exactly where p + d(p) rounds to q
    out = to_np(augment.elastic_deform(img, seed=seed, interpolation="nearest"))
    np.testing.assert_array_equal(out, hit.astype(np.float32))
    # bilinear: the tent function of the displacement
    out = to_np(augment.elastic_deform(img, seed=seed))
    tent = np.clip(1 - np.abs(sy - q[0]), 0, 1) * np.clip(
        1 - np.abs(sx - q[1]), 0, 1
    )
    np.testing.assert_allclose(out, tent, atol=1e-5)
    assert out.sum() == pytest.approx(1.0, abs=0.3)  # mass roughly conserved


@pytest.mark.backend
@pytest.mark.parametrize(
    "config",
    [
        augment.AugmentConfig(),
        augment.AugmentConfig(interpolation="bicubic", scale=(0.8, 1.2)),
        augment.AugmentConfig.flips_only(),
    ],
)
def test_labels_preserved_and_identical_transform(config):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.repeat(rng.choice([0, 1, 2, 7], (8, 8)), 8, 0), 8, 1)
    labels = labels.astype(np.int32)
    weights = (labels * 10.0 + 1).astype(np.float32)
    image = labels.astype(np.float32)
    cfg = dataclasses.replace(config, interpolation="nearest", **GEOMETRY_ONLY)
    for seed in range(3):
        img_o, lab_o, w_o = augment.random_augment(
            image, labels, weights, seed, cfg
        )
        lab_o = to_np(lab_o)
        assert set(np.unique(lab_o)) <= {0, 1, 2, 7}
        np.testing.assert_array_equal(to_np(img_o), lab_o)
        np.testing.assert_array_equal(to_np(w_o), lab_o * 10.0 + 1)
    # with the configured (non-nearest) image interpolation labels stay pure
    _, lab_o, _ = augment.random_augment(image, labels, weights, 3, config)
    assert set(np.unique(to_np(lab_o))) <= {0, 1, 2, 7}


@pytest.mark.backend
def test_flips_and_rot90_are_exact_dihedral_copies():
    img = np.random.default_rng(2).random((12, 12)).astype(np.float32)
    d4 = [np.rot90(f, k) for f in (img, img[:, ::-1]) for k in range(4)]
    seen = set()
    for seed in range(40):
        out = augment.random_augment(
            img, seed=seed, config=augment.AugmentConfig.flips_only()
        )
        out = to_np(out)
        match = [i for i, d in enumerate(d4) if np.array_equal(out, d)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == set(range(8))


@pytest.mark.backend
def test_same_seed_same_sample_other_seed_differs():
    img = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    a = to_np(augment.random_augment(img, seed=5))
    b = to_np(augment.random_augment(img, seed=5))
    c = to_np(augment.random_augment(img, seed=6))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # the random parameters are numpy draws from (seed, index) alone
    spec = augment.WarpSpec.create(augment.AugmentConfig(), (60, 60), (20, 20))
    p = augment.random_params(augment.sample_rng(4, 9), spec, (80, 90, 1))
    q = augment.random_params(augment.sample_rng(4, 9), spec, (80, 90, 1))
    r = augment.random_params(augment.sample_rng(4, 10), spec, (80, 90, 1))
    for key in p:
        np.testing.assert_array_equal(p[key], q[key])
    assert not np.array_equal(p["grid"], r["grid"])
    with pytest.raises(ValueError, match="seed"):
        augment.sample_rng(-1)


@pytest.mark.backend
def test_gray_value_changes_only_the_image_and_each_is_switchable():
    x = np.random.default_rng(4).random((32, 32, 1)).astype(np.float32)
    off = augment.AugmentConfig.none()
    np.testing.assert_array_equal(
        to_np(augment.gray_value_augment(x, 0, off)), x
    )
    for field, value in [
        ("brightness", 0.2),
        ("contrast", (0.5, 0.6)),
        ("gamma", (2.0, 2.5)),
        ("noise", 0.1),
    ]:
        cfg = dataclasses.replace(off, **{field: value})
        y = to_np(augment.gray_value_augment(x, 7, cfg))
        assert not np.allclose(y, x), field
    # contrast keeps the mean, brightness shifts every pixel equally
    y = to_np(
        augment.gray_value_augment(
            x, 1, dataclasses.replace(off, contrast=(0.5, 0.6))
        )
    )
    assert y.mean() == pytest.approx(x.mean(), abs=1e-5)
    y = to_np(
        augment.gray_value_augment(
            x, 1, dataclasses.replace(off, brightness=0.2)
        )
    )
    shift = y - x
    assert np.ptp(shift) < 1e-6 and 0 < abs(shift.mean()) <= 0.2
    # noise std stays within the configured maximum
    y = to_np(
        augment.gray_value_augment(x, 2, dataclasses.replace(off, noise=0.1))
    )
    assert 0 < np.std(y - x) <= 0.1 * 1.05


@pytest.mark.backend
def test_noise_is_gaussian_relative_to_the_tile_range():
    x = np.zeros((1, 64, 64, 1), np.float32)
    x[0, 0, 0, 0] = 2.0  # range 2
    noise = augment.sample_rng(0).integers(
        -32768, 32768, x.shape, dtype=np.int16
    )
    gray = np.array([[1.0, 1.0, 0.0, 0.1]], np.float32)
    cfg = dataclasses.replace(augment.AugmentConfig.none(), noise=0.1)
    z = (to_np(augment.apply_gray(x, gray, noise, cfg)) - x).ravel()[1:] / 0.2
    assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, abs=0.03)
    assert np.mean(np.abs(z) < 1) == pytest.approx(0.683, abs=0.02)


@pytest.mark.backend
def test_gray_values_scale_with_the_image_range():
    """A 12-bit image in uint16 (up to ~0.06) varies like an 8-bit one."""
    x = np.random.default_rng(8).random((40, 40, 1)).astype(np.float32)
    cfg = augment.AugmentConfig()
    full = to_np(augment.gray_value_augment(x, 3, cfg))
    dim = to_np(augment.gray_value_augment(x * 0.0625, 3, cfg))
    np.testing.assert_allclose(dim, full * 0.0625, rtol=1e-4, atol=1e-6)


def whole_image_batch(spec, image, labels, weights, seeds):
    """Tiles of one image, the whole image as their window (offsets 0)."""
    samples = []
    for seed in seeds:
        sample = augment.random_params(
            augment.sample_rng(seed), spec, image.shape
        )
        sample.update(
            image=image,
            labels=labels,
            weights=weights,
            image_offset=np.zeros(2, np.int32),
            label_offset=np.zeros(2, np.int32),
            size=np.array(image.shape[:2], np.int32),
        )
        samples.append(sample)
    batch = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    return batch, samples


CONFIGS = [
    augment.AugmentConfig(**GEOMETRY_ONLY),
    augment.AugmentConfig(
        interpolation="bicubic", scale=(0.7, 1.3), rotation=20, **GEOMETRY_ONLY
    ),
    augment.AugmentConfig(
        interpolation="nearest", elastic_grid=4, **GEOMETRY_ONLY
    ),
]


@pytest.mark.backend
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("size", [(150, 170), (9, 300)])
def test_warp_matches_a_plain_reference(config, size):
    """warp_batch = the map of the drawn parameters, sampled plainly."""
    rng = np.random.default_rng(9)
    image = rng.random((*size, 2)).astype(np.float32)
    labels = rng.integers(0, 5, size).astype(np.int32)
    weights = rng.random(size).astype(np.float32)
    spec = augment.WarpSpec.create(
        config, (44, 52), (4, 12), mask_mirrored=True
    )
    batch, samples = whole_image_batch(spec, image, labels, weights, range(3))
    x, y, w = (to_np(t) for t in augment.warp_batch(batch, spec))
    assert x.shape == (3, 44, 52, 2) and x.dtype == np.float32
    assert y.shape == w.shape == (3, 4, 12) and y.dtype == np.int32
    method = {"bilinear": np_bilinear, "bicubic": np_bicubic}
    for i, sample in enumerate(samples):
        qy, qx = reference_coordinates(sample, spec)
        ref = method.get(config.interpolation)
        for c in range(2):
            if ref is None:
                iy = np_reflect(np.floor(qy + 0.5).astype(int), size[0])
                ix = np_reflect(np.floor(qx + 0.5).astype(int), size[1])
                tie = np.minimum(np.abs(qy % 1 - 0.5), np.abs(qx % 1 - 0.5))
                np.testing.assert_array_equal(
                    x[i, ..., c][tie > 1e-3], image[iy, ix, c][tie > 1e-3]
                )
            else:
                want = ref(image[..., c], qy[::3, ::3], qx[::3, ::3])
                np.testing.assert_allclose(x[i, ::3, ::3, c], want, atol=2e-4)
        oy, ox = qy[20:24, 20:32], qx[20:24, 20:32]
        ry, rx = np.floor(oy + 0.5).astype(int), np.floor(ox + 0.5).astype(int)
        at = np_reflect(ry, size[0]), np_reflect(rx, size[1])
        inside = (ry >= 0) & (ry < size[0]) & (rx >= 0) & (rx < size[1])
        clear = np.minimum(np.abs(oy % 1 - 0.5), np.abs(ox % 1 - 0.5)) > 1e-3
        np.testing.assert_array_equal(y[i][clear], labels[at][clear])
        np.testing.assert_array_equal(
            w[i][clear], (weights[at] * inside)[clear]
        )


@pytest.mark.backend
def test_compiled_warp_equals_eager():
    rng = np.random.default_rng(5)
    image = rng.random((50, 70, 2)).astype(np.float32)
    labels = rng.integers(0, 3, (50, 70)).astype(np.int32)
    weights = (rng.random((50, 70)) + 0.5).astype(np.float32)
    spec = augment.WarpSpec.create(augment.AugmentConfig(), (60, 60), (20, 20))
    batch, _ = whole_image_batch(spec, image, labels, weights, (3, 9))
    eager = [to_np(t) for t in augment.warp_batch(batch, spec)]
    compiled = [to_np(t) for t in augment.compile_warp(spec, True)(batch)]
    shapes = [t.shape for t in compiled]
    assert shapes == [(2, 60, 60, 2), (2, 20, 20), (2, 20, 20)]
    np.testing.assert_allclose(compiled[0], eager[0], atol=1e-4)
    assert np.mean(compiled[1] != eager[1]) < 0.01
    assert set(np.unique(compiled[1])) <= {0, 1, 2}
    with pytest.raises(ValueError, match="jit_compile"):
        augment.compile_warp(spec, "yes")


@pytest.mark.backend
def test_tile_without_augmentation_is_an_exact_crop():
    rng = np.random.default_rng(6)
    image = rng.random((80, 90, 1)).astype(np.float32)
    labels = rng.integers(0, 2, (80, 90)).astype(np.int32)
    weights = rng.random((80, 90)).astype(np.float32)
    spec = augment.WarpSpec.create(None, (60, 60), (20, 20))
    batch, samples = whole_image_batch(spec, image, labels, weights, range(6))
    x, y, w = (to_np(t) for t in augment.warp_batch(batch, spec))
    padded = np.pad(image[..., 0], 20, mode="reflect")
    for i, sample in enumerate(samples):
        oy, ox = sample["origin"]
        assert 0 <= oy <= 60 and 0 <= ox <= 70
        np.testing.assert_array_equal(y[i], labels[oy : oy + 20, ox : ox + 20])
        np.testing.assert_array_equal(w[i], weights[oy : oy + 20, ox : ox + 20])
        np.testing.assert_array_equal(
            x[i, ..., 0], padded[oy : oy + 60, ox : ox + 60]
        )


@pytest.mark.backend
def test_tile_of_image_smaller_than_tile_and_mask_mirrored():
    image = np.random.default_rng(7).random((9, 13, 1)).astype(np.float32)
    labels = np.ones((9, 13), np.int32)
    weights = np.ones((9, 13), np.float32)
    sums = {}
    for name in ("flips", "paper"):
        config = augment.AugmentConfig.flips_only()
        if name == "paper":
            config = augment.AugmentConfig()
        spec = augment.WarpSpec.create(
            config, (60, 60), (20, 20), mask_mirrored=True
        )
        batch, _ = whole_image_batch(spec, image, labels, weights, range(4))
        x, _, w = (to_np(t) for t in augment.warp_batch(batch, spec))
        assert x.shape == (4, 60, 60, 1) and np.isfinite(x).all()
        sums[name] = w.sum(axis=(1, 2)).tolist()
    # The image lies inside the 20x20 output tile: with exact rotations and
    # flips exactly its 9*13 pixels have weight; rotation by any angle about
    # the tile centre and the elastic warp move some of them out.
    assert sums["flips"] == [9 * 13] * 4
    assert all(0 < s <= 1.5 * 9 * 13 for s in sums["paper"])
    assert np.mean(sums["paper"]) > 0.3 * 9 * 13


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(interpolation="cubic"), "interpolation"),
        (dict(elastic_grid=1), "elastic_grid"),
        (dict(elastic_sigma=-1.0), "elastic_sigma"),
        (dict(scale=(1.2, 0.8)), "scale"),
        (dict(gamma=(0, 1)), "gamma"),
        (dict(contrast=0.5), "contrast"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        augment.AugmentConfig(**kwargs)


def test_mismatched_label_size_is_reported():
    with pytest.raises(ValueError, match="same height and width"):
        augment.random_augment(np.zeros((10, 10)), np.zeros((10, 11), np.int32))
