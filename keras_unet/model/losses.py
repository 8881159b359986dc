"""The paper's loss: pixel-wise soft-max cross entropy weighted by a map.

``E = sum_x w(x) * (-log p_{l(x)}(x))`` (Ronneberger et al. 2015, Eq. 1),
computed from the logits that `keras_unet.build_unet` outputs, with the
weight map ``w`` of `keras_unet.data.weight_maps.unet_weight_map` (or any
per-pixel weights; weight 0 ignores a pixel).

As everywhere in Keras, the weights arrive as ``sample_weight``: a
``tf.data`` dataset or `keras.utils.PyDataset` yielding ``(x, y, w)``
hands ``w`` to the loss, with ``w`` of shape ``(B, H, W)`` like the labels
(`keras_unet.data.stream.make_training_dataset` yields exactly that). The loss
is a plain function, `weighted_crossentropy`, wrapped by a
`keras.losses.Loss` that leaves weighting and reduction to Keras.

Label formats (``K`` = channels of the logits): ``sparse=True`` (default):
class indices ``(B, H, W)`` or ``(B, H, W, 1)``; ``sparse=False``: one-hot
``(B, H, W, K)``. One output channel (``K = 1``) means a sigmoid model: the
logit is that of class 1 and the loss is the binary cross entropy, i.e. the
soft-max cross entropy of the logits ``[0, z]``.

Label and weight *values* are checked before training, by
`keras_unet.data` (labels in ``0..K-1``, weights finite and >= 0), and
when the loss is called on numpy arrays; inside a compiled training step
only shapes are checked (when the step is traced). Everything uses
`keras.ops`, so the loss runs on every Keras backend.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_unet.checks import check_choice
from keras_unet.model import geometry

__all__ = ["REDUCTIONS", "WeightedCrossentropy", "weighted_crossentropy"]

REDUCTIONS = ("mean_with_sample_weight", "sum_over_batch_size", "sum", "none")


def _fmt_size(dims) -> str:
    return "x".join("?" if d is None else str(int(d)) for d in dims)


def _margin_hint(what, got, want) -> str:
    """Name the classic mistake: labels not cropped to a valid U-Net."""
    if None in tuple(got) + tuple(want):
        return ""
    diffs = {int(g) - int(w) for g, w in zip(got, want)}
    if len(diffs) != 1:
        return ""
    diff = diffs.pop()
    depths = [d for d in range(1, 8) if 2 * geometry.margin(d) == diff]
    if depths:
        return (
            f" Here the difference is {diff} = 2 x {diff // 2}, the margin "
            f"of a depth-{depths[0]} U-Net: crop {diff // 2} pixels from "
            "each side."
        )
    if diff < 0:
        return (
            f" Here the {what} are smaller than the logits: feed the network "
            "a larger input tile (see keras_unet.model.geometry."
            "input_size_for_output)."
        )
    return ""


def _check_spatial(what, got, want, received):
    """Trace-time check that labels match the logits pixel for pixel."""
    got, want = tuple(got), tuple(want)
    same = len(got) == len(want) and all(
        g is None or w is None or int(g) == int(w) for g, w in zip(got, want)
    )
    if not same:
        raise ValueError(
            f"The {what} are {_fmt_size(got)} but the logits are "
            f"{_fmt_size(want)}: the loss needs one {what[:-1]} per output "
            "pixel. With valid padding (the paper's unpadded convolutions) "
            "the U-Net output is smaller than its input, e.g. 572 -> 388 for "
            "depth 4, so labels and weights must be cropped to the output "
            "window: y[:, m:-m, m:-m] with m = "
            "keras_unet.model.geometry.margin(depth), the output size being "
            "keras_unet.model.geometry.output_size(input_size)."
            f"{_margin_hint(what, got, want)} Received: "
            f"{received}"
        )


def _labels(y_true, y_pred, sparse):
    """Class indices (B, H, W) or one-hot (B, H, W, K), shapes checked."""
    pred_shape, true_shape = tuple(y_pred.shape), tuple(y_true.shape)
    received = f"y_true.shape={true_shape}, y_pred.shape={pred_shape}"
    if len(pred_shape) != 4 or pred_shape[-1] is None:
        raise ValueError(
            "`y_pred` must be logits of shape (batch, height, width, "
            f"classes). Received: y_pred.shape={pred_shape}"
        )
    k = pred_shape[-1]
    if sparse and len(true_shape) == 4 and true_shape[-1] == 1:
        y_true, true_shape = y_true[..., 0], true_shape[:-1]
    if sparse and len(true_shape) != 3:
        raise ValueError(
            "With sparse=True, `y_true` must hold class indices shaped "
            "(batch, height, width) or (batch, height, width, 1); per-pixel "
            "weights go in `sample_weight`. If y_true is one-hot, pass "
            f"sparse=False. Received: {received}"
        )
    if not sparse and (len(true_shape) != 4 or true_shape[-1] != k):
        raise ValueError(
            f"With sparse=False, `y_true` must be one-hot with {k} channels "
            "(one per class of the logits). For class-index labels pass "
            f"sparse=True. Received: {received}"
        )
    _check_spatial("labels", true_shape[1:3], pred_shape[1:3], received)
    return y_true


def _check_values(y_true, k, sparse):
    """Value checks for labels given as numpy arrays (eager calls)."""
    n_classes = max(k, 2)
    values = np.asarray(y_true, np.float64)
    if sparse:
        bad = ~np.isfinite(values) | (values < 0) | (values > n_classes - 1)
        bad |= values != np.round(values)
        rule = f"class indices in 0..{n_classes - 1}"
    else:
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        rule = "one-hot values in [0, 1]"
    if bad.any():
        shown = np.unique(values[bad])[:5].tolist()
        raise ValueError(
            f"weighted_crossentropy: {int(bad.sum())} label value(s) are not "
            f"{rule} (e.g. {shown}). Map labels to class indices first (ISBI "
            "labels: 255 -> 1, i.e. label // 255) and give pixels to ignore "
            "weight 0 in sample_weight."
        )


@keras.saving.register_keras_serializable(package="keras_unet")
def weighted_crossentropy(y_true, y_pred, sparse=True):
    """Per-pixel soft-max cross entropy on logits, ``-log p_label``.

    The weights of Eq. 1 are applied by Keras (`WeightedCrossentropy` with
    ``sample_weight``). The logits are cast to float32 first (float16 and
    bfloat16 models are fine) and the log-softmax is computed stably, so
    logits of any size give finite values and gradients.

    Args:
        y_true: class indices ``(B, H, W)`` / ``(B, H, W, 1)``
            (``sparse=True``) or one-hot ``(B, H, W, K)``.
        y_pred: logits ``(B, H, W, K)``, as `keras_unet.build_unet`
            outputs. ``K = 1`` is a sigmoid model (logit of class 1).
        sparse: True for class indices, False for one-hot labels.

    Returns:
        float32 tensor ``(B, H, W)`` of per-pixel losses.

    Examples:
        >>> logits = np.zeros((1, 1, 2, 2), "float32")
        >>> loss = weighted_crossentropy(np.array([[[0, 1]]]), logits)
        >>> np.round(keras.ops.convert_to_numpy(loss), 4)
        array([[[0.6931, 0.6931]]], dtype=float32)

    Reference:
        Ronneberger et al. 2015, Eq. (1).
    """
    if isinstance(y_true, np.ndarray):
        _check_values(y_true, np.shape(y_pred)[-1], sparse)
    logits = ops.convert_to_tensor(y_pred)
    dtype = keras.backend.standardize_dtype(logits.dtype)
    compute = "float64" if dtype == "float64" else "float32"
    logits = ops.cast(logits, compute)
    k = logits.shape[-1]
    labels = _labels(y_true, logits, sparse)
    if k == 1:  # sigmoid model: soft-max over the logits [0, z]
        logits = ops.concatenate([ops.zeros_like(logits), logits], axis=-1)
    log_p = ops.log_softmax(logits, axis=-1)
    if sparse:
        index = ops.cast(ops.round(ops.cast(labels, compute)), "int32")
        onehot = ops.one_hot(index, max(k, 2), dtype=compute)
    else:
        onehot = ops.cast(labels, compute)
        if k == 1:
            onehot = ops.concatenate([1.0 - onehot, onehot], axis=-1)
    return -ops.sum(onehot * log_p, axis=-1)


@keras.saving.register_keras_serializable(package="keras_unet")
class WeightedCrossentropy(keras.losses.Loss):
    """The paper's weighted soft-max cross entropy, as a Keras loss.

    ``E = sum_x w(x) * -log p_{l(x)}(x) / Z`` with ``p`` the soft-max of
    the logits and ``w`` the per-pixel weights, given as ``sample_weight``
    (the ``w`` of an ``(x, y, w)`` dataset). Keras applies the weights and
    the reduction; ``Z`` is set by ``reduction``:

    - ``"mean_with_sample_weight"`` (default): ``Z = sum_x w(x)``, the
      weighted mean of the cross entropy, as PyTorch's
      ``CrossEntropyLoss(weight=...)`` and Caffe's loss with ignored pixels
      compute it. Its scale is that of the plain cross entropy whatever
      the weight map (w0, class balance, ignored pixels), so learning
      rates tuned for the unweighted loss carry over.
    - ``"sum_over_batch_size"``: ``Z`` = number of pixels (Keras' usual
      mean). The loss and its gradients are multiplied by the mean weight
      of the batch (1.13 on the DSB nuclei image, 1.62-1.89 on the ISBI
      2012 labels for the paper's maps), so the effective learning rate
      changes with w0, the class weights and the data.
    - ``"sum"``: the paper's energy as written (Eq. 1), whose gradients are
      larger than the mean's by the number of pixels (150,544 for one
      388x388 tile): scale the learning rate down by as much.
    - ``"none"``: the weighted per-pixel losses.

    Labels must have the output's size: a mismatch, such as the uncropped
    572 label against the 388 output of a valid U-Net, raises a ValueError
    that explains the crop when the step is traced.

    Args:
        sparse: True (default) for class-index labels, False for one-hot.
        reduction: see above.
        name: name of the loss.
        dtype: Keras' loss dtype; the computation itself is float32 (or
            float64 for float64 logits) whatever the model's precision.

    Examples:
        >>> import keras_unet
        >>> model = keras_unet.build_unet((92, 92, 1), depth=2, filters=4)
        >>> model.compile("adam", loss=WeightedCrossentropy())
        >>> # fit on (x, y, w): x (B, 92, 92, 1), y (B, 52, 52) int class
        >>> # indices, w (B, 52, 52) float32 weight maps (cropped to the output)

    Reference:
        Ronneberger et al. 2015, Eq. (1) and Sect. 3.
    """

    def __init__(
        self,
        sparse=True,
        reduction="mean_with_sample_weight",
        name="weighted_crossentropy",
        dtype=None,
    ):
        check_choice(
            "none" if reduction is None else reduction,
            "reduction",
            REDUCTIONS,
            "'mean_with_sample_weight' divides by the sum of the weights",
        )
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.sparse = bool(sparse)

    def call(self, y_true, y_pred):
        return weighted_crossentropy(y_true, y_pred, sparse=self.sparse)

    def get_config(self):
        return {**super().get_config(), "sparse": self.sparse}
