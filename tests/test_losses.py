"""Tests for keras_unet.losses, against a plain numpy reference."""

import doctest
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unet import losses as L
from keras_unet.losses import WeightedCrossentropy, weighted_crossentropy
from keras_unet.model import build_unet

# ---------------------------------------------------------------------------
# numpy reference (float64)
# ---------------------------------------------------------------------------


def ref_per_pixel(labels, logits, weights=None, onehot=None):
    """w * -log softmax(logits)[label], by hand in float64."""
    z = np.asarray(logits, np.float64)
    if z.shape[-1] == 1:  # sigmoid: classes [0, z]
        z = np.concatenate([np.zeros_like(z), z], -1)
    m = z.max(-1, keepdims=True)
    log_p = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
    if onehot is None:
        ce = np.zeros(z.shape[:-1])
        for idx in np.ndindex(*z.shape[:-1]):
            ce[idx] = -log_p[idx + (int(labels[idx]),)]
    else:
        ce = -(onehot * log_p).sum(-1)
    w = np.ones(ce.shape) if weights is None else np.asarray(weights, float)
    return w * ce, w


def ref_loss(
    labels, logits, weights=None, normalization="weights", onehot=None
):
    per_pixel, w = ref_per_pixel(labels, logits, weights, onehot)
    if normalization == "weights":
        return per_pixel.sum() / w.sum()
    return per_pixel.mean()


def data(seed=0, b=2, h=5, w=7, k=3, ignore=0.2):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (b, h, w, k)).astype("float32")
    labels = rng.integers(0, max(k, 2), (b, h, w))
    weights = rng.uniform(0.5, 12, (b, h, w)).astype("float32")
    weights[rng.random((b, h, w)) < ignore] = 0.0
    return labels, logits, weights


def np_(x):
    return keras.ops.convert_to_numpy(x)


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("normalization", ["weights", "pixels"])
def test_sparse_matches_reference_both_ways(k, normalization):
    labels, logits, weights = data(k, k=k)
    loss = WeightedCrossentropy(normalization=normalization)
    expected = ref_loss(labels, logits, weights, normalization)
    packed = np.stack([labels, weights], -1).astype("float32")
    via_packed = float(loss(packed, logits))
    via_sample_weight = float(loss(labels, logits, sample_weight=weights))
    via_channel = float(
        loss(labels[..., None], logits, sample_weight=weights[..., None])
    )
    assert via_packed == pytest.approx(expected, rel=1e-5)
    assert via_sample_weight == pytest.approx(via_packed, rel=1e-6)
    assert via_channel == pytest.approx(via_packed, rel=1e-6)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_one_hot_matches_reference_both_ways(k):
    labels, logits, weights = data(10 + k, k=k)
    n = max(k, 2)
    onehot = np.eye(n)[labels]
    y = onehot[..., 1:] if k == 1 else onehot  # sigmoid: P(class 1)
    loss = WeightedCrossentropy(sparse=False)
    expected = ref_loss(labels, logits, weights, onehot=onehot)
    packed = np.concatenate([y, weights[..., None]], -1).astype("float32")
    assert float(loss(packed, logits)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(y, logits, sample_weight=weights)) == pytest.approx(
        expected, rel=1e-5
    )
    # Soft (non one-hot) targets are a weighted sum of the per-class terms.
    if k > 1:
        soft = np.full(y.shape, 1.0 / k)
        expected = ref_loss(labels, logits, weights, onehot=soft)
        got = float(loss(soft, logits, sample_weight=weights))
        assert got == pytest.approx(expected, rel=1e-5)


