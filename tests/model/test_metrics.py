"""Tests for keras_unet.model.metrics: the Keras metrics ForegroundIoU,
PixelError.

They are checked against plain numpy on every label format, with per-pixel
and per-image sample weights, across batches, inside fit/evaluate and
after a .keras round trip. Marked `backend`: CI runs them on TensorFlow,
JAX and PyTorch.
"""

import keras
import numpy as np
import pytest

from keras_unet.model import geometry
from keras_unet.model.metrics import ForegroundIoU, PixelError
from keras_unet.model.unet import build_unet


def _numpy_metrics(labels, logits, weights, class_id=1):
    if logits.shape[-1] == 1:
        pred = (logits[..., 0] > 0).astype(int)
    else:
        pred = logits.argmax(-1)
    p, t = pred == class_id, labels == class_id
    iou = np.sum(weights * (p & t)) / np.sum(weights * (p | t))
    err = np.sum(weights * (pred != labels)) / np.sum(weights)
    return iou, err


def _run(metric, *args, **kwargs):
    metric.reset_state()
    metric.update_state(*args, **kwargs)
    return float(keras.ops.convert_to_numpy(metric.result()))


@pytest.mark.backend
@pytest.mark.parametrize("num_classes", [1, 2, 3])
def test_keras_metrics_match_numpy_for_every_label_format(num_classes):
    rng = np.random.default_rng(num_classes)
    logits = rng.normal(size=(2, 5, 6, num_classes)).astype("float32")
    labels = rng.integers(0, max(num_classes, 2), size=(2, 5, 6))
    weight = rng.uniform(0, 2, size=(2, 5, 6)).astype("float32")
    weight[0, 0] = 0.0
    ones = np.ones_like(weight)
    iou, err = _numpy_metrics(labels, logits, ones)
    iou_w, err_w = _numpy_metrics(labels, logits, (weight > 0) * 1.0)
    iou_m, err_m = ForegroundIoU(), PixelError()
    cases = [
        ((labels, logits), {}, iou, err),
        ((labels[..., None].astype("float32"), logits), {}, iou, err),
        ((labels, logits), {"sample_weight": weight}, iou_w, err_w),
        ((labels, logits), {"sample_weight": weight[..., None]}, iou_w, err_w),
    ]
    for args, kwargs, want_iou, want_err in cases:
        assert _run(iou_m, *args, **kwargs) == pytest.approx(want_iou, 1e-5)
        assert _run(err_m, *args, **kwargs) == pytest.approx(want_err, 1e-5)
    # one-hot labels (one channel for a sigmoid output)
    onehot = (
        np.eye(num_classes)[labels] if num_classes > 1 else labels[..., None]
    )
    dense_iou, dense_err = ForegroundIoU(sparse=False), PixelError(False)
    assert _run(dense_iou, onehot, logits) == pytest.approx(iou, 1e-5)
    got = _run(dense_err, onehot, logits, sample_weight=weight)
    assert got == pytest.approx(err_w, 1e-5)
    # per-image sample weights broadcast over pixels
    per_image = np.array([0.0, 1.0], "float32")
    want = _numpy_metrics(
        labels[1:], logits[1:], np.ones_like(weight[1:]), class_id=0
    )
    membrane_iou = ForegroundIoU(class_id=0)
    got = _run(membrane_iou, labels, logits, sample_weight=per_image)
    assert got == pytest.approx(want[0], 1e-5)


