"""Tests for keras_unet.inference (tile_plan, tiling_model, tiled): the tile
plan on its own, and prediction against one untiled pass of the model over the
mirror-padded image.

Backend-dependent (``@pytest.mark.backend``): CI runs them on TensorFlow,
JAX and PyTorch.
"""

import contextlib
import warnings

import keras
import numpy as np
import pytest
from scipy.special import expit, softmax

from keras_unet.data.mirror import mirror_index, mirror_pad
from keras_unet.inference.tile_plan import (
    balanced_batch,
    balanced_tile,
    tile_iterator,
    tile_layout,
    tile_of_pixel,
)
from keras_unet.inference.tiled import predict_tiled, predict_tiled_batch
from keras_unet.inference.tiling_model import (
    choose_tile_size,
    default_memory_budget,
    estimate_tile_memory,
)
from keras_unet.model import geometry
from keras_unet.model.spec import inspect_unet
from keras_unet.model.unet import build_unet

pytestmark = pytest.mark.backend

# ----------------------------------------------------------------- helpers


def np_mirror_pad(a, before, after, axis, mode):
    """Independent reference: numpy.pad (numpy >= 1.17 mirrors repeatedly
    when the padding exceeds the axis, and repeats a 1-pixel axis)."""
    widths = [(0, 0)] * a.ndim
    widths[axis] = (before, after)
    return np.pad(a, widths, mode=mode)


def untiled_reference(model, image, depth, mode="reflect", activation=True):
    """One pass of the model over the whole mirror-padded image.

    Pads by the margin at the top/left and by the margin plus the rounding to
    a valid size at the bottom/right, calls the model once (not through
    predict_on_batch), crops to the image, applies soft-max/sigmoid.
    """
    if image.ndim == 2:
        image = image[..., None]
    h, w = image.shape[:2]
    m = geometry.margin(depth)
    ph = geometry.input_size_for_output(h, depth)
    pw = geometry.input_size_for_output(w, depth)
    x = np_mirror_pad(image, m, ph - h - m, 0, mode)
    x = np_mirror_pad(x, m, pw - w - m, 1, mode)
    assert x.shape[:2] == (ph, pw)
    logits = model(x[None].astype(np.float32), training=False)
    logits = keras.ops.convert_to_numpy(logits)[0]
    logits = logits[:h, :w].astype(np.float64)
    if not activation:
        return logits
    if logits.shape[-1] == 1:
        return expit(logits)
    return softmax(logits, axis=-1)


_MODELS = {}


def small_unet(depth, filters=2, channels=1, classes=2, input_hw=(None, None)):
    key = (depth, filters, channels, classes, input_hw)
    if key not in _MODELS:
        _MODELS[key] = build_unet(
            (*input_hw, channels),
            num_classes=classes,
            depth=depth,
            filters=filters,
            seed=depth * 100 + channels * 10 + classes,
        )
    return _MODELS[key]


def rng_image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# --------------------------------------------------------------- mirroring


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_mirror_index_matches_numpy_pad_for_small_pads(mode):
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 30))
        limit = n - 1 if mode == "reflect" else n
        b, a = (int(v) for v in rng.integers(0, limit + 1, size=2))
        x = rng.random(n)
        want = np.pad(x, (b, a), mode=mode)
        got = x[mirror_index(np.arange(-b, n + a), n, mode)]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 17])
def test_mirror_pad_repeats_mirroring_past_the_image(mode, n):
    rng = np.random.default_rng(n)
    image = rng.random((n, n + 2, 2))
    for top, bottom, left, right in [(92, 7, 40, 200), (3 * n + 1, 0, 0, 5)]:
        got = mirror_pad(image, ((top, bottom), (left, right)), mode)
        want = np_mirror_pad(image, top, bottom, 0, mode)
        want = np_mirror_pad(want, left, right, 1, mode)
        np.testing.assert_array_equal(got, want)


def test_mirror_pad_modes_differ_at_the_edge():
    x = np.array([[1.0, 2.0, 3.0]])
    assert mirror_pad(x, ((0, 0), (2, 0)), "reflect")[0, :2].tolist() == [3, 2]
    assert mirror_pad(x, ((0, 0), (2, 0)), "symmetric")[0, :2].tolist() == [
        2,
        1,
    ]
    with pytest.raises(ValueError, match="mirror"):
        mirror_pad(x, ((1, 1), (1, 1)), "wrap")