def test_function_form_and_reductions():
    labels, logits, weights = data(3)
    per_pixel, w = ref_per_pixel(labels, logits, weights)
    got = np_(weighted_crossentropy(labels, logits, sample_weight=weights))
    np.testing.assert_allclose(got, per_pixel, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32 and got.shape == labels.shape
    none = WeightedCrossentropy(reduction="none")(labels, logits, weights)
    np.testing.assert_allclose(np_(none), per_pixel, rtol=1e-5, atol=1e-6)
    total = WeightedCrossentropy(reduction="sum")(labels, logits, weights)
    assert float(total) == pytest.approx(per_pixel.sum(), rel=1e-5)
    # "pixels" = "weights" x mean weight.
    wl = float(WeightedCrossentropy()(labels, logits, weights))
    pl = float(
        WeightedCrossentropy(normalization="pixels")(labels, logits, weights)
    )
    assert pl == pytest.approx(wl * w.mean(), rel=1e-5)
    # Unweighted: plain mean cross entropy, both normalizations.
    plain = ref_loss(labels, logits)
    assert float(WeightedCrossentropy()(labels, logits)) == pytest.approx(
        plain, rel=1e-5
    )
    # Both sources of weights multiply.
    packed = np.stack([labels, weights], -1).astype("float32")
    both = WeightedCrossentropy(reduction="sum")(packed, logits, weights)
    expected = ref_per_pixel(labels, logits, weights**2)[0].sum()
    assert float(both) == pytest.approx(expected, rel=1e-5)


def test_per_image_sample_weight_broadcasts():
    labels, logits, weights = data(4)
    per_image = np.array([0.5, 3.0], "float32")
    loss = WeightedCrossentropy()
    full = np.broadcast_to(per_image[:, None, None], labels.shape)
    got = float(loss(labels, logits, sample_weight=per_image))
    assert got == pytest.approx(ref_loss(labels, logits, full), rel=1e-5)


def test_zero_weight_ignores_pixel():
    labels, logits, weights = data(5)
    loss = WeightedCrossentropy()
    base = float(loss(labels, logits, sample_weight=weights))
    ignored = weights == 0
    assert ignored.any()
    labels2, logits2 = labels.copy(), logits.copy()
    labels2[ignored] = 255  # an "ignore" value, allowed where the weight is 0
    logits2[ignored] = 1e4 * np.sign(logits2[ignored])
    assert float(loss(labels2, logits2, sample_weight=weights)) == (
        pytest.approx(base, rel=1e-6)
    )
    # All pixels ignored: 0, not NaN, and zero gradients.
    zero = np.zeros_like(weights)
    assert float(loss(labels, logits, sample_weight=zero)) == 0.0
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(labels, z, sample_weight=zero)
    assert float(tf.reduce_max(tf.abs(tape.gradient(value, z)))) == 0.0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_logits_computed_in_float32(dtype):
    labels, logits, weights = data(6, h=16, w=16)
    low = keras.ops.cast(logits, dtype)
    exact_inputs = np_(keras.ops.cast(low, "float32"))
    value = WeightedCrossentropy()(labels, low, sample_weight=weights)
    assert value.dtype == "float32"
    expected = ref_loss(labels, exact_inputs, weights)
    assert float(value) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_extreme_logits_finite_values_and_gradients(dtype):
    labels = np.array([[[0, 1], [1, 0]]])
    logits = np.array(
        [[[[1e4, -1e4], [1e4, -1e4]], [[-1e4, 1e4], [-1e4, 1e4]]]], "float32"
    )
    weights = np.array([[[1.0, 2.0], [0.5, 1.0]]], "float32")
    loss = WeightedCrossentropy(reduction="sum")
    z = tf.Variable(tf.cast(logits, dtype))
    with tf.GradientTape() as tape:
        value = loss(labels, z, sample_weight=weights)
    grad = tape.gradient(value, z)
    # Right with margin 2e4: 0; wrong: 2e4 times the weight (2 and 1), on
    # the logits as rounded to `dtype` (1e4 is 9984 in bfloat16).
    exact = np_(keras.ops.cast(z, "float32"))
    assert float(value) == pytest.approx(3.0 * 2 * exact[0, 0, 0, 0], rel=1e-6)
    assert exact[0, 0, 0, 0] == pytest.approx(1e4, rel=3e-3)
    assert np.all(np.isfinite(np_(keras.ops.cast(grad, "float32"))))
    g = np_(keras.ops.cast(grad, "float32"))
    # d/dz of w * ce = w * (softmax - onehot): +-2 at the wrong pixel.
    np.testing.assert_allclose(g[0, 0, 1], [2.0, -2.0], atol=1e-3)
    np.testing.assert_allclose(g[0, 1, 1], [-1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(g[0, 0, 0], [0.0, 0.0], atol=1e-3)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_uncropped_label_error_explains_valid_padding():
    logits = np.zeros((1, 388, 388, 2), "float32")
    labels = np.zeros((1, 572, 572), "int32")
    with pytest.raises(ValueError) as info:
        WeightedCrossentropy()(labels, logits)
    text = str(info.value)
    for needle in (
        "572x572",
        "388x388",
        "valid padding",
        "keras_unet.geometry",
        "184 = 2 x 92",
        "depth-4",
        "Received:",
    ):
        assert needle in text
    weights = np.ones((1, 572, 572), "float32")
    with pytest.raises(ValueError, match="weights are 572x572.*valid padding"):
        WeightedCrossentropy()(np.zeros((1, 388, 388)), logits, weights)
    packed = np.zeros((1, 572, 572, 2), "float32")
    with pytest.raises(ValueError, match="keras_unet.geometry"):
        WeightedCrossentropy()(packed, logits)
    with pytest.raises(ValueError, match="smaller than the logits"):
        WeightedCrossentropy()(np.zeros((1, 300, 300)), logits)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda y, w: (y + 3, w), r"class index outside 0\.\.2"),
        (lambda y, w: (y * 0 + 255, w), "255 -> 1"),
        (lambda y, w: (y - 1, w), "outside"),
        (lambda y, w: (y + 0.5, w), "not an integer"),
        (lambda y, w: (y, -w), "negative"),
        (lambda y, w: (y, np.where(w > 0, np.nan, 0)), "NaN"),
        (lambda y, w: (y, w * np.inf), "NaN or infinite"),
    ],
)
def test_bad_values_raise_eagerly(make, match):
    labels, logits, weights = data(7, ignore=0.0)
    labels, weights = make(labels.astype("float32"), weights)
    with pytest.raises(ValueError, match=match):
        WeightedCrossentropy()(labels, logits, sample_weight=weights)
    packed = np.stack([labels, weights], -1).astype("float32")
    with pytest.raises(ValueError, match=match):
        weighted_crossentropy(packed, logits)


