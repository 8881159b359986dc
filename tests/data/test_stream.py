import itertools
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from scipy import ndimage

from keras_unet.data import augment, stream, tiles, validation
from keras_unet.data.augment import AugmentConfig
from keras_unet.io.images import write_image
from keras_unet.model.unet import build_unet

IN, OUT, DEPTH = 60, 20, 2  # a depth-2 net: 60 px in, 20 px out
M = (IN - OUT) // 2
GEOMETRY_ONLY = dict(brightness=0.0, contrast=None, gamma=None, noise=0.0)
NEAREST = AugmentConfig(interpolation="nearest", **GEOMETRY_ONLY)
TF = keras.backend.backend() == "tensorflow"


def _blocks(n, h, w, classes=3, seed=0):
    """Label images of 4x4 blocks; the image is the label as grey value."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, (n, h // 4 + 1, w // 4 + 1))
    labels = np.repeat(np.repeat(labels, 4, 1), 4, 2)[:, :h, :w].astype(
        np.int32
    )
    return labels.astype(np.float32), labels


def _take(ds, n):
    """The first n batches as numpy (tf.data or PyDataset, any backend)."""
    return [
        tuple(keras.ops.convert_to_numpy(t) for t in batch)
        for batch in itertools.islice(iter(ds), n)
    ]


def _make(images, labels, weights=None, **kw):
    kw = {"input_size": IN, "depth": DEPTH, "num_classes": 3, **kw}
    return stream.make_training_dataset(images, labels, weights, **kw)


@pytest.mark.backend
def test_shapes_dtypes_and_identical_transform():
    images, labels = _blocks(3, 70, 90)
    weights = labels * 10.0 + 1
    ds = _make(images, labels, weights, seed=0, batch_size=2, augment=NEAREST)
    assert isinstance(ds, keras.utils.PyDataset) != TF
    for x, y, w in _take(ds, 3):
        assert x.shape == (2, IN, IN, 1) and x.dtype == np.float32
        assert y.shape == (2, OUT, OUT) and y.dtype == np.int32
        assert w.shape == (2, OUT, OUT) and w.dtype == np.float32
        # the centre of the input tile is the output tile, pixel for pixel
        np.testing.assert_array_equal(x[:, M : M + OUT, M : M + OUT, 0], y)
        np.testing.assert_array_equal(w, y * 10.0 + 1)


@pytest.mark.backend
def test_tiles_match_a_reference_on_the_whole_image():
    """Tile i = the whole image sampled at the map drawn from (seed, i)."""
    images, labels = _blocks(2, 150, 130)
    images = images + np.linspace(0, 1, 130, dtype=np.float32)  # smooth part
    geo = AugmentConfig(scale=(0.8, 1.2), **GEOMETRY_ONLY)
    ds = _make(images, labels, seed=4, augment=geo, pipeline="py_dataset")
    spec = augment.WarpSpec.create(geo, (IN, IN), (OUT, OUT))
    for i in range(3):
        x, y, _ = (keras.ops.convert_to_numpy(t)[0] for t in ds[i])
        index = ds.sampler.image_index(i)
        p = augment.random_params(augment.sample_rng(4, i), spec, (150, 130))
        qy, qx = _source_positions(p, spec)
        want = ndimage.map_coordinates(
            images[index].astype(float), [qy, qx], order=1, mode="mirror"
        )
        np.testing.assert_allclose(x[..., 0], want, atol=1e-3)
        qy, qx = qy[M : M + OUT, M : M + OUT], qx[M : M + OUT, M : M + OUT]
        near = ndimage.map_coordinates(
            labels[index], [np.floor(qy + 0.5), np.floor(qx + 0.5)], order=0
        )
        clear = (np.abs(qy % 1 - 0.5) > 1e-3) & (np.abs(qx % 1 - 0.5) > 1e-3)
        np.testing.assert_array_equal(y[clear], near[clear])


def _np_reflect(i, n):
    period = max(2 * (n - 1), 1)
    i = np.mod(i, period)
    return np.where(i >= n, period - i, i)


def _source_positions(params, spec):
    """Absolute source (rows, cols) of every input-tile pixel, float64."""
    (in_h, in_w), (out_h, out_w) = spec.input_shape, spec.output_shape
    r, c = np.mgrid[0:in_h, 0:in_w].astype(float)
    r, c = r - (in_h - 1) / 2, c - (in_w - 1) / 2
    a, (oy, ox) = params["matrix"].astype(float), params["origin"]
    field = augment.interpolate_grid(params["grid"], (in_h, in_w))
    qy = oy + (out_h - 1) / 2 + a[0, 0] * r + a[0, 1] * c + field[..., 0]
    qx = ox + (out_w - 1) / 2 + a[1, 0] * r + a[1, 1] * c + field[..., 1]
    return qy, qx


@pytest.mark.backend
@pytest.mark.parametrize(
    "config",
    [
        AugmentConfig(),
        AugmentConfig(interpolation="bicubic", scale=(0.7, 1.3), rotation=20),
    ],
)
def test_windows_give_the_same_tiles_as_the_whole_image(config):
    """Only a window travels to the warp, and nothing changes."""
    rng = np.random.default_rng(2)
    for size in ((300, 260), (9, 400)):
        image = rng.random((*size, 2)).astype(np.float32)
        labels = rng.integers(0, 5, size).astype(np.int32)
        weights = rng.random(size).astype(np.float32)
        spec = augment.WarpSpec.create(
            config, (IN, IN), (OUT, OUT), mask_mirrored=True
        )
        windows, whole = [], []
        for seed in range(3):
            p = augment.random_params(
                augment.sample_rng(seed), spec, image.shape
            )
            windows.append(
                stream.cut_windows(image, labels, weights, p, spec, np.uint8)
            )
            assert windows[-1]["image"].shape[:2] == spec.image_window
            zero = np.zeros(2, np.int32)
            whole.append(
                dict(p, image=image, labels=labels, weights=weights)
                | dict(image_offset=zero, label_offset=zero)
                | dict(size=np.array(size, np.int32))
            )
        got = augment.warp_batch(stream.stack_samples(windows), spec)
        want = augment.warp_batch(stream.stack_samples(whole), spec)
        for g, t in zip(got, want):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(g), keras.ops.convert_to_numpy(t)
            )


def test_windows_hold_every_pixel_a_tile_reads():
    """The window bound of WarpSpec holds for extreme draws (numpy only)."""
    rng = np.random.default_rng(10)
    configs = [
        AugmentConfig(),
        AugmentConfig(rotation=10, rot90=False, scale=(0.5, 2.0)),
        AugmentConfig(rotation=60, elastic_sigma=25.0, elastic_grid=5),
    ]
    for config in configs:
        spec = augment.WarpSpec.create(config, (92, 60), (52, 20))
        for seed in range(40):
            size = tuple(int(n) for n in rng.integers(1, 400, 2))
            p = augment.random_params(augment.sample_rng(seed), spec, size)
            # the largest field the 4-sigma clip allows
            p["grid"] = np.sign(p["grid"]) * 4 * config.elastic_sigma
            zeros = np.zeros(size, np.float32)
            sample = stream.cut_windows(zeros, zeros, None, p, spec)
            qy, qx = _source_positions(p, spec)
            for axis, q in enumerate((qy, qx)):
                taps = np.floor(q)[..., None] + np.arange(-1, 3)
                taps = _np_reflect(taps.astype(int), size[axis])
                low = sample["image_offset"][axis]
                assert low <= taps.min()
                assert taps.max() < low + spec.image_window[axis]
                near = np.floor(q[20:72, 20:40] + 0.5).astype(int)
                near = _np_reflect(near, size[axis])
                low = sample["label_offset"][axis]
                assert low <= near.min()
                assert near.max() < low + spec.label_window[axis]


@pytest.mark.backend
def test_same_seed_repeats_and_other_seed_differs():
    images, labels = _blocks(4, 64, 64)
    a = _take(_make(images, labels, seed=1), 4)
    b = _take(_make(images, labels, seed=1), 4)
    c = _take(_make(images, labels, seed=2), 4)
    for ta, tb in zip(a, b):
        for ua, ub in zip(ta, tb):
            np.testing.assert_array_equal(ua, ub)
    assert not all(np.array_equal(xa, xc) for (xa, *_), (xc, *_) in zip(a, c))
    # (the XLA-compiled warp against the eager one: test_augment)


@pytest.mark.backend
def test_shuffle_visits_every_image_each_epoch():
    images = np.stack([np.full((30, 30), i, np.uint8) for i in range(5)])
    labels = np.zeros((5, 30, 30), np.int32)
    ds = _make(images, labels, seed=3, augment=False, batch_size=5)
    seen = [
        [int(round(v * 255)) for v in x[:, 30, 30, 0]]
        for x, _, _ in _take(ds, 3)
    ]
    for epoch in seen:
        assert sorted(epoch) == [0, 1, 2, 3, 4]
    assert seen[0] != seen[1] or seen[1] != seen[2]
    ordered = _make(images, labels, augment=False, batch_size=5, shuffle=False)
    x = _take(ordered, 1)[0][0]
    np.testing.assert_allclose(x[:, 30, 30, 0] * 255, range(5), atol=1e-3)


@pytest.mark.backend
def test_start_resumes_the_exact_stream_with_any_batch_size():
    images, labels = _blocks(3, 40, 40)
    full = _take(_make(images, labels, seed=9), 7)
    rest = _take(_make(images, labels, seed=9, start=4, batch_size=3), 1)[0]
    for j in range(3):
        for ta, tb in zip(full[4 + j], rest):
            np.testing.assert_allclose(ta[0], tb[j], atol=1e-5)
    with pytest.raises(ValueError, match="start"):
        _make(images, labels, seed=9, start=-1)


@pytest.mark.backend
def test_without_repeat_one_tile_per_image():
    images, labels = _blocks(3, 40, 40)
    ds = _make(images, labels, seed=9, repeat=False, batch_size=2)
    sizes = [len(x) for x, _, _ in _take(ds, 5)]
    assert sizes == [2, 1]
    if isinstance(ds, keras.utils.PyDataset):
        assert ds.num_batches == 2
        with pytest.raises(IndexError, match="2 batches"):
            ds[2]


@pytest.mark.skipif(not TF, reason="tf.data needs the TensorFlow backend")
def test_tf_data_and_py_dataset_give_the_same_samples():
    images, labels = _blocks(3, 50, 70)
    kw = dict(seed=5, batch_size=2, mask_mirrored=True)
    tfd = _take(_make(images, labels, pipeline="tf.data", **kw), 3)
    pyd = _take(_make(images, labels, pipeline="py_dataset", **kw), 3)
    for (xa, ya, wa), (xb, yb, wb) in zip(tfd, pyd):
        np.testing.assert_allclose(xa, xb, atol=1e-4)
        assert np.mean(ya != yb) < 0.01 and np.mean(wa != wb) < 0.01


def test_tf_data_needs_the_tensorflow_backend(monkeypatch):
    images, labels = _blocks(3, 50, 70)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="py_dataset"):
        _make(images, labels, pipeline="tf.data")
    with pytest.raises(ValueError, match="pipeline"):
        _make(images, labels, pipeline="grain")


@pytest.mark.backend
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
    kw = dict(input_size=IN, depth=DEPTH, seed=0, batch_size=3)
    ds = stream.make_training_dataset(imgs, labs, wts, **kw)
    x, y, w = _take(ds, 1)[0]
    assert x.shape == (3, IN, IN, 1) and np.isfinite(x).all()
    assert set(np.unique(y)) <= {0, 1}
    paths = [list(p) for p in zip(*paths)]  # read lazily, checked on use
    ds = stream.make_training_dataset(
        *paths, augment=False, shuffle=False, validate=False, **kw
    )
    x, y, w = _take(ds, 1)[0]
    # uint8 scaled to [0, 1] exactly as keras_unet.data.normalize.to_float_image
    # does
    assert np.isin(x[0], imgs[0].astype(np.float32) / 255.0).all()
    assert 0 <= x.min() and x.max() <= 1
    for i in range(3):  # the weight tiles come from the .npy maps
        assert np.isin(w[i], wts[i]).all()
        assert np.isin(y[i], labs[i]).all()


@pytest.mark.backend
def test_fit_takes_the_stream_and_weights_reach_the_loss():
    images, labels = _blocks(2, 64, 64, classes=2)
    model = build_unet((None, None, 1), depth=DEPTH, filters=2, seed=0)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False if TF else "auto",  # XLA of a U-Net: slow on TF
    )
    kw = dict(input_size=IN, depth=DEPTH, seed=0, pipeline="py_dataset")
    kw["jit_compile"] = False if TF else "auto"  # (XLA: tested elsewhere)
    zero = stream.make_training_dataset(
        images, labels, np.zeros_like(images), **kw
    )
    assert model.evaluate(zero, steps=1, verbose=0) == 0.0

    class Recorded(stream.TrainingTiles):
        asked = []

        def __getitem__(self, index):
            self.asked.append(index)
            return super().__getitem__(index)

    ones = stream.make_training_dataset(images, labels, **kw)
    ones = Recorded(ones.sampler, ones.warp, 1)
    val = validation.make_validation_dataset(
        images, labels, input_size=IN, depth=DEPTH, batch_size=4
    )
    hist = model.fit(
        ones, steps_per_epoch=2, epochs=2, validation_data=val, verbose=0
    )
    assert np.isfinite(hist.history["loss"]).all()
    assert np.isfinite(hist.history["val_loss"]).all()
    # One iterator across epochs: the batches continue, none is skipped or
    # repeated (TensorFlow first reads two batches for the tensor specs).
    asked = Recorded.asked[2:] if TF else Recorded.asked
    assert asked == list(range(len(asked))) and len(asked) >= 4


def test_validation_dataset_covers_every_pixel_once():
    rng = np.random.default_rng(1)
    sizes = [(45, 33), (20, 20), (61, 80)]
    labs = [rng.integers(0, 2, s).astype(np.int32) for s in sizes]
    imgs = [lb.astype(np.float32) for lb in labs]
    ds = validation.make_validation_dataset(
        imgs, labs, input_size=IN, depth=DEPTH, batch_size=4
    )
    origins = validation.validation_tiles(sizes, (OUT, OUT))
    rebuilt = [np.full(s, -1) for s in sizes]
    count = [np.zeros(s) for s in sizes]
    tiles = [t for batch in _take(ds, 100) for t in zip(*batch)]
    assert len(tiles) == len(origins) and len(ds) == 6
    for (i, r, c), (x, y, w) in zip(origins, tiles):
        h, wd = sizes[i]
        hh, ww = min(OUT, h - r), min(OUT, wd - c)
        assert (w[:hh, :ww] == 1).all() and w.sum() == hh * ww
        rebuilt[i][r : r + hh, c : c + ww] = y[:hh, :ww]
        count[i][r : r + hh, c : c + ww] += 1
        np.testing.assert_array_equal(x[M : M + OUT, M : M + OUT, 0], y)
        # the context is the image mirrored like numpy.pad(mode="reflect")
        padded = np.pad(imgs[i], IN, mode="reflect")
        np.testing.assert_array_equal(
            x[..., 0],
            padded[IN + r - M : IN + r - M + IN, IN + c - M :][:, :IN],
        )
    for lb, rb, ct in zip(labs, rebuilt, count):
        np.testing.assert_array_equal(rb, lb)
        assert (ct == 1).all()
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_tile_shapes_from_model():
    model = build_unet((None, None, 1), depth=2, filters=2)
    assert tiles.tile_shapes(76, model=model) == ((76, 76), (36, 36))
    fixed = build_unet((60, 92, 1), depth=2, filters=2)
    assert tiles.tile_shapes(None, model=fixed) == ((60, 92), (20, 52))
    with pytest.raises(ValueError, match="input_size"):
        tiles.tile_shapes(None, model=model)
    with pytest.raises(ValueError, match="only takes 60x92 inputs"):
        tiles.tile_shapes(76, model=fixed)


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
        (dict(jit_compile="always"), ValueError, "jit_compile"),
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
        stream.make_training_dataset(**args)


def test_bad_labels_are_reported_before_training_without_validate():
    labels = np.zeros((2, 30, 30), np.int32)
    labels[1, 3, 3] = 5
    ds = stream.make_training_dataset(
        np.zeros((2, 30, 30), np.uint8),
        labels,
        input_size=IN,
        depth=DEPTH,
        validate=False,
        shuffle=False,
        pipeline="py_dataset",
    )
    ds[0]  # image 0 is fine
    with pytest.raises(ValueError, match=r"labels\[1\] has values \{0, 5\}"):
        ds[1]


BLOCK_TENSORFLOW = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"blocked for this test: {name}")

sys.meta_path.insert(0, Block())
"""