# ------------------------------------------------------------ tile iterator


def _check_layout(shape, tile, margin, step):
    layout = tile_layout(shape, tile, margin, step)
    h, w = shape
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    cover = np.zeros((h, w), np.int32)
    ph, pw = layout.padded_shape
    assert layout.pad[0][0] == margin and layout.pad[1][0] == margin
    oh, ow = th - 2 * margin, tw - 2 * margin
    tiles = list(tile_iterator(shape, tile, margin, step))
    assert len(tiles) == len(layout) == layout.counts[0] * layout.counts[1]
    for t in tiles:
        (rs, cs), (rc, cc), (rd, cd) = t.source, t.crop, t.destination
        # Source tiles have the tile size and lie inside the padded image.
        assert (rs.stop - rs.start, cs.stop - cs.start) == (th, tw)
        assert 0 <= rs.start and rs.stop <= ph
        assert 0 <= cs.start and cs.stop <= pw
        # Offsets are multiples of the step.
        assert rs.start % step == 0 and cs.start % step == 0
        # The kept part lies in the tile's output and matches the
        # destination; output pixel y comes from padded pixel y + margin,
        # i.e. from tile-output pixel y - source start.
        assert 0 <= rc.start < rc.stop <= oh and 0 <= cc.start < cc.stop <= ow
        assert rd.stop - rd.start == rc.stop - rc.start
        assert cd.stop - cd.start == cc.stop - cc.start
        assert rd.start - rs.start == rc.start
        assert cd.start - cs.start == cc.start
        cover[rd, cd] += 1
    # The destination tiles cover the output exactly once.
    assert (cover == 1).all()
    # tile_of_pixel (what the exported graph stitches with) is their inverse.
    for n, count, stride, axis in [
        (h, layout.counts[0], layout.strides[0], 0),
        (w, layout.counts[1], layout.strides[1], 1),
    ]:
        k, offset = tile_of_pixel(np.arange(n), stride, count)
        slices = [t.destination[axis] for t in tiles]
        starts = sorted({s.start for s in slices})
        assert (np.asarray(starts)[k] + offset == np.arange(n)).all()
        for s in slices:
            assert (k[s] == starts.index(s.start)).all()
    return layout


def test_tile_iterator_random_shapes():
    rng = np.random.default_rng(7)
    for _ in range(300):
        depth = int(rng.integers(1, 5))
        padding = "valid" if rng.random() < 0.8 else "same"
        margin = geometry.margin(depth, padding)
        step = 2**depth
        n_min = geometry.min_input_size(depth, padding)
        # Any valid tile that can tile (output >= step + overlap).
        tile = [n_min + step * int(rng.integers(1, 30)) for _ in range(2)]
        shape = tuple(int(v) for v in rng.integers(1, 1500, size=2))
        _check_layout(shape, tuple(tile), margin, step)


def test_tile_layout_paper_numbers():
    layout = tile_layout((2048, 2048), 572, margin=92, step=16)
    # 388 output px per tile; offsets must be multiples of 16: stride 384.
    assert layout.strides == (384, 384) and layout.counts == (6, 6)
    assert layout.padded_shape == (5 * 384 + 572,) * 2
    one = tile_layout((388, 1), 572, margin=92, step=16)
    assert one.counts == (1, 1) and one.pad == ((92, 92), (92, 479))


def test_tile_layout_errors():
    with pytest.raises(ValueError, match="no output"):
        tile_layout((100, 100), 184, margin=92, step=16)
    # 188 gives 4 output px: fine for a 4 px image, not for a larger one.
    assert len(tile_layout((4, 4), 188, margin=92, step=16)) == 1
    with pytest.raises(ValueError, match="at least 204"):
        tile_layout((5, 4), 188, margin=92, step=16)
    with pytest.raises(ValueError, match="image_shape"):
        tile_layout((0, 5), 572, margin=92, step=16)
    with pytest.raises(TypeError, match="tile_size"):
        tile_layout((10, 5), "572", margin=92, step=16)


