import re

import keras
import numpy as np
import pytest

from keras_unet.model import geometry
from keras_unet.model.spec import inspect_unet
from keras_unet.model.unet import build_unet


@pytest.fixture(scope="module")
def paper_model():
    return build_unet()


def _convs(model):
    return [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose)
    ]


def test_paper_model_matches_paper(paper_model):
    m = paper_model
    assert m.count_params() == 31_030_658
    assert m.input_shape == (None, 572, 572, 1)
    assert m.output_shape == (None, 388, 388, 2)
    convs = _convs(m)
    assert len(convs) == 23
    kernels = [tuple(c.kernel_size) for c in convs]
    transposed = [isinstance(c, keras.layers.Conv2DTranspose) for c in convs]
    assert kernels.count((3, 3)) == 18 and sum(transposed) == 4
    assert all(k == (2, 2) for k, t in zip(kernels, transposed) if t)
    assert kernels.count((1, 1)) == 1 and convs[-1].kernel_size == (1, 1)
    assert all(c.padding == "valid" for c in convs)
    # Channels per level: 64, 128, 256, 512, 1024 down, halved on the way up.
    widths = [c.filters for c in convs if c.kernel_size == (3, 3)]
    assert widths == [
        64,
        64,
        128,
        128,
        256,
        256,
        512,
        512,
        1024,
        1024,
        512,
        512,
        256,
        256,
        128,
        128,
        64,
        64,
    ]
    assert [c.filters for c, t in zip(convs, transposed) if t] == [
        512,
        256,
        128,
        64,
    ]
    assert convs[-1].filters == 2
    # ReLU after every 3x3 conv and up-conv, logits (no activation) at the end.
    assert all(c.activation is keras.activations.relu for c in convs[:-1])
    assert convs[-1].activation is keras.activations.linear


def test_feature_map_sizes_follow_fig1(paper_model):
    m = paper_model
    got = [
        m.get_layer(f"unet_{stage}").output.shape[1]
        for stage, _ in geometry.size_trace(572)
        if stage != "input"
    ]
    assert got == [
        n for stage, n in geometry.size_trace(572) if stage != "input"
    ]
    crops = [m.get_layer(f"unet_up{lv}_crop").cropping for lv in (1, 2, 3, 4)]
    assert crops == [((c, c), (c, c)) for c in (88, 40, 16, 4)]
    # Concatenation: cropped contracting-path features first, then up-conv.
    concat = m.get_layer("unet_up4_concat")
    assert concat.output.shape[-1] == 1024


def test_dropout_at_end_of_contracting_path(paper_model):
    drops = [
        lay
        for lay in paper_model.layers
        if isinstance(lay, keras.layers.Dropout)
    ]
    assert [d.name for d in drops] == [
        "unet_down4_dropout",
        "unet_bottom_dropout",
    ]
    assert all(d.rate == 0.5 for d in drops)
    # The 512-channel dropout feeds both the pool and the skip connection.
    assert paper_model.get_layer("unet_down4_pool").input is drops[0].output
    assert paper_model.get_layer("unet_up4_crop").input is drops[0].output
    assert not any(
        isinstance(lay, keras.layers.Dropout)
        for lay in build_unet(dropout=0).layers
    )


def test_he_normal_untruncated(paper_model):
    # Gaussian with std sqrt(2/N), N = fan-in (3*3*64 = 576 after 64 channels).
    w = paper_model.get_layer("unet_down1_conv2").kernel.numpy().ravel()
    std = np.sqrt(2.0 / 576)
    assert w.mean() == pytest.approx(0.0, abs=0.02 * std)
    assert w.std() == pytest.approx(std, rel=0.02)
    # Untruncated: about 4.55% of a Gaussian lies beyond 2 std.
    assert np.mean(np.abs(w) > 2 * std) == pytest.approx(0.0455, abs=0.005)
    big = paper_model.get_layer("unet_bottom_conv2").kernel.numpy().ravel()
    assert big.std() == pytest.approx(np.sqrt(2.0 / (9 * 1024)), rel=0.01)


def test_layer_names_by_level_and_role(paper_model):
    names = [layer.name for layer in paper_model.layers]
    assert len(set(names)) == len(names)
    pattern = re.compile(
        r"unet_(input|logits|bottom_(conv[12]|dropout)|"
        r"down[1-4]_(conv[12]|pool|dropout)|up[1-4]_(upconv|crop|concat|conv[12]))$"
    )
    assert all(pattern.match(n) for n in names), names


