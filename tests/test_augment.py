import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from keras_unet import augment as A


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


def test_sample_matches_plain_reference_far_outside():
    rng = np.random.default_rng(0)
    img = rng.random((7, 5)).astype(np.float32)
    qy = rng.uniform(-20, 27, (30, 4)).astype(np.float32)
    qx = rng.uniform(-20, 25, (30, 4)).astype(np.float32)
    got = A.sample(img, (qy, qx), "bilinear").numpy()
    np.testing.assert_allclose(got, np_bilinear(img, qy, qx), atol=2e-5)
    near = A.sample(img, (qy, qx), "nearest").numpy()
    iy = np_reflect(np.floor(qy + 0.5).astype(int), 7)
    ix = np_reflect(np.floor(qx + 0.5).astype(int), 5)
    np.testing.assert_array_equal(near, img[iy, ix])


def test_sample_integer_positions_are_exact_for_every_method():
    img = np.arange(35, dtype=np.float32).reshape(7, 5)
    qy, qx = np.meshgrid(np.arange(-6, 13), np.arange(-4, 9), indexing="ij")
    want = img[np_reflect(qy, 7), np_reflect(qx, 5)]
    for method in A.INTERPOLATIONS:
        got = A.sample(
            img, (qy.astype("float32"), qx.astype("float32")), method
        )
        np.testing.assert_allclose(got.numpy(), want, atol=1e-4, err_msg=method)


def test_sample_one_pixel_image_and_channels():
    img = np.full((1, 1, 3), 7, np.uint8)
    q = tf.constant([[[-3.2, 5.7]]])
    assert A.sample(img, q, "nearest").numpy().tolist() == [[[7, 7, 7]]]
    np.testing.assert_allclose(A.sample(img, q, "bilinear"), [[[7, 7, 7]]])


def test_field_equals_control_values_and_matches_sigma():
    # Odd size: control points at pixels 0, 50, 100.
    values = []
    for seed in range(300):
        field = A.elastic_field(seed, (101, 101), grid=3, sigma=10.0).numpy()
        grid = A.elastic_grid_values(seed, grid=3, sigma=10.0).numpy()
        at_points = field[::50, ::50]
        np.testing.assert_allclose(at_points, grid, atol=1e-4)
        values.append(grid.ravel())
    values = np.concatenate(values)  # 5400 draws of N(0, 10^2)
    assert abs(values.mean()) < 0.5  # 3.7 standard errors
    assert values.std() == pytest.approx(10.0, rel=0.04)
    # Normality: about 68.3% within one sigma.
    assert np.mean(np.abs(values) < 10) == pytest.approx(0.683, abs=0.025)


def test_field_is_bicubic_between_control_points():
    """Cubic convolution reproduces linear and quadratic ramps exactly."""
    k = np.arange(5.0)
    g = np.zeros((5, 5, 2), np.float32)
    g[..., 0] = (2 * k)[:, None]  # linear in rows
    g[..., 1] = (k**2)[None, :]  # quadratic in columns
    field = A.interpolate_grid(g, (41, 41)).numpy()
    u = np.arange(41) * 4 / 40  # grid coordinate of every pixel
    np.testing.assert_allclose(field[:, 0, 0], 2 * u, atol=1e-4)
    np.testing.assert_allclose(field[0, :, 1], u**2, atol=1e-4)
    # a 3x3 grid (the paper's) reproduces any quadratic through its points
    g3 = np.zeros((3, 3, 2), np.float32)
    g3[..., 0] = np.array([1.0, -2.0, 4.0])[:, None]
    f3 = A.interpolate_grid(g3, (21, 5)).numpy()[:, 0, 0]
    v = np.arange(21) / 10
    quad = np.polyfit([0, 1, 2], [1.0, -2.0, 4.0], 2)
    np.testing.assert_allclose(f3, np.polyval(quad, v), atol=1e-4)