def test_balanced_tile_is_the_smallest_tile_needing_no_more_tiles():
    rng = np.random.default_rng(3)
    for _ in range(300):
        g = geometry.UNetGeometry(
            int(rng.integers(1, 5)), "valid" if rng.random() < 0.8 else "same"
        )
        n = int(rng.integers(1, 3000))
        floor = g.round_up_tile(2 * g.context + 2 * g.step)
        tile_max = floor + g.step * int(rng.integers(0, 60))

        tile = int(balanced_tile(n, tile_max, g))
        assert g.is_valid_tile(tile) and tile <= tile_max
        shorter = [tile - g.step] if tile - g.step >= floor else []
        counts = [
            tile_layout((n, 1), (t, floor), g.context, g.step).counts[0]
            for t in (tile, min(tile_max, g.tile_for_output(n)), *shorter)
        ]
        assert counts[0] == counts[1]  # as few tiles as the largest tile
        assert all(c > counts[0] for c in counts[2:])  # the smallest such


def test_balanced_batch_fills_calls_evenly():
    for n in range(1, 200):
        for batch in (1, 3, 8, 64):
            calls, per_call = balanced_batch(batch, n)
            assert per_call <= batch and calls * per_call >= n
            assert calls == -(-n // batch)  # no more calls than needed
            assert calls * per_call - n < calls  # padding below one per call


# --------------------------------------------------------------- exactness


@pytest.mark.parametrize(
    "depth, shape, tile",
    [
        (2, (300, 517), (92, 108)),  # many tiles, odd sizes
        (2, (300, 517), None),  # automatic tile size: one tile
        (2, (7, 3), None),  # smaller than the 20 px margin
        (2, (1, 1), None),  # one pixel
        (3, (300, 517), (196, 164)),
        (3, (13, 45), 172),
        (4, (230, 190), 284),  # 3x2 tiles of a depth-4 net (92 px margin)
        (4, (50, 30), None),
        (4, (1, 2), None),
    ],
)
def test_tiled_equals_untiled_pass(depth, shape, tile):
    model = small_unet(depth)
    image = rng_image(shape, seed=depth)
    got = predict_tiled(model, image, tile_size=tile)
    want = untiled_reference(model, image, depth)
    assert got.shape == (*shape, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_tiled_equals_untiled_multichannel_multiclass(mode):
    model = small_unet(2, filters=3, channels=3, classes=3)
    image = (rng_image((61, 83, 3), seed=3) * 255).astype(np.uint8)
    got = predict_tiled(model, image, tile_size=60, batch_size=4, mirror=mode)
    want = untiled_reference(model, image / np.float32(255), 2, mode)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_one_class_model_gives_sigmoid():
    model = small_unet(2, classes=1)
    image = rng_image((40, 57))
    got = predict_tiled(model, image, tile_size=60)
    assert got.shape == (40, 57, 1)
    np.testing.assert_allclose(
        got, untiled_reference(model, image, 2), atol=1e-5, rtol=0
    )


def test_from_logits_false_returns_raw_outputs():
    model = small_unet(2)
    image = rng_image((40, 57))
    got = predict_tiled(model, image, tile_size=60, from_logits=False)
    want = untiled_reference(model, image, 2, activation=False)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def test_small_memory_budget_tiles_and_stays_exact():
    model = small_unet(3)
    image = rng_image((300, 517), seed=11)
    budget = 5 * 2**20
    tile = choose_tile_size(model, image.shape, memory_budget=budget)
    assert tile == (196, 196)  # 3 x 5 tiles
    got = predict_tiled(model, image, memory_budget=budget, batch_size=3)
    np.testing.assert_allclose(
        got, untiled_reference(model, image, 3), atol=1e-5, rtol=0
    )


def test_fixed_size_model_is_rewired_with_shared_weights():
    fixed = small_unet(2, input_hw=(92, 92))
    free = build_unet((None, None, 1), depth=2, filters=2)
    free.set_weights(fixed.get_weights())
    image = rng_image((130, 75), seed=5)
    got = predict_tiled(fixed, image, tile_size=(108, 92))
    np.testing.assert_allclose(
        got, untiled_reference(free, image, 2), atol=1e-5, rtol=0
    )
    # Weights are shared, not copied: a change shows up at once.
    fixed.set_weights([w * 0.5 for w in fixed.get_weights()])
    free.set_weights(fixed.get_weights())
    got = predict_tiled(fixed, image, tile_size=(108, 92))
    np.testing.assert_allclose(
        got, untiled_reference(free, image, 2), atol=1e-5, rtol=0
    )


def test_model_that_cannot_be_rewired_uses_its_own_size(monkeypatch):
    from keras_unet.inference import tiling_model

    fixed = build_unet((92, 92, 1), depth=2, filters=2, seed=8)
    monkeypatch.setattr(tiling_model, "free_size_model", lambda model: None)
    image = rng_image((130, 75), seed=6)
    assert choose_tile_size(fixed, image.shape) == (92, 92)
    got = predict_tiled(fixed, image)
    free = build_unet((None, None, 1), depth=2, filters=2)
    free.set_weights(fixed.get_weights())
    np.testing.assert_allclose(
        got, untiled_reference(free, image, 2), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="only accepts 92x92"):
        predict_tiled(fixed, image, tile_size=(108, 92))


def test_same_padded_model_keeps_context_around_tiles():
    model = build_unet((None, None, 1), depth=2, filters=2, padding="same")
    image = rng_image((150, 90), seed=2)
    c = 6 * 2**2  # context kept around every tile of a same-padded net
    # One pass over the image mirror-padded by c (to multiples of 4).
    x = np_mirror_pad(image[..., None], c, c + 2, 0, "reflect")
    x = np_mirror_pad(x, c, c + 2, 1, "reflect")
    ref = keras.ops.convert_to_numpy(model(x[None], training=False))
    ref = ref[0, c : c + 150, c : c + 90]
    ref = softmax(ref.astype(np.float64), axis=-1)
    for tile in [None, 64, (56, 72)]:  # one tile; 16 px output tiles; mixed
        got = predict_tiled(model, image, tile_size=tile)
        assert got.shape == (150, 90, 2)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="nearest valid sizes are 52 and 56"):
        predict_tiled(model, image, tile_size=54)


# -------------------------------------------------------------------- TTA


def test_tta_averages_probabilities_of_transformed_images():
    model = small_unet(2)
    image = rng_image((45, 70), seed=9)  # not square: quarter turns swap axes
    names = ["identity", "rot90", "flip_lr", "anti_transpose"]
    got = predict_tiled(model, image, tile_size=(60, 76), tta=names)
    forward = {
        "identity": (lambda x: x, lambda p: p),
        "rot90": (lambda x: np.rot90(x), lambda p: np.rot90(p, -1)),
        "flip_lr": (np.fliplr, np.fliplr),
        "anti_transpose": (
            lambda x: np.rot90(x, 2).T,
            lambda p: np.rot90(np.transpose(p, (1, 0, 2)), 2),
        ),
    }
    want = np.mean(
        [
            back(untiled_reference(model, fwd(image).copy(), 2))
            for fwd, back in forward.values()
        ],
        axis=0,
    )
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    full = predict_tiled(model, image, tta=True)
    assert full.shape == (45, 70, 2)
    assert not np.allclose(full, got, atol=1e-4)  # the transforms matter


# ------------------------------------------------------------ stack/list


def test_batch_variant_matches_single_images():
    model = small_unet(2)
    stack = (rng_image((3, 50, 41), seed=4) * 65535).astype(np.uint16)
    got = predict_tiled_batch(model, stack, tile_size=60, batch_size=5)
    assert got.shape == (3, 50, 41, 2)
    for i in range(3):
        want = untiled_reference(model, stack[i] / np.float32(65535), 2)
        np.testing.assert_allclose(got[i], want, atol=1e-5, rtol=0)
    images = [rng_image((20, 30), 1), rng_image((33, 8, 1), 2), stack[0]]
    listed = predict_tiled_batch(model, images, tta="flips")
    assert [p.shape for p in listed] == [(20, 30, 2), (33, 8, 2), (50, 41, 2)]
    np.testing.assert_allclose(
        listed[1],
        predict_tiled(model, images[1], tta="flips"),
        atol=1e-6,
    )


# --------------------------------------------------------------- memory


@pytest.mark.parametrize("depth, filters", [(1, 4), (2, 4), (3, 2), (4, 2)])
def test_memory_rule_bounds_the_sum_of_all_layer_outputs(depth, filters):
    # Independent count: every layer output of a fixed-size model, as Keras
    # infers its shape, times 4 bytes. The rule (16 per filter and pixel)
    # is above it for every tile and within 2x of it for tiles >= 500 px.
    g = geometry.UNetGeometry(depth)
    for size in sorted({g.min_tile, g.round_up_tile(500), g.round_up(1500)}):
        model = build_unet((size, size, 1), depth=depth, filters=filters)
        count = sum(np.prod(layer.output.shape[1:]) for layer in model.layers)
        rule = estimate_tile_memory(model, size)
        assert rule == 16 * filters * size * size * 4
        assert 4 * count <= rule
        if size >= 500:
            assert rule < 2 * 4 * count


def test_memory_rule_follows_filters_and_dtype():
    model = small_unet(2, filters=3)
    assert estimate_tile_memory(model, (92, 60)) == 16 * 3 * 92 * 60 * 4
    spec = inspect_unet(model)
    assert estimate_tile_memory(model, 92, spec=spec) == 16 * 3 * 92**2 * 4
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = build_unet((None, None, 1), depth=2, filters=3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert estimate_tile_memory(half, 92) == 16 * 3 * 92**2 * 2


def test_choose_tile_size_follows_budget_and_image():
    model = small_unet(3)  # margin 44, valid sizes 92 + 8k
    # Ample memory: one tile just covering the image.
    assert choose_tile_size(model, (300, 517), 2**34) == (388, 612)
    sizes = [
        choose_tile_size(model, (2000, 2000), b)[0]
        for b in (2**20, 2**22, 2**24, 2**26)
    ]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    for size, budget in zip(sizes, (2**20, 2**22, 2**24, 2**26)):
        assert geometry.is_valid_input_size(size, 3)
        layout = tile_layout((2000, 2000), size, 44, 8)
        # No smaller valid tile needs the same number of tiles...
        smaller = size - 8
        if smaller - 88 >= 8 + 4:
            assert len(tile_layout((2000, 2000), smaller, 44, 8)) > len(layout)
        # ... and the tile fits the budget, unless it is the smallest tile
        # that can tile an image (100 px for depth 3).
        assert estimate_tile_memory(model, size) <= budget or size == 100
    # A user tile size is an upper bound, shrunk to what the image needs.
    assert choose_tile_size(model, (50, 2000), 2**30, tile_size=300) == (
        140,
        292,
    )
    assert 0 < default_memory_budget() <= 2 * 2**30


# -------------------------------------------------------------- bad input


def test_bad_input_errors():
    model = small_unet(2)
    image = rng_image((40, 50))
    with pytest.raises(ValueError, match=r"expects images with 1 channel.*3"):
        predict_tiled(model, np.zeros((40, 50, 3), np.uint8))
    rgb = small_unet(2, channels=3)
    with pytest.raises(ValueError, match=r"expects images with 3 channel.*2-D"):
        predict_tiled(rgb, image)
    bad = image.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        predict_tiled(model, bad)
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        predict_tiled_batch(model, bad[None])
    with pytest.raises(ValueError, match="empty"):
        predict_tiled(model, np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="empty"):
        predict_tiled_batch(model, [])
    with pytest.raises(ValueError, match="nearest valid sizes are 92 and 96"):
        predict_tiled(model, image, tile_size=94)
    with pytest.raises(ValueError, match="smallest valid size is 44"):
        predict_tiled(model, image, tile_size=(20, 44))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        predict_tiled(model, np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="use predict_tiled_batch"):
        predict_tiled(model, np.zeros((2, 40, 50, 1), np.float32))
    with pytest.raises(ValueError, match="use predict_tiled_batch"):
        predict_tiled(model, np.zeros((2, 40, 50), np.float32))
    with pytest.raises(ValueError, match="use predict_tiled\\b"):
        predict_tiled_batch(model, image)
    with pytest.raises(ValueError, match="batch_size"):
        predict_tiled(model, image, batch_size=0)
    with pytest.raises(ValueError, match="memory_budget"):
        predict_tiled(model, image, memory_budget=-1)
    with pytest.raises(ValueError, match="verbose"):
        predict_tiled(model, image, verbose=2)
    with pytest.raises(ValueError, match="Unknown test-time transform"):
        predict_tiled(model, image, tta="rot45")
    with pytest.raises(TypeError, match="keras.Model"):
        predict_tiled(lambda x: x, image)


def test_progress_bar(capsys):
    model = small_unet(2)
    image = rng_image((120, 100))  # 6 x 5 tiles of 60 px
    predict_tiled(model, image, tile_size=60, batch_size=4)  # 8 calls
    assert "batch" in capsys.readouterr().out
    predict_tiled(model, image, tile_size=60, batch_size=8)  # 4 calls
    assert capsys.readouterr().out == ""
    predict_tiled(model, image, tile_size=60, batch_size=8, verbose=True)
    assert "batch" in capsys.readouterr().out
    predict_tiled(model, image, tile_size=60, batch_size=4, verbose=False)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------- out of memory


def fake_error(name, message):
    """An exception whose class has a backend's out-of-memory name."""
    return type(name, (Exception,), {})(message)


OOM_ERRORS = [
    ("ResourceExhaustedError", "OOM when allocating tensor"),  # TensorFlow
    ("XlaRuntimeError", "RESOURCE_EXHAUSTED: Out of memory allocating"),  # JAX
    ("OutOfMemoryError", "CUDA out of memory. Tried to allocate"),  # torch
]


@contextlib.contextmanager
def oom_warnings():
    """The messages of the out-of-memory warnings raised in the block."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messages = []
        yield messages
    for w in caught:
        if "ran out of memory" in str(w.message):
            assert w.category is UserWarning
            assert w.filename == __file__  # it points at the caller
            messages.append(str(w.message))


def limit_memory(monkeypatch, model, max_pixels, error):
    """Make model calls with more than `max_pixels` input pixels fail."""
    real, calls = model.predict_on_batch, []

    def limited(x):
        calls.append(x.shape[:3])
        if np.prod(x.shape[:3]) > max_pixels:
            raise fake_error(*error)
        return real(x)

    monkeypatch.setattr(model, "predict_on_batch", limited)
    return calls


@pytest.mark.parametrize("error", OOM_ERRORS)
def test_out_of_memory_halves_the_batch(monkeypatch, error):
    model = build_unet((None, None, 1), depth=2, filters=2, seed=21)
    stack = rng_image((8, 30, 30), seed=7)  # one 72 px tile per image
    calls = limit_memory(monkeypatch, model, 2 * 72 * 72, error)
    with oom_warnings() as warned:
        got = predict_tiled_batch(model, stack)
    for image, probs in zip(stack, got):
        want = untiled_reference(model, image, 2)
        np.testing.assert_allclose(probs, want, atol=1e-5, rtol=0)
    assert calls == [(8, 72, 72), (4, 72, 72)] + [(2, 72, 72)] * 4
    assert len(warned) == 2 and "8 tile(s) of 72x72" in warned[0]


def test_out_of_memory_shrinks_the_tile_then_gives_up(monkeypatch):
    model = build_unet((None, None, 1), depth=2, filters=2, seed=22)
    image = rng_image((300, 517), seed=8)
    want = untiled_reference(model, image, 2)
    calls = limit_memory(monkeypatch, model, 120 * 120, OOM_ERRORS[0])
    with oom_warnings() as warned:
        got = predict_tiled(model, image, tta=["identity", "rot90"])
    assert len(warned) >= 3 and all("half of it" in m for m in warned)
    np.testing.assert_allclose(
        got,
        (want + np.rot90(untiled_reference(model, np.rot90(image), 2), -1)) / 2,
        atol=1e-5,
        rtol=0,
    )
    assert calls[0] == (1, 340, 560)  # one tile for the image: too large
    # Every retry asks for at most half the memory of the failed call, and
    # once a call fits, the rest (also of the second transform) fit too.
    fits = [np.prod(c) <= 120 * 120 for c in calls]
    for i in range(fits.index(True)):
        assert np.prod(calls[i + 1]) <= np.prod(calls[i]) / 2
    assert all(fits[fits.index(True) :])
    # Nothing fits: a MemoryError that says so, after the retries.
    limit_memory(monkeypatch, model, 1, OOM_ERRORS[1])
    with oom_warnings() as warned, pytest.raises(MemoryError, match="least"):
        predict_tiled(model, image, batch_size=4)
    assert warned


def test_other_errors_are_not_retried(monkeypatch):
    model = build_unet((None, None, 1), depth=2, filters=2)
    calls = limit_memory(monkeypatch, model, 0, ("ValueError", "bad input"))
    with pytest.raises(Exception, match="bad input"):
        predict_tiled(model, rng_image((40, 40)), batch_size=2)
    assert len(calls) == 1


def test_spec_argument_replaces_inspection():
    model = small_unet(2)
    image = rng_image((40, 57))
    spec = inspect_unet(model)
    np.testing.assert_array_equal(
        predict_tiled(model, image, spec=spec), predict_tiled(model, image)
    )
    assert choose_tile_size(model, (40, 57), spec=spec) == (80, 100)
    with pytest.raises(TypeError, match="UNetSpec"):
        predict_tiled(model, image, spec={"depth": 2})