@pytest.mark.backend
def test_keras_metrics_accumulate_over_batches():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6, 6, 2)).astype("float32")
    labels = rng.integers(0, 2, size=(4, 6, 6))
    metric = ForegroundIoU()
    for i in range(4):
        metric.update_state(labels[i : i + 1], logits[i : i + 1])
    whole = _numpy_metrics(labels, logits, np.ones(labels.shape))[0]
    assert float(metric.result()) == pytest.approx(whole, 1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0


@pytest.mark.backend
def test_keras_metric_errors():
    logits = np.zeros((1, 4, 4, 2), "float32")
    labels = np.zeros((1, 4, 4))
    with pytest.raises(ValueError, match=r"crop the labels.*Received"):
        ForegroundIoU().update_state(np.zeros((1, 6, 6)), logits)
    with pytest.raises(ValueError, match=r"crop the labels.*sample_weight"):
        PixelError().update_state(labels, logits, np.ones((1, 6, 6)))
    with pytest.raises(ValueError, match="sparse=True"):
        PixelError().update_state(np.zeros((1, 4, 4, 3)), logits)
    with pytest.raises(ValueError, match="sparse=False"):
        PixelError(sparse=False).update_state(labels, logits)
    with pytest.raises(ValueError, match="one per image"):
        PixelError().update_state(labels, logits, np.ones((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="class_id"):
        ForegroundIoU(class_id=-1)


@pytest.mark.backend
@pytest.mark.parametrize("sparse, channels", [(True, 2), (False, 3)])
def test_packed_weights_are_refused_with_the_fix(sparse, channels):
    # [labels, weight map] in one y_true is gone: weights are sample_weight
    packed = np.zeros((1, 4, 4, channels), "float32")
    logits = np.zeros((1, 4, 4, 2), "float32")
    with pytest.raises(ValueError, match=r"sample_weight.*weighted_metrics"):
        ForegroundIoU(sparse=sparse).update_state(packed, logits)


@pytest.mark.backend
@pytest.mark.parametrize("cls", [ForegroundIoU, PixelError])
def test_keras_metric_serialization_round_trip(cls):
    kwargs = {"sparse": False, "weighted": True, "name": "m"}
    if cls is ForegroundIoU:
        kwargs["class_id"] = 0
    metric = cls(**kwargs)
    config = metric.get_config()
    assert {k: config[k] for k in kwargs} == kwargs
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(metric)
    )
    assert type(again) is cls and again.get_config() == config
    assert keras.saving.get_registered_name(cls) == f"keras_unet>{cls.__name__}"


@pytest.mark.backend
def test_keras_metrics_in_fit_evaluate_and_keras_file(tmp_path):
    depth, size = 2, 60
    out = geometry.output_size(size, depth)
    model = build_unet(
        (size, size, 1), depth=depth, filters=4, dropout=0.0, seed=0
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[PixelError(name="all_pixels_error")],
        weighted_metrics=[ForegroundIoU(), PixelError()],
    )
    rng = np.random.default_rng(0)
    x = rng.random((4, size, size, 1)).astype("float32")
    y = rng.integers(0, 2, size=(4, out, out))
    w = rng.uniform(0.5, 2.0, size=(4, out, out)).astype("float32")
    w[:, :5] = 0.0  # ignored rows
    model.fit(x, y, sample_weight=w, batch_size=2, epochs=1, verbose=0)
    got = model.evaluate(
        x, y, sample_weight=w, batch_size=2, verbose=0, return_dict=True
    )
    logits = model.predict(x, verbose=0)
    iou, err = _numpy_metrics(y, logits, (w > 0).astype(float))
    assert got["foreground_iou"] == pytest.approx(iou, rel=1e-5)
    assert got["pixel_error"] == pytest.approx(err, rel=1e-5)
    _, err_all = _numpy_metrics(y, logits, np.ones_like(w))
    assert got["all_pixels_error"] == pytest.approx(err_all, rel=1e-5)
    assert abs(err_all - err) > 1e-4  # the ignored rows did matter

    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    again = loaded.evaluate(
        x, y, sample_weight=w, batch_size=2, verbose=0, return_dict=True
    )
    for key in ("foreground_iou", "pixel_error", "all_pixels_error"):
        assert again[key] == pytest.approx(got[key], rel=1e-6)


@pytest.mark.backend
def test_keras_metrics_weighted_option():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 5, 2)).astype("float32")
    labels = rng.integers(0, 2, size=(2, 5, 5))
    weight = rng.uniform(0, 3, size=(2, 5, 5)).astype("float32")
    weight[:, 0] = 0
    mask = (weight > 0).astype(float)
    for weighted, w in ((False, mask), (True, weight)):
        iou, err = _numpy_metrics(labels, logits, w)
        args = (labels, logits, weight)
        assert _run(ForegroundIoU(weighted=weighted), *args) == (
            pytest.approx(iou, 1e-5)
        )
        assert _run(PixelError(weighted=weighted), *args) == (
            pytest.approx(err, 1e-5)
        )
    assert abs(err - _numpy_metrics(labels, logits, mask)[1]) > 1e-3