def test_bright_point_moves_by_the_field():
    h, w = 90, 110
    q = (40, 63)
    img = np.zeros((h, w), np.float32)
    img[q] = 1.0
    seed = 11
    field = A.elastic_field(seed, (h, w), 3, 10.0).numpy()
    rows, cols = np.mgrid[0:h, 0:w]
    sy, sx = rows + field[..., 0], cols + field[..., 1]
    # nearest: the point shows exactly where p + d(p) rounds to q
    out = A.elastic_deform(img, seed=seed, interpolation="nearest").numpy()
    hit = (np.floor(sy + 0.5) == q[0]) & (np.floor(sx + 0.5) == q[1])
    assert hit.any()
    np.testing.assert_array_equal(out, hit.astype(np.float32))
    # bilinear: the tent function of the displacement
    out = A.elastic_deform(img, seed=seed).numpy()
    tent = np.clip(1 - np.abs(sy - q[0]), 0, 1) * np.clip(
        1 - np.abs(sx - q[1]), 0, 1
    )
    np.testing.assert_allclose(out, tent, atol=1e-5)
    assert out.sum() == pytest.approx(1.0, abs=0.3)  # mass roughly conserved


@pytest.mark.parametrize(
    "config",
    [
        A.AugmentConfig(),
        A.AugmentConfig(interpolation="bicubic", scale=(0.8, 1.2)),
        A.AugmentConfig.flips_only(),
    ],
)
def test_labels_preserved_and_identical_transform(config):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.repeat(rng.choice([0, 1, 2, 7], (8, 8)), 8, 0), 8, 1)
    labels = labels.astype(np.int32)
    weights = (labels * 10.0 + 1).astype(np.float32)
    image = labels.astype(np.float32)
    cfg = dataclasses.replace(
        config,
        interpolation="nearest",
        brightness=0.0,
        contrast=None,
        gamma=None,
        noise=0.0,
    )
    for seed in range(5):
        img_o, lab_o, w_o = A.random_augment(image, labels, weights, seed, cfg)
        assert set(np.unique(lab_o)) <= {0, 1, 2, 7}
        np.testing.assert_array_equal(img_o.numpy(), lab_o.numpy())
        np.testing.assert_array_equal(w_o.numpy(), lab_o.numpy() * 10.0 + 1)
    # with the configured (non-nearest) image interpolation labels stay pure
    _, lab_o, _ = A.random_augment(image, labels, weights, 3, config)
    assert set(np.unique(lab_o)) <= {0, 1, 2, 7}