def _np_conv(x, kernel, bias, pad=0):
    """Plain 'valid' cross-correlation, NHWC, written out with loops."""
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw, _, cout = kernel.shape
    n, h, w, _ = x.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, cout))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum(
                "nhwc,cd->nhwd",
                x[:, i : i + h - kh + 1, j : j + w - kw + 1],
                kernel[i, j],
            )
    return out + bias


def _np_upconv(x, kernel, bias):
    """2x2 stride-2 transposed conv: each input pixel paints a 2x2 block."""
    n, h, w, _ = x.shape
    out = np.zeros((n, 2 * h, 2 * w, kernel.shape[2]))
    for i in range(2):
        for j in range(2):
            out[:, i::2, j::2] = np.einsum("nhwc,dc->nhwd", x, kernel[i, j])
    return out + bias


def _relu(x):
    return np.maximum(x, 0)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_forward_pass_matches_numpy_reference(padding):
    """A depth-2 net against an independent numpy forward pass."""
    model = build_unet(
        (None, None, 2),
        num_classes=3,
        depth=2,
        filters=4,
        padding=padding,
        seed=1,
    )
    pad = 1 if padding == "same" else 0
    params = {layer.name: layer.get_weights() for layer in model.layers}
    rng = np.random.default_rng(0)
    n = 60 if padding == "valid" else 32
    x = rng.normal(size=(2, n, n + 16, 2))

    def block(h, prefix):
        for j in (1, 2):
            h = _relu(_np_conv(h, *params[f"unet_{prefix}_conv{j}"], pad=pad))
        return h

    d1 = block(x, "down1")
    h = d1.reshape(2, d1.shape[1] // 2, 2, d1.shape[2] // 2, 2, -1).max(
        axis=(2, 4)
    )
    d2 = block(h, "down2")
    h = d2.reshape(2, d2.shape[1] // 2, 2, d2.shape[2] // 2, 2, -1).max(
        axis=(2, 4)
    )
    h = block(h, "bottom")
    for level, skip in ((2, d2), (1, d1)):
        h = _relu(_np_upconv(h, *params[f"unet_up{level}_upconv"]))
        dy = (skip.shape[1] - h.shape[1]) // 2
        dx = (skip.shape[2] - h.shape[2]) // 2
        skip = skip[:, dy : dy + h.shape[1], dx : dx + h.shape[2]]
        h = block(np.concatenate([skip, h], axis=-1), f"up{level}")
    expected = _np_conv(h, *params["unet_logits"])

    got = model.predict(x.astype("float32"), verbose=0)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_none_spatial_sizes_run_on_any_valid_size(depth):
    model = build_unet((None, None, 1), depth=depth, filters=2, dropout=0)
    for h, w in [(0, 0), (1, 3), (2, 1)]:
        size_h = geometry.min_input_size(depth) + h * 2**depth
        size_w = geometry.min_input_size(depth) + w * 2**depth
        out = model(np.zeros((1, size_h, size_w, 1), "float32"))
        assert out.shape == (
            1,
            geometry.output_size(size_h, depth),
            geometry.output_size(size_w, depth),
            2,
        )


def test_options_same_padding_batch_norm_channels_classes():
    model = build_unet(
        (64, 96, 3),
        num_classes=5,
        depth=3,
        filters=4,
        padding="same",
        batch_norm=True,
    )
    assert model.output_shape == (None, 64, 96, 5)
    bns = [
        lay
        for lay in model.layers
        if isinstance(lay, keras.layers.BatchNormalization)
    ]
    assert len(bns) == 2 * (2 * 3 + 1)
    # With batch norm the 3x3 convs drop their (redundant) bias.
    assert not model.get_layer("unet_down1_conv1").use_bias
    out = model(np.zeros((2, 64, 96, 3), "float32"), training=True)
    assert out.shape == (2, 64, 96, 5)


def test_seed_makes_weights_reproducible():
    a = build_unet((None, None, 1), depth=2, filters=4, seed=3)
    b = build_unet((None, None, 1), depth=2, filters=4, seed=3)
    c = build_unet((None, None, 1), depth=2, filters=4, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_save_load_round_trip(tmp_path):
    model = build_unet((None, None, 1), depth=2, filters=4, seed=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(1, 60, 60, 1)).astype("float32")
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-6,
        atol=1e-6,
    )
    assert inspect_unet(loaded) == inspect_unet(model)


