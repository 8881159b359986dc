"""Keras metrics on the logits of a U-Net, to watch during training.

- `ForegroundIoU`: intersection over union of one class.
- `PixelError`: the fraction of wrongly classified pixels (the training-time
  counterpart of the ISBI pixel error).

Both are streaming `keras.metrics.Metric`s written with `keras.ops`, so
they run on every Keras backend. Per-pixel weights come as Keras'
``sample_weight`` (the ``w`` of an ``(x, y, w)`` dataset), which Keras
hands only to metrics compiled as ``weighted_metrics``. Importing this
module registers both classes, so a ``.keras`` model compiled with them
loads without ``custom_objects``.

The evaluation measures of the paper (ISBI 2012 pixel, Rand and warping
errors, the Cell Tracking Challenge's SEG) are numpy code in
`keras_unet.evaluation.isbi`; folders of maps are scored by
`keras_unet.evaluation.folders.evaluate_folders`. Neither imports Keras.
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

__all__ = ["ForegroundIoU", "PixelError"]

# ---------------------------------------------------------------------------
# Classes and weights of a batch
# ---------------------------------------------------------------------------

_PACKED_HINT = (
    " Weight maps are not packed into y_true: pass them as sample_weight "
    "(the w of an (x, y, w) dataset) and compile the metric in "
    "weighted_metrics."
)


def _predicted_classes(y_pred):
    """(B, H, W) int32 arg-max of the logits (one channel: logit > 0)."""
    if len(y_pred.shape) != 4 or y_pred.shape[-1] is None:
        raise ValueError(
            "y_pred must be the (batch, height, width, classes) logits of a "
            f"U-Net. Received: y_pred.shape={y_pred.shape}"
        )
    if y_pred.shape[-1] == 1:  # one sigmoid logit: foreground if positive
        return ops.cast(y_pred[..., 0] > 0, "int32")
    return ops.cast(ops.argmax(y_pred, axis=-1), "int32")


def _true_classes(y_true, k, sparse):
    """(B, H, W) int32 class indices from sparse or one-hot labels."""
    rank = len(y_true.shape)
    channels = y_true.shape[-1] if rank == 4 else None
    hint = _PACKED_HINT if channels in (2, k + 1) else ""
    if sparse or k == 1:
        if rank == 3 or (rank == 4 and channels == 1):
            labels = y_true if rank == 3 else y_true[..., 0]
            dtype = keras.backend.standardize_dtype(labels.dtype)
            if "int" not in dtype:
                labels = ops.round(ops.cast(labels, "float32"))
            return ops.cast(labels, "int32")
        raise ValueError(
            "With sparse=True, y_true must be class indices (batch, height, "
            f"width) or (batch, height, width, 1).{hint} "
            f"Received: y_true.shape={y_true.shape}"
        )
    if rank != 4 or channels != k:
        raise ValueError(
            f"With sparse=False, y_true must be one-hot (batch, height, "
            f"width, {k}), one channel per class of the output.{hint} "
            f"Received: y_true.shape={y_true.shape}"
        )
    return ops.cast(ops.argmax(y_true, axis=-1), "int32")


def _check_size(what, name, tensor, y_pred):
    """`tensor` (B, H, W, ...) must have the output's (H, W)."""
    got, want = tuple(tensor.shape[1:3]), tuple(y_pred.shape[1:3])
    if None in got + want or got == want:
        return
    raise ValueError(
        f"{what} of size {got} do not match the network output of size "
        f"{want}. A valid-padding U-Net's output is smaller than its input "
        "(by 2 * keras_unet.model.geometry.margin(depth)); crop the labels and "
        "weights to the output, as the keras_unet training pipeline does. "
        f"Received: {name}.shape={tuple(tensor.shape)}, "
        f"y_pred.shape={y_pred.shape}"
    )


def _pixel_weights(sample_weight, y_pred, weighted):
    """(B, H, W) float32 weights; without `weighted` only 0 or 1."""
    w = ops.ones_like(y_pred[..., 0], dtype="float32")
    if sample_weight is None:
        return w
    sw = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
    if len(sw.shape) in (2, 4) and sw.shape[-1] == 1:
        sw = sw[..., 0]
    if len(sw.shape) == 1:  # one weight per image
        sw = ops.reshape(sw, (-1, 1, 1))
    elif len(sw.shape) == 3:
        _check_size("Sample weights", "sample_weight", sw, y_pred)
    else:
        raise ValueError(
            "sample_weight must hold one weight per pixel, (batch, height, "
            "width) or (batch, height, width, 1), or one per image, (batch,)."
            f" Received: sample_weight.shape={tuple(sw.shape)}"
        )
    w = w * sw
    return w if weighted else ops.cast(w > 0, "float32")