FIT_WITHOUT_TENSORFLOW = """
import keras, numpy as np
import keras_unet.data.augment, keras_unet.data
assert "tensorflow" not in sys.modules, "importing keras_unet loaded TF"
from keras_unet import build_unet
from keras_unet.data.stream import make_training_dataset

rng = np.random.default_rng(0)
images = rng.integers(0, 255, (2, 50, 60), dtype=np.uint8)
labels = (images > 127).astype("int32")
ds = make_training_dataset(images, labels, input_size=44, depth=2, seed=0)
assert isinstance(ds, keras.utils.PyDataset)
model = build_unet((None, None, 1), depth=2, filters=2)
model.compile(
    "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
)
hist = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
assert np.isfinite(hist.history["loss"][0])
assert "tensorflow" not in sys.modules
print("trained without tensorflow on", keras.backend.backend())
"""


def test_trains_on_jax_without_tensorflow_installed():
    # XLA's cheapest CPU compilation: this tests that it runs, not speed.
    flags = "--xla_backend_optimization_level=0"
    flags += " --xla_llvm_disable_expensive_passes=true"
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flags}",
    )
    code = BLOCK_TENSORFLOW + textwrap.dedent(FIT_WITHOUT_TENSORFLOW)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=pathlib.Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained without tensorflow on jax" in result.stdout


def test_tile_shapes_from_a_spec():
    from keras_unet.model.spec import inspect_unet
    from keras_unet.model.unet import build_unet

    spec = inspect_unet(build_unet((92, 92, 1), depth=2, filters=2))
    assert tiles.tile_shapes(None, spec=spec) == ((92, 92), (52, 52))
    with pytest.raises(ValueError, match="only takes 92x92"):
        tiles.tile_shapes(108, spec=spec)