def test_inspect_unet():
    spec = inspect_unet(
        build_unet((None, None, 3), num_classes=4, depth=3, filters=2)
    )
    assert (
        spec.depth,
        spec.padding,
        spec.input_channels,
        spec.num_classes,
    ) == (3, "valid", 3, 4)
    assert spec.margin == geometry.margin(3) and spec.step == 8
    same = inspect_unet(
        build_unet((None, None, 1), depth=2, filters=2, padding="same")
    )
    assert (same.depth, same.padding, same.margin) == (2, "same", 0)
    # A wrapped model is inspected through its nested layers.
    inner = build_unet((None, None, 1), depth=2, filters=2)
    x = keras.Input((None, None, 1))
    wrapped = keras.Model(x, inner(keras.layers.Rescaling(1 / 255)(x)))
    assert inspect_unet(wrapped).depth == 2
    # Overrides are verified against the model's shape arithmetic.
    with pytest.raises(ValueError, match="depth=3"):
        inspect_unet(inner, depth=3)
    flat = keras.Sequential(
        [keras.Input((None, None, 1)), keras.layers.Conv2D(2, 3)]
    )
    with pytest.raises(ValueError, match="no 2x2 pooling"):
        inspect_unet(flat)
    with pytest.raises(TypeError, match="keras.Model"):
        inspect_unet("model.keras")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (
            dict(input_shape=(570, 570, 1)),
            ValueError,
            r"nearest valid sizes are 556 and 572\. "
            r".*Received: input_shape=\(570, 570, 1\)",
        ),
        (
            dict(input_shape=(256, 256, 1)),
            ValueError,
            r"188 \+ 16k.*252 and 268",
        ),
        (
            dict(input_shape=(64, 64, 1)),
            ValueError,
            "smallest valid size is 188",
        ),
        (dict(input_shape=(572, 570, 1)), ValueError, "556 and 572"),
        (
            dict(input_shape=(100, 100, 1), padding="same"),
            ValueError,
            "multiples of 16",
        ),
        (
            dict(input_shape=(572, 572)),
            ValueError,
            r"\(height, width, channels\)",
        ),
        (
            dict(input_shape=(1, 572, 572, 1)),
            ValueError,
            r"without the batch axis",
        ),
        (dict(input_shape=(572, 572, None)), ValueError, "channel axis"),
        (dict(input_shape=(572, 572, 0)), ValueError, "channel axis"),
        (dict(input_shape=572), ValueError, r"\(height, width, channels\)"),
        (dict(depth=0), ValueError, r"`depth` must be >= 1"),
        (dict(depth=2.5), TypeError, "depth"),
        (dict(filters=0), ValueError, r"`filters` must be >= 1"),
        (dict(num_classes=0), ValueError, r"`num_classes` must be >= 1"),
        (dict(padding="full"), ValueError, "padding"),
        (dict(dropout=1.0), ValueError, "dropout"),
        (dict(dropout=-0.1), ValueError, "dropout"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        build_unet(**kwargs)


def test_unet_flops_match_layer_output_shapes():
    from keras_unet.model.flops import unet_flops

    model = build_unet((76, 76, 3), num_classes=4, depth=2, filters=4)
    expected = 0
    for layer in model.layers:  # independent: from Keras' own shapes
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, cin = layer.input.shape
            expected += 2 * 4 * cin * layer.filters * h * w
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            expected += 2 * kh * kw * layer.input.shape[-1] * cout * h * w
    assert unet_flops(model, 76) == expected
    assert round(unet_flops(build_unet(), 572) / 1e9) == 301


@pytest.mark.parametrize("cut", [0, 4, 3000])
def test_a_damaged_keras_file_is_named_not_missing(tmp_path, cut):
    from keras_unet.model.saving import load_model

    good = tmp_path / "good.keras"
    build_unet((None, None, 1), depth=2, filters=2).save(good)
    bad = tmp_path / "bad.keras"
    bad.write_bytes(good.read_bytes()[:cut] if cut else b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.keras is not a readable"):
        load_model(bad)
    assert load_model(good, compile=False).count_params() > 0