def _classes_and_weights(y_true, y_pred, sample_weight, sparse, weighted):
    """Predicted classes, true classes and pixel weights, (B, H, W) each."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    pred = _predicted_classes(y_pred)
    labels = _true_classes(y_true, y_pred.shape[-1], sparse)
    _check_size("Labels", "y_true", y_true, y_pred)
    return pred, labels, _pixel_weights(sample_weight, y_pred, weighted)


def _check_class_id(class_id):
    if not isinstance(class_id, numbers.Integral) or class_id < 0:
        raise ValueError(
            "`class_id` must be a non-negative class index (1 = cell, 0 = "
            f"membrane for ISBI data). Received: class_id={class_id!r}"
        )
    return int(class_id)


@keras.saving.register_keras_serializable(package="keras_unet")
class ForegroundIoU(keras.metrics.Metric):
    """Intersection over union of one class, from U-Net logits.

    The predicted class of a pixel is the arg-max of the logits (for a
    one-channel output: logit > 0). Intersection and union are summed over
    all pixels seen since the last reset, so the epoch value is the IoU of
    the whole epoch, not a mean of batch values. The result is 0 while the
    union is empty.

    Labels: with ``sparse=True`` (default) ``y_true`` is class indices
    (B, H, W) or (B, H, W, 1); with ``sparse=False`` it is one-hot
    (B, H, W, K). Labels must have the output's size (crop them for a
    valid-padding U-Net).

    Weights come as ``sample_weight``, per pixel (B, H, W) or
    (B, H, W, 1), or per image (B,). By default they only mark the pixels
    to ignore (weight 0), so the paper's border-emphasising weight map does
    not change what the metric means; ``weighted=True`` counts every pixel
    with its weight. Keras hands ``sample_weight`` (the ``w`` of an
    ``(x, y, w)`` dataset) only to metrics compiled as
    ``weighted_metrics``; in ``metrics`` they see no sample weights.

    Args:
        class_id: the class scored as foreground (1 = cell for ISBI data,
            0 = membrane).
        sparse: label format, see above.
        weighted: count pixels with their weight instead of only ignoring
            weight-0 pixels.
        name: metric name.
        dtype: dtype of the metric's result.

    Examples:
        >>> import keras_unet
        >>> model = keras_unet.build_unet((188, 188, 1), depth=4, filters=8)
        >>> model.compile(
        ...     "adam",
        ...     keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ...     weighted_metrics=[ForegroundIoU(), PixelError()],
        ... )
    """

    def __init__(
        self,
        class_id=1,
        sparse=True,
        weighted=False,
        name="foreground_iou",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.class_id = _check_class_id(class_id)
        self.sparse = bool(sparse)
        self.weighted = bool(weighted)
        self.intersection = self.add_variable(
            shape=(), initializer="zeros", name="intersection"
        )
        self.union = self.add_variable(
            shape=(), initializer="zeros", name="union"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        pred, labels, w = _classes_and_weights(
            y_true, y_pred, sample_weight, self.sparse, self.weighted
        )
        p = ops.cast(ops.equal(pred, self.class_id), "float32")
        t = ops.cast(ops.equal(labels, self.class_id), "float32")
        self.intersection.assign_add(
            ops.cast(ops.sum(w * p * t), self.intersection.dtype)
        )
        self.union.assign_add(
            ops.cast(ops.sum(w * ops.maximum(p, t)), self.union.dtype)
        )

    def result(self):
        return ops.cast(
            ops.divide_no_nan(self.intersection, self.union), self.dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            class_id=self.class_id, sparse=self.sparse, weighted=self.weighted
        )
        return config


@keras.saving.register_keras_serializable(package="keras_unet")
class PixelError(keras.metrics.Metric):
    """Fraction of wrongly classified pixels, from U-Net logits.

    The training-time counterpart of the ISBI pixel error: the predicted
    class is the arg-max of the logits (soft-max threshold 0.5 for two
    classes; for a one-channel output: logit > 0), compared with the label
    on every pixel seen since the last reset. Label formats and weights as
    in `ForegroundIoU` (by default weight-0 pixels are ignored and the
    others count once).

    Args:
        sparse: label format (see `ForegroundIoU`).
        weighted: count pixels with their weight.
        name: metric name.
        dtype: dtype of the metric's result.

    Examples:
        >>> import numpy as np
        >>> metric = PixelError()
        >>> labels = np.array([[[1, 0]]])  # (batch, height, width)
        >>> logits = np.array([[[[0.0, 1.0], [0.0, 1.0]]]])  # both say class 1
        >>> metric.update_state(labels, logits)
        >>> float(metric.result())
        0.5
    """

    def __init__(
        self, sparse=True, weighted=False, name="pixel_error", dtype=None
    ):
        super().__init__(name=name, dtype=dtype)
        self.sparse = bool(sparse)
        self.weighted = bool(weighted)
        self.wrong = self.add_variable(
            shape=(), initializer="zeros", name="wrong"
        )
        self.total = self.add_variable(
            shape=(), initializer="zeros", name="total"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        pred, labels, w = _classes_and_weights(
            y_true, y_pred, sample_weight, self.sparse, self.weighted
        )
        wrong = ops.cast(ops.not_equal(pred, labels), "float32")
        self.wrong.assign_add(ops.cast(ops.sum(w * wrong), self.wrong.dtype))
        self.total.assign_add(ops.cast(ops.sum(w), self.total.dtype))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.wrong, self.total), self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(sparse=self.sparse, weighted=self.weighted)
        return config