@pytest.mark.parametrize(
    "kwargs, y_shape, match",
    [
        ({}, (2, 5, 7, 3), "sparse=False"),
        ({"sparse": False}, (2, 5, 7), "sparse=True"),
        ({"sparse": False}, (2, 5, 7, 5), "3 channels"),
    ],
)
def test_bad_label_layout(kwargs, y_shape, match):
    _, logits, _ = data(8)
    with pytest.raises(ValueError, match=match):
        WeightedCrossentropy(**kwargs)(np.zeros(y_shape), logits)


def test_one_hot_passed_as_sparse_is_caught():
    labels, logits, _ = data(14, k=2)
    onehot = np.eye(2)[labels].astype("float32")
    with pytest.raises(ValueError, match="(?i)pass sparse=False"):
        WeightedCrossentropy()(onehot, logits)
    fn = tf.function(lambda y, z: WeightedCrossentropy()(y, z))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one-hot"):
        fn(onehot, logits)
    # A real packed target is not mistaken for one-hot.
    packed = np.stack([labels, np.full(labels.shape, 1.0)], -1)
    assert np.isfinite(float(WeightedCrossentropy()(packed, logits)))


def test_bad_constructor_and_sample_weight():
    with pytest.raises(ValueError, match="normalization"):
        WeightedCrossentropy(normalization="mean")
    with pytest.raises(ValueError, match="reduction"):
        WeightedCrossentropy(reduction="mean_with_sample_weight")
    labels, logits, weights = data(9)
    with pytest.raises(ValueError, match="per pixel"):
        WeightedCrossentropy()(labels, logits, np.ones((2, 5)))


