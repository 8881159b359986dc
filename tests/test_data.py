import itertools

import keras
import numpy as np
import pytest

from keras_unet import data
from keras_unet.augment import AugmentConfig
from keras_unet.io import write_image
from keras_unet.model import build_unet

IN, OUT, DEPTH = 60, 20, 2  # a depth-2 net: 60 px in, 20 px out


def _blocks(n, h, w, classes=3, seed=0):
    """Label images of 4x4 blocks; the image is the label as grey value."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, (n, h // 4 + 1, w // 4 + 1))
    labels = np.repeat(np.repeat(labels, 4, 1), 4, 2)[:, :h, :w].astype(
        np.int32
    )
    return labels.astype(np.float32), labels


def _take(ds, n):
    return [
        tuple(t.numpy() for t in batch) for batch in itertools.islice(ds, n)
    ]


def test_shapes_dtypes_and_identical_transform():
    images, labels = _blocks(3, 70, 90)
    weights = labels * 10.0 + 1
    nearest = AugmentConfig(
        interpolation="nearest",
        brightness=0.0,
        contrast=None,
        gamma=None,
        noise=0.0,
    )
    ds = data.make_training_dataset(
        images,
        labels,
        weights,
        input_size=IN,
        depth=DEPTH,
        seed=0,
        num_classes=3,
        batch_size=2,
        augment=nearest,
    )
    for x, y, w in _take(ds, 4):
        assert x.shape == (2, IN, IN, 1) and x.dtype == np.float32
        assert y.shape == (2, OUT, OUT) and y.dtype == np.int32
        assert w.shape == (2, OUT, OUT) and w.dtype == np.float32
        m = (IN - OUT) // 2
        # the centre of the input tile is the output tile, pixel for pixel
        np.testing.assert_array_equal(x[:, m : m + OUT, m : m + OUT, 0], y)
        np.testing.assert_array_equal(w, y * 10.0 + 1)


def test_same_seed_repeats_and_other_seed_differs():
    images, labels = _blocks(4, 64, 64)

    def make(seed, **kw):
        return data.make_training_dataset(
            images,
            labels,
            input_size=IN,
            depth=DEPTH,
            seed=seed,
            num_classes=3,
            **kw,
        )

    a, b, c = _take(make(1), 6), _take(make(1), 6), _take(make(2), 6)
    for (xa, ya, wa), (xb, yb, wb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(wa, wb)
    assert not all(
        np.array_equal(xa, xc) for (xa, _, _), (xc, _, _) in zip(a, c)
    )
    # XLA-compiled warping gives the same tiles as graph mode
    geo = AugmentConfig(brightness=0.0, contrast=None, gamma=None, noise=0.0)
    a = _take(make(1, augment=geo, jit_compile=True), 6)
    d = _take(make(1, augment=geo, jit_compile=False), 6)
    for (xa, ya, _), (xd, yd, _) in zip(a, d):
        np.testing.assert_allclose(xa, xd, rtol=2e-4, atol=2e-4)  # ~1e-4 px
        assert np.mean(ya != yd) < 0.01


def test_shuffle_visits_every_image_each_epoch():
    images = np.stack([np.full((30, 30), i, np.uint8) for i in range(5)])
    labels = np.zeros((5, 30, 30), np.int32)
    ds = data.make_training_dataset(
        images, labels, input_size=IN, depth=DEPTH, seed=3, augment=False
    )
    seen = [int(round(x[0, 30, 30, 0] * 255)) for x, _, _ in _take(ds, 15)]
    for epoch in range(3):
        assert sorted(seen[5 * epoch : 5 * epoch + 5]) == [0, 1, 2, 3, 4]
    assert seen[:5] != seen[5:10] or seen[5:10] != seen[10:15]


def test_start_resumes_the_exact_stream():
    images, labels = _blocks(3, 40, 40)
    kw = dict(input_size=IN, depth=DEPTH, seed=9, num_classes=3)
    full = _take(data.make_training_dataset(images, labels, **kw), 7)
    rest = _take(data.make_training_dataset(images, labels, start=4, **kw), 3)
    for a, b in zip(full[4:], rest):
        for ta, tb in zip(a, b):
            np.testing.assert_array_equal(ta, tb)
    with pytest.raises(ValueError, match="start"):
        data.make_training_dataset(images, labels, start=-1, **kw)


def test_lists_of_sizes_files_and_small_images(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(25, 31), (80, 64), (7, 9)]
    imgs = [rng.integers(0, 255, s, dtype=np.uint8) for s in sizes]
    labs = [rng.integers(0, 2, s).astype(np.uint8) for s in sizes]
    wts = [rng.random(s).astype(np.float32) for s in sizes]
    paths = []
    for i, (im, lb, wt) in enumerate(zip(imgs, labs, wts)):
        paths.append(
            (
                write_image(tmp_path / f"im{i}.png", im),
                write_image(tmp_path / f"lb{i}.tif", lb),
                tmp_path / f"w{i}.npy",
            )
        )
        np.save(paths[-1][2], wt)
    for source in ([imgs, labs, wts], [list(p) for p in zip(*paths)]):
        ds = data.make_training_dataset(
            *source, input_size=IN, depth=DEPTH, seed=0, batch_size=3
        )
        x, y, w = _take(ds, 1)[0]
        assert x.shape == (3, IN, IN, 1) and np.isfinite(x).all()
        assert set(np.unique(y)) <= {0, 1}
        ds = data.make_training_dataset(
            *source,
            input_size=IN,
            depth=DEPTH,
            seed=0,
            batch_size=3,
            augment=False,
            shuffle=False,
        )
        x, y, w = _take(ds, 1)[0]
        # uint8 scaled to [0, 1] exactly as keras_unet.io.to_float_image does
        np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-3)
        assert 0 <= x.min() and x.max() <= 1
        for i in range(3):  # the weight tiles come from the .npy/array maps
            assert np.isin(w[i], wts[i]).all()


def test_fit_on_the_dataset_uses_weights_as_sample_weight():
    images, labels = _blocks(2, 64, 64, classes=2)
    model = build_unet((None, None, 1), depth=DEPTH, filters=2, seed=0)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    zero = data.make_training_dataset(
        images,
        labels,
        np.zeros_like(images),
        input_size=IN,
        depth=DEPTH,
        seed=0,
    )
    ones = data.make_training_dataset(
        images, labels, input_size=IN, depth=DEPTH, seed=0
    )
    assert (
        model.evaluate(zero, steps=2, verbose=0) == 0.0
    )  # weights reach the loss
    assert model.evaluate(ones, steps=2, verbose=0) > 0.0
    hist = model.fit(ones, steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_validation_dataset_covers_every_pixel_once():
    rng = np.random.default_rng(1)
    sizes = [(45, 33), (20, 20), (61, 80)]
    labs = [rng.integers(0, 2, s).astype(np.int32) for s in sizes]
    imgs = [lb.astype(np.float32) for lb in labs]
    ds = data.make_validation_dataset(
        imgs, labs, input_size=IN, depth=DEPTH, batch_size=4
    )
    origins = data.validation_tiles(sizes, (OUT, OUT))
    rebuilt = [np.full(s, -1) for s in sizes]
    count = [np.zeros(s) for s in sizes]
    tiles = [t for batch in _take(ds, 100) for t in zip(*batch)]
    assert len(tiles) == len(origins)
    for (i, r, c), (x, y, w) in zip(origins, tiles):
        h, wd = sizes[i]
        hh, ww = min(OUT, h - r), min(OUT, wd - c)
        assert (w[:hh, :ww] == 1).all() and w.sum() == hh * ww
        rebuilt[i][r : r + hh, c : c + ww] = y[:hh, :ww]
        count[i][r : r + hh, c : c + ww] += 1
        m = (IN - OUT) // 2
        np.testing.assert_array_equal(x[m : m + OUT, m : m + OUT, 0], y)
    for lb, rb, ct in zip(labs, rebuilt, count):
        np.testing.assert_array_equal(rb, lb)
        assert (ct == 1).all()


def test_tile_shapes_from_model():
    model = build_unet((None, None, 1), depth=2, filters=2)
    assert data.tile_shapes(76, model=model) == ((76, 76), (36, 36))
    fixed = build_unet((60, 92, 1), depth=2, filters=2)
    assert data.tile_shapes(None, model=fixed) == ((60, 92), (20, 52))
    with pytest.raises(ValueError, match="input_size"):
        data.tile_shapes(None, model=model)
    with pytest.raises(ValueError, match="only takes 60x92 inputs"):
        data.tile_shapes(76, model=fixed)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (
            dict(labels=np.zeros((2, 30, 30), np.int32)),
            ValueError,
            "images: 3, labels: 2",
        ),
        (
            dict(
                labels=[np.zeros((30, 30), np.int32)] * 2
                + [np.zeros((30, 31), np.int32)]
            ),
            ValueError,
            r"labels\[2\] has shape \(30, 31\) but images\[2\] is 30x30",
        ),
        (
            dict(labels=np.full((3, 30, 30), 255, np.uint8)),
            ValueError,
            r"labels\[0\] has values \{255\} but num_classes=2.*0/255 mask",
        ),
        (
            dict(labels=np.full((3, 30, 30), 2, np.int32)),
            ValueError,
            r"num_classes=2: class indices must be in 0\.\.1",
        ),
        (
            dict(labels=np.zeros((3, 30, 30), np.float32)),
            ValueError,
            r"labels\[0\] has dtype float32.*astype\(np.int32\)",
        ),
        (dict(weights=np.full((3, 30, 30), -1.0)), ValueError, "negative"),
        (dict(weights=np.full((3, 30, 30), np.nan)), ValueError, "NaN"),
        (dict(input_size=62), ValueError, "nearest valid sizes are 60 and 64"),
        (
            dict(images=np.full((3, 30, 30), np.inf)),
            ValueError,
            r"images\[0\].*NaN",
        ),
        (
            dict(
                images=[
                    np.zeros((30, 30)),
                    np.zeros((30, 30, 3)),
                    np.zeros((30, 30)),
                ]
            ),
            ValueError,
            r"images\[1\] has 3 channel",
        ),
        (
            dict(images=["/nonexistent/a.png"] * 3),
            FileNotFoundError,
            r"images\[0\]",
        ),
        (dict(images="/some/folder"), ValueError, "not a single path"),
        (dict(augment="elastic"), ValueError, "augment"),
        (dict(batch_size=0), ValueError, "batch_size"),
    ],
)
def test_bad_input_names_the_item(kwargs, exc, match):
    args = dict(
        images=np.zeros((3, 30, 30), np.uint8),
        labels=np.zeros((3, 30, 30), np.int32),
        input_size=IN,
        depth=DEPTH,
    )
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        data.make_training_dataset(**args)
