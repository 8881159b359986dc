"""Tests for keras_unet.model.losses, against a plain numpy reference.

Backend-dependent (``@pytest.mark.backend``): CI runs them on TensorFlow,
JAX and PyTorch.
"""

import doctest

import keras
import numpy as np
import pytest

from keras_unet.model import losses
from keras_unet.model.losses import WeightedCrossentropy, weighted_crossentropy
from keras_unet.model.unet import build_unet

pytestmark = pytest.mark.backend

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
    labels,
    logits,
    weights=None,
    reduction="mean_with_sample_weight",
    onehot=None,
):
    per_pixel, w = ref_per_pixel(labels, logits, weights, onehot)
    if reduction == "mean_with_sample_weight":
        return per_pixel.sum() / w.sum()
    if reduction == "sum":
        return per_pixel.sum()
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


def value_and_grad(fn, x):
    """fn(x) and its gradient with the backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(x)
        return np_(value), np_(tape.gradient(value, x))
    if backend == "jax":
        import jax

        value, grad = jax.value_and_grad(lambda v: fn(v))(x)
        return np_(value), np_(grad)

    x = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
    value = fn(x)
    value.backward()
    return np_(value.detach()), np_(x.grad)


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("reduction", losses.REDUCTIONS[:3])
def test_sparse_matches_reference(k, reduction):
    labels, logits, weights = data(k, k=k)
    loss = WeightedCrossentropy(reduction=reduction)
    expected = ref_loss(labels, logits, weights, reduction)
    got = float(loss(labels, logits, sample_weight=weights))
    assert got == pytest.approx(expected, rel=1e-5)
    # A trailing axis of 1 on labels and weights is the same.
    same = loss(labels[..., None], logits, sample_weight=weights[..., None])
    assert float(same) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_one_hot_matches_reference(k):
    labels, logits, weights = data(10 + k, k=k)
    n = max(k, 2)
    onehot = np.eye(n)[labels]
    y = onehot[..., 1:] if k == 1 else onehot  # sigmoid: P(class 1)
    loss = WeightedCrossentropy(sparse=False)
    expected = ref_loss(labels, logits, weights, onehot=onehot)
    got = float(loss(y, logits, sample_weight=weights))
    assert got == pytest.approx(expected, rel=1e-5)
    # Soft (non one-hot) targets are a weighted sum of the per-class terms.
    if k > 1:
        soft = np.full(y.shape, 1.0 / k)
        expected = ref_loss(labels, logits, weights, onehot=soft)
        got = float(loss(soft, logits, sample_weight=weights))
        assert got == pytest.approx(expected, rel=1e-5)


def test_function_form_and_reductions():
    labels, logits, weights = data(3)
    per_pixel, w = ref_per_pixel(labels, logits, weights)
    ce, _ = ref_per_pixel(labels, logits)
    got = np_(weighted_crossentropy(labels, logits))
    np.testing.assert_allclose(got, ce, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32 and got.shape == labels.shape
    none = WeightedCrossentropy(reduction="none")(labels, logits, weights)
    np.testing.assert_allclose(np_(none), per_pixel, rtol=1e-5, atol=1e-6)
    # Pixel mean = weighted mean x mean weight.
    wl = float(WeightedCrossentropy()(labels, logits, weights))
    pl = WeightedCrossentropy(reduction="sum_over_batch_size")
    assert float(pl(labels, logits, weights)) == pytest.approx(
        wl * w.mean(), rel=1e-5
    )
    # Unweighted: the plain mean cross entropy.
    assert float(WeightedCrossentropy()(labels, logits)) == pytest.approx(
        ce.mean(), rel=1e-5
    )


def test_zero_weight_ignores_pixel():
    labels, logits, weights = data(5)
    loss = WeightedCrossentropy()
    base = float(loss(labels, logits, sample_weight=weights))
    ignored = weights == 0
    assert ignored.any()
    logits2 = logits.copy()
    logits2[ignored] = 1e4 * np.sign(logits2[ignored])
    assert float(loss(labels, logits2, sample_weight=weights)) == (
        pytest.approx(base, rel=1e-6)
    )
    # All pixels ignored: 0, not NaN, and zero gradients.
    zero = np.zeros_like(weights)
    value, grad = value_and_grad(
        lambda z: loss(labels, z, sample_weight=zero), logits
    )
    assert float(value) == 0.0 and np.abs(grad).max() == 0.0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_logits_computed_in_float32(dtype):
    labels, logits, weights = data(6, h=16, w=16)
    low = keras.ops.cast(logits, dtype)
    exact_inputs = np_(keras.ops.cast(low, "float32"))
    value = WeightedCrossentropy()(labels, low, sample_weight=weights)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
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
    z = keras.ops.cast(logits, dtype)
    value, grad = value_and_grad(
        lambda v: loss(labels, v, sample_weight=weights), z
    )
    # Right with margin 2e4: 0; wrong: 2e4 times the weight (2 and 1), on
    # the logits as rounded to `dtype` (1e4 is 9984 in bfloat16).
    exact = np_(keras.ops.cast(z, "float32"))
    assert float(value) == pytest.approx(3.0 * 2 * exact[0, 0, 0, 0], rel=1e-6)
    assert exact[0, 0, 0, 0] == pytest.approx(1e4, rel=3e-3)
    g = np_(keras.ops.cast(grad, "float32"))
    assert np.all(np.isfinite(g))
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
        "keras_unet.model.geometry",
        "184 = 2 x 92",
        "depth-4",
        "Received:",
    ):
        assert needle in text
    with pytest.raises(ValueError, match="smaller than the logits"):
        WeightedCrossentropy()(np.zeros((1, 300, 300)), logits)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda y: y + 3, r"not class indices in 0\.\.2"),
        (lambda y: y * 0 + 255, "255 -> 1"),
        (lambda y: y - 1, "not class indices"),
        (lambda y: y + 0.5, r"e\.g\. \[0\.5"),
        (lambda y: np.where(y > 0, np.nan, 0), "nan"),
    ],
)
def test_bad_label_values_raise_for_numpy_inputs(make, match):
    labels, logits, _ = data(7, ignore=0.0)
    with pytest.raises(ValueError, match=match):
        weighted_crossentropy(make(labels.astype("float32")), logits)


@pytest.mark.parametrize(
    "kwargs, y_shape, match",
    [
        ({}, (2, 5, 7, 3), "sparse=False"),
        ({}, (2, 5, 7, 2), "sample_weight"),
        ({"sparse": False}, (2, 5, 7), "sparse=True"),
        ({"sparse": False}, (2, 5, 7, 5), "3 channels"),
    ],
)
def test_bad_label_layout(kwargs, y_shape, match):
    _, logits, _ = data(8)
    with pytest.raises(ValueError, match=match):
        WeightedCrossentropy(**kwargs)(np.zeros(y_shape), logits)


def test_bad_constructor():
    with pytest.raises(ValueError, match="reduction"):
        WeightedCrossentropy(reduction="mean_of_weights")


# ---------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------


def test_serialization_round_trip():
    loss = WeightedCrossentropy(sparse=False, reduction="sum", name="wce")
    config = loss.get_config()
    clone = WeightedCrossentropy.from_config(config)
    assert clone.get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, WeightedCrossentropy)
    assert restored.get_config() == config
    fn = keras.losses.deserialize(keras.losses.serialize(weighted_crossentropy))
    assert fn is weighted_crossentropy


def test_doctests():
    result = doctest.testmod(losses, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


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


@pytest.mark.parametrize("reduction", losses.REDUCTIONS[:2])
def test_fit_and_evaluate_match_reference(reduction):
    x, y, w = tiny_batch()
    model = tiny_model()
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        loss=WeightedCrossentropy(reduction=reduction),
    )
    before = model.evaluate(x, y, sample_weight=w, batch_size=2, verbose=0)
    expected = ref_loss(y, model.predict(x, verbose=0), w, reduction)
    assert before == pytest.approx(expected, rel=1e-4)
    model.fit(x, y, sample_weight=w, batch_size=2, epochs=3, verbose=0)
    after = model.evaluate(x, y, sample_weight=w, batch_size=2, verbose=0)
    assert after < before
    # The classic mistake: labels of the input size, explained at trace.
    with pytest.raises(ValueError, match="valid padding"):
        model.fit(x, np.zeros((2, 60, 60), "int32"), verbose=0, batch_size=2)


def test_saved_model_loads_without_custom_objects(tmp_path):
    model = tiny_model()
    model.compile("adam", loss=WeightedCrossentropy(reduction="sum"))
    x, y, w = tiny_batch()
    model.fit(x, y, sample_weight=w, verbose=0, batch_size=2)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, WeightedCrossentropy)
    assert loaded.loss.reduction == "sum"
    a = model.evaluate(x, y, sample_weight=w, verbose=0)
    b = loaded.evaluate(x, y, sample_weight=w, verbose=0)
    assert b == pytest.approx(a, rel=1e-5)