def test_checks_inside_tf_function():
    labels, logits, weights = data(11, ignore=0.0)
    loss = WeightedCrossentropy()
    fn = tf.function(lambda y, z, w: loss(y, z, w), jit_compile=False)
    assert np.isfinite(float(fn(labels, logits, weights)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="class index"):
        fn(labels + 3, logits, weights)
    with pytest.raises(tf.errors.InvalidArgumentError, match=">= 0"):
        fn(labels, logits, -weights)
    # Unknown sizes at trace time: asserted at run time.
    spec = [
        tf.TensorSpec([None, None, None], tf.int64),
        tf.TensorSpec([None, None, None, 3], tf.float32),
    ]
    dyn = tf.function(lambda y, z: loss(y, z), input_signature=spec)
    with pytest.raises(tf.errors.InvalidArgumentError, match="valid padding"):
        dyn(np.zeros((2, 9, 11), np.int64), logits)


def test_xla_gives_nan_and_no_update():
    labels, logits, weights = data(12, ignore=0.0)
    loss = WeightedCrossentropy()
    z = tf.Variable(logits)

    @tf.function(jit_compile=True)
    def value_and_grad(y):
        with tf.GradientTape() as tape:
            value = loss(y, z, weights)
        return value, tape.gradient(value, z)

    value, grad = value_and_grad(labels)
    assert np.isfinite(float(value))
    value, grad = value_and_grad(labels + 3)
    assert np.isnan(float(value))
    assert float(tf.reduce_max(tf.abs(grad))) == 0.0


def test_check_inputs_false_skips_checks():
    labels, logits, weights = data(13, ignore=0.0)
    loss = WeightedCrossentropy(check_inputs=False, reduction="none")
    out = np_(loss(labels + 3, logits, weights))
    assert np.all(out == 0)  # out-of-range one-hot rows are empty


# ---------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------


def test_serialization_round_trip():
    loss = WeightedCrossentropy(
        sparse=False,
        normalization="pixels",
        check_inputs=False,
        reduction="sum",
        name="wce",
    )
    config = loss.get_config()
    clone = WeightedCrossentropy.from_config(config)
    assert clone.get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, WeightedCrossentropy)
    assert restored.get_config() == config
    fn = keras.losses.deserialize(keras.losses.serialize(weighted_crossentropy))
    assert fn is weighted_crossentropy