def test_flips_and_rot90_are_exact_dihedral_copies():
    img = np.random.default_rng(2).random((12, 12)).astype(np.float32)
    d4 = [np.rot90(f, k) for f in (img, img[:, ::-1]) for k in range(4)]
    seen = set()
    for seed in range(40):
        out = A.random_augment(
            img, seed=seed, config=A.AugmentConfig.flips_only()
        )
        out = out.numpy()
        match = [i for i, d in enumerate(d4) if np.array_equal(out, d)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == set(range(8))


def test_same_seed_same_sample_other_seed_differs():
    img = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    a = A.random_augment(img, seed=5).numpy()
    b = A.random_augment(img, seed=5).numpy()
    c = A.random_augment(img, seed=6).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_gray_value_changes_only_the_image_and_each_is_switchable():
    x = tf.constant(np.random.default_rng(4).random((32, 32, 1)), tf.float32)
    off = A.AugmentConfig.none()
    np.testing.assert_array_equal(
        A.gray_value_augment(x, 0, off).numpy(), x.numpy()
    )
    for field, value in [
        ("brightness", 0.2),
        ("contrast", (0.5, 0.6)),
        ("gamma", (2.0, 2.5)),
        ("noise", 0.1),
    ]:
        cfg = dataclasses.replace(off, **{field: value})
        y = A.gray_value_augment(x, 7, cfg).numpy()
        assert not np.allclose(y, x.numpy()), field
    # contrast keeps the mean, brightness shifts every pixel equally
    y = A.gray_value_augment(
        x, 1, dataclasses.replace(off, contrast=(0.5, 0.6))
    )
    assert float(tf.reduce_mean(y)) == pytest.approx(
        float(tf.reduce_mean(x)), abs=1e-5
    )
    y = A.gray_value_augment(
        x, 1, dataclasses.replace(off, brightness=0.2)
    ).numpy()
    shift = y - x.numpy()
    assert np.ptp(shift) < 1e-6 and 0 < abs(shift.mean()) <= 0.2
    # noise std stays within the configured maximum
    y = A.gray_value_augment(x, 2, dataclasses.replace(off, noise=0.1)).numpy()
    assert 0 < np.std(y - x.numpy()) <= 0.1 * 1.05


def _tile_fn(jit):
    cfg = A.AugmentConfig()

    def fn(image, labels, weights, seed):
        return A.augment_tile(
            image, labels, weights, seed, cfg, (60, 60), (20, 20)
        )

    return tf.function(fn, jit_compile=jit)


def test_augment_tile_runs_under_xla_and_matches_graph_mode():
    rng = np.random.default_rng(5)
    image = tf.constant(rng.random((50, 70, 2)), tf.float32)
    labels = tf.constant(rng.integers(0, 3, (50, 70)), tf.int32)
    weights = tf.constant(rng.random((50, 70)) + 0.5, tf.float32)
    seed = tf.constant([3, 9])
    graph = _tile_fn(False)(image, labels, weights, seed)
    xla = _tile_fn(True)(image, labels, weights, seed)
    assert [t.shape for t in xla] == [(60, 60, 2), (20, 20), (20, 20)]
    # The warp itself (no random ops) is identical with and without XLA.
    params = A.random_transform(
        seed, A.AugmentConfig(), (50, 70), (60, 60), (20, 20)
    )
    kw = dict(input_shape=(60, 60), output_shape=(20, 20))
    plain = A.warp_tile(image, labels, weights, params, **kw)
    compiled = tf.function(A.warp_tile, jit_compile=True)(
        image, labels, weights, params, **kw
    )
    np.testing.assert_allclose(compiled[0], plain[0], atol=1e-4)
    assert np.mean(compiled[1].numpy() != plain[1].numpy()) < 0.01
    assert set(np.unique(xla[1])) <= {0, 1, 2}
    assert set(np.unique(graph[1])) <= {0, 1, 2}


def test_tile_without_augmentation_is_an_exact_crop():
    rng = np.random.default_rng(6)
    image = rng.random((80, 90, 1)).astype(np.float32)
    labels = rng.integers(0, 2, (80, 90)).astype(np.int32)
    weights = rng.random((80, 90)).astype(np.float32)
    for seed in range(10):
        x, y, w = A.augment_tile(
            image, labels, weights, seed, None, (60, 60), (20, 20)
        )
        params = A.random_transform(
            A._split(A._as_seed(seed), 2)[0],
            A.AugmentConfig.none(),
            (80, 90),
            (60, 60),
            (20, 20),
        )
        oy, ox = params["origin"].numpy()
        assert 0 <= oy <= 60 and 0 <= ox <= 70
        np.testing.assert_array_equal(
            y.numpy(), labels[oy : oy + 20, ox : ox + 20]
        )
        np.testing.assert_array_equal(
            w.numpy(), weights[oy : oy + 20, ox : ox + 20]
        )
        padded = np.pad(image[..., 0], 20, mode="reflect")
        np.testing.assert_array_equal(
            x.numpy()[..., 0], padded[oy : oy + 60, ox : ox + 60]
        )


def test_tile_of_image_smaller_than_tile_and_mask_mirrored():
    image = np.random.default_rng(7).random((9, 13, 1)).astype(np.float32)
    labels = np.ones((9, 13), np.int32)
    weights = np.ones((9, 13), np.float32)
    x, y, w = A.augment_tile(
        image,
        labels,
        weights,
        1,
        A.AugmentConfig(),
        (60, 60),
        (20, 20),
        mask_mirrored=True,
    )
    assert x.shape == (60, 60, 1) and np.isfinite(x.numpy()).all()
    # the image lies inside the 20x20 output tile: at most 9*13 weights set,
    # and roughly that many (the elastic warp moves a few pixels)
    assert 0 < w.numpy().sum() <= 20 * 20
    assert abs(w.numpy().sum() - 9 * 13) < 0.5 * 9 * 13


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
        A.AugmentConfig(**kwargs)


def test_mismatched_label_size_is_reported():
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="same height and width"
    ):
        A.random_augment(np.zeros((10, 10)), np.zeros((10, 11), np.int32))


def test_gray_values_scale_with_the_image_range():
    """A 12-bit image in uint16 (up to ~0.06) varies like an 8-bit one."""
    x = tf.constant(np.random.default_rng(8).random((40, 40, 1)), tf.float32)
    cfg = A.AugmentConfig()
    full = A.gray_value_augment(x, 3, cfg).numpy()
    dim = A.gray_value_augment(x * 0.0625, 3, cfg).numpy()
    np.testing.assert_allclose(dim, full * 0.0625, rtol=1e-4, atol=1e-6)