def test_doctests():
    result = doctest.testmod(L, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0


# ---------------------------------------------------------------------------
# Through a real model
# ---------------------------------------------------------------------------


def tiny_batch(seed=0, b=2, size=60):
    rng = np.random.default_rng(seed)
    x = rng.random((b, size, size, 1)).astype("float32")
    out = size - 40  # depth 2, valid padding: margin 20
    y = rng.integers(0, 2, (b, out, out)).astype("int32")
    w = rng.uniform(0, 10, (b, out, out)).astype("float32")
    w[:, :3] = 0.0
    return x, y, w


def tiny_model(seed=1):
    return build_unet((None, None, 1), depth=2, filters=2, dropout=0, seed=seed)


@pytest.mark.parametrize("normalization", ["weights", "pixels"])
def test_fit_and_evaluate_packed_equals_sample_weight(normalization):
    x, y, w = tiny_batch()
    packed = np.stack([y, w], -1).astype("float32")
    ds_w = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(2)
    ds_p = tf.data.Dataset.from_tensor_slices((x, packed)).batch(2)
    models = []
    for ds in (ds_w, ds_p):
        model = tiny_model()
        model.compile(
            keras.optimizers.SGD(0.05, momentum=0.9),
            loss=WeightedCrossentropy(normalization=normalization),
        )
        before = model.evaluate(ds, verbose=0, return_dict=True)["loss"]
        model.fit(ds, epochs=2, verbose=0)
        after = model.evaluate(ds, verbose=0, return_dict=True)["loss"]
        models.append((model, before, after))
    (m1, b1, a1), (m2, b2, a2) = models
    logits = m1.predict(x, verbose=0)
    assert logits.shape == (2, 20, 20, 2)
    # Before training, both equal the numpy reference on the model's logits.
    expected = ref_loss(y, tiny_model().predict(x, verbose=0), w, normalization)
    assert b1 == pytest.approx(expected, rel=1e-4)
    assert b2 == pytest.approx(b1, rel=1e-6)
    # Same gradients: the same weights after training, and the same loss.
    assert a2 == pytest.approx(a1, rel=1e-5)
    for v1, v2 in zip(m1.trainable_weights, m2.trainable_weights):
        np.testing.assert_allclose(np_(v1), np_(v2), rtol=1e-5, atol=1e-6)
    # Numpy inputs with sample_weight take the same path.
    m3 = tiny_model()
    m3.compile("sgd", loss=WeightedCrossentropy(normalization=normalization))
    b3 = m3.evaluate(x, y, sample_weight=w, verbose=0, batch_size=2)
    assert b3 == pytest.approx(b1, rel=1e-5)


def test_fit_with_bad_labels_raises_in_graph_mode():
    x, y, w = tiny_batch()
    model = tiny_model()
    model.compile("sgd", loss=WeightedCrossentropy(), jit_compile=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="class index"):
        model.fit(x, y * 255, sample_weight=w + 1, verbose=0, batch_size=2)
    # The classic mistake: labels of the input size.
    big = np.zeros((2, 60, 60), "int32")
    with pytest.raises(ValueError, match="valid padding"):
        model.fit(x, big, verbose=0, batch_size=2)


def test_fit_with_bad_labels_under_xla_gives_nan_and_keeps_weights():
    x, y, w = tiny_batch()
    model = tiny_model()
    model.compile("sgd", loss=WeightedCrossentropy(), jit_compile=True)
    before = [np_(v).copy() for v in model.trainable_weights]
    history = model.fit(x, y * 255, sample_weight=w + 1, verbose=0)
    assert np.isnan(history.history["loss"][0])
    for v0, v in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(v0, np_(v))


def test_saved_model_loads_without_custom_objects(tmp_path):
    model = tiny_model()
    model.compile("adam", loss=WeightedCrossentropy(normalization="pixels"))
    x, y, w = tiny_batch()
    model.fit(x, y, sample_weight=w, verbose=0, batch_size=2)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, WeightedCrossentropy)
    assert loaded.loss.normalization == "pixels"
    a = model.evaluate(x, y, sample_weight=w, verbose=0)
    b = loaded.evaluate(x, y, sample_weight=w, verbose=0)
    assert b == pytest.approx(a, rel=1e-5)


JAX_SCRIPT = r"""
import numpy as np, keras, jax
from keras_unet.losses import WeightedCrossentropy
from keras_unet.model import build_unet
assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
x = rng.random((2, 60, 60, 1)).astype("float32")
y = rng.integers(0, 2, (2, 20, 20)).astype("int32")
w = rng.uniform(0, 10, (2, 20, 20)).astype("float32")
packed = np.stack([y, w], -1).astype("float32")
losses = []
for target, sw in ((y, w), (packed, None)):
    model = build_unet((None, None, 1), depth=2, filters=2, dropout=0, seed=1)
    model.compile("sgd", loss=WeightedCrossentropy())
    model.fit(x, target, sample_weight=sw, verbose=0, batch_size=2)
    losses.append(model.evaluate(x, target, sample_weight=sw, verbose=0))
assert abs(losses[0] - losses[1]) < 1e-5 * abs(losses[0]), losses
try:
    model.fit(x, y * 255, sample_weight=w + 1, verbose=0, batch_size=2)
except Exception as e:
    assert "class index" in str(e), str(e)
else:
    raise AssertionError("no error under jax.jit")
print("JAX-OK")
"""


@pytest.mark.slow
def test_jax_backend_fit(tmp_path):
    pytest.importorskip("jax", reason="the JAX backend is not installed")
    env = dict(os.environ, KERAS_BACKEND="jax")
    repo = pathlib.Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(
        [str(repo), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    out = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "JAX-OK" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]
