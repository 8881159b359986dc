"""The paper's loss: pixel-wise soft-max cross entropy weighted by a map.

``E = sum_x w(x) * (-log p_{l(x)}(x))`` (Ronneberger et al. 2015, Eq. 1),
computed from the logits that `keras_unet.build_unet` outputs, with the
weight map ``w`` of `keras_unet.weights.unet_weight_map` (or any per-pixel
weights; weight 0 ignores a pixel).

Two ways to give the weights, both supported and equal in value:

- packed into ``y_true``: ``(B, H, W, 2)`` = ``[class index, weight]``
  (``sparse=True``), or one-hot ``(B, H, W, K + 1)`` with the weight map as
  the last channel (``sparse=False``);
- as ``sample_weight`` of shape ``(B, H, W)``, which is what Keras passes
  to the loss when a ``tf.data`` dataset yields ``(x, y, w)``; per-image
  weights of shape ``(B,)`` are broadcast. If both are given they multiply.

Label formats (``K`` = channels of the logits): ``sparse=True`` (default):
``y_true`` is ``(B, H, W)`` or ``(B, H, W, 1)`` class indices, or ``(B, H,
W, 2)`` packed. ``sparse=False``: one-hot ``(B, H, W, K)``, or ``(B, H, W,
K + 1)`` packed. One output channel (``K = 1``) means a sigmoid model: the
logit is that of class 1 and the loss is the binary cross entropy, i.e. the
soft-max cross entropy of the logits ``[0, z]``.

Everything uses `keras.ops`, so the loss runs on every Keras backend.
"""

from __future__ import annotations

import functools

import keras
from keras import ops

__all__ = ["NORMALIZATIONS", "WeightedCrossentropy", "weighted_crossentropy"]

NORMALIZATIONS = ("weights", "pixels")
_REDUCTIONS = ("sum_over_batch_size", "sum", "none", None)

# Context (pixels per side) of a valid-padding U-Net of depth 1..7, used to
# recognise the classic mistake of passing uncropped labels.
_MARGINS = {6 * 2**d - 4: d for d in range(1, 8)}


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------


def _fmt_size(dims) -> str:
    return "x".join("?" if d is None else str(int(d)) for d in dims)


def _mismatch_message(what, got, want, received) -> str:
    """Explain a spatial-size mismatch, valid padding and the fix."""
    text = (
        f"The {what} are {_fmt_size(got)} but the logits are "
        f"{_fmt_size(want)}: the loss needs one {what[:-1]} per output "
        "pixel. With valid padding (the paper's unpadded convolutions) the "
        "U-Net output is smaller than its input, e.g. 572 -> 388 for depth "
        "4, so labels and weights must be cropped to the output window: "
        "y[:, m:-m, m:-m] with m = keras_unet.geometry.margin(depth), the "
        "output size being keras_unet.geometry.output_size(input_size)."
    )
    if all(g is not None and w is not None for g, w in zip(got, want)):
        diffs = {int(g) - int(w) for g, w in zip(got, want)}
        if len(diffs) == 1:
            diff = diffs.pop()
            if diff > 0 and diff % 2 == 0 and diff // 2 in _MARGINS:
                m = diff // 2
                text += (
                    f" Here the difference is {diff} = 2 x {m}, the margin "
                    f"of a depth-{_MARGINS[m]} U-Net: crop {m} pixels from "
                    "each side."
                )
            elif diff < 0:
                text += (
                    f" Here the {what} are smaller than the logits: feed "
                    "the network a larger input tile (see "
                    "keras_unet.geometry.input_size_for_output)."
                )
    return f"{text} Received: {received}"


def _static_dims(x):
    return tuple(x.shape)


def _check_spatial(what, got_shape, want_shape, received):
    """Static (trace-time) check; returns False if some size is unknown."""
    known = True
    if len(got_shape) != len(want_shape):
        raise ValueError(
            _mismatch_message(what, got_shape, want_shape, received)
        )
    for g, w in zip(got_shape, want_shape):
        if g is None or w is None:
            known = False
        elif int(g) != int(w):
            raise ValueError(
                _mismatch_message(what, got_shape, want_shape, received)
            )
    return known


def _split_y_true(y_true, y_pred, sparse):
    """(labels or one-hot, packed weights or None, K) with shape checks."""
    pred_shape = _static_dims(y_pred)
    if len(pred_shape) < 3:
        raise ValueError(
            "`y_pred` must be logits of shape (batch, height, width, "
            f"classes). Received: y_pred.shape={pred_shape}"
        )
    k = pred_shape[-1]
    if k is None:
        raise ValueError(
            "The class axis of the logits must have a known size. "
            f"Received: y_pred.shape={pred_shape}"
        )
    true_shape = _static_dims(y_true)
    rank = len(pred_shape)
    received = f"y_true.shape={true_shape}, y_pred.shape={pred_shape}"
    if sparse:
        if len(true_shape) == rank - 1:
            return y_true, None, k, received
        if len(true_shape) == rank and true_shape[-1] in (1, 2):
            labels = y_true[..., 0]
            weights = y_true[..., 1] if true_shape[-1] == 2 else None
            return labels, weights, k, received
        raise ValueError(
            "With sparse=True, `y_true` must hold class indices, shaped "
            "(batch, height, width) or (batch, height, width, 1), or "
            "(batch, height, width, 2) = [class index, weight]. If y_true is "
            "one-hot, pass sparse=False. Received: " + received
        )
    if len(true_shape) == rank and true_shape[-1] in (k, k + 1):
        onehot = y_true[..., :k]
        weights = y_true[..., k] if true_shape[-1] == k + 1 else None
        return onehot, weights, k, received
    raise ValueError(
        f"With sparse=False, `y_true` must be one-hot with {k} channels "
        f"(one per class of the logits), or {k + 1} channels with the weight "
        "map as the last one. For class-index labels pass sparse=True. "
        "Received: " + received
    )


# ---------------------------------------------------------------------------
# Value checks (see `WeightedCrossentropy` for what runs where)
# ---------------------------------------------------------------------------


def _is_concrete(x) -> bool:
    """Whether x holds values now (eager), as opposed to a traced tensor."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and hasattr(x, "numpy")
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def _problem_message(
    n_labels, lo, hi, n_negative, w_min, n_nonfinite, onehot_like, k, sparse
) -> str:
    """'' if all is well, else what is wrong and how to fix it."""
    parts = []
    if onehot_like:
        parts.append(
            "y_true has 2 channels that look one-hot (the second is 1 minus "
            "the first everywhere), but with sparse=True 2 channels mean "
            "[class index, weight]. Pass sparse=False for one-hot labels"
        )
    if n_labels:
        if sparse:
            n_cls = max(k, 2)
            parts.append(
                f"{n_labels} pixel(s) with weight > 0 have a class index "
                f"outside 0..{n_cls - 1} or not an integer (values from "
                f"{lo:g} to {hi:g}), but the logits have {n_cls} classes"
                f"{' (one sigmoid channel)' if k == 1 else ''}. Map labels "
                "to class indices first (ISBI labels: 255 -> 1, i.e. "
                "label // 255), or give pixels to ignore weight 0"
            )
        else:
            parts.append(
                f"{n_labels} one-hot value(s) at pixels with weight > 0 are "
                f"outside [0, 1] or not finite (from {lo:g} to {hi:g})"
            )
    if n_negative:
        parts.append(
            f"{n_negative} weight(s) are negative (smallest {w_min:g}); "
            "weights must be >= 0, with 0 meaning 'ignore this pixel'"
        )
    if n_nonfinite:
        parts.append(f"{n_nonfinite} weight(s) are NaN or infinite")
    if not parts:
        return ""
    return "weighted_crossentropy: " + "; ".join(parts) + "."


def _raise_problems(
    n_labels, lo, hi, n_negative, w_min, n_nonfinite, onehot_like, k, sparse
):
    message = _problem_message(
        int(n_labels),
        float(lo),
        float(hi),
        int(n_negative),
        float(w_min),
        int(n_nonfinite),
        int(onehot_like),
        int(k),
        bool(sparse),
    )
    if message:
        raise ValueError(message)


def _value_stats(labels, weights, k, sparse, packed=None):
    """Scalar tensors describing invalid labels and weights."""
    inf = float("inf")
    if packed is None:
        onehot_like = ops.convert_to_tensor(0, "int32")
    else:  # sparse, 2 classes, y_true = [label, weight]: one-hot by mistake?
        lab = ops.cast(labels, packed.dtype)
        onehot_like = ops.cast(ops.all(ops.equal(packed, 1 - lab)), "int32")
    if weights is None:
        active = ops.ones_like(
            labels[..., 0] if not sparse else labels, dtype="bool"
        )
        n_negative = ops.convert_to_tensor(0, "int32")
        n_nonfinite = ops.convert_to_tensor(0, "int32")
        w_min = ops.convert_to_tensor(0.0, "float32")
    else:
        active = weights > 0
        n_negative = ops.sum(ops.cast(weights < 0, "int32"))
        finite = ops.isfinite(weights)
        n_nonfinite = ops.sum(ops.cast(ops.logical_not(finite), "int32"))
        w_min = ops.min(ops.where(finite, weights, inf))
    if sparse:
        lab = ops.cast(labels, "float32")
        bad = ops.logical_or(
            ops.logical_not(ops.isfinite(lab)),
            ops.logical_or(
                ops.logical_or(lab < 0, lab > max(k, 2) - 1),
                ops.not_equal(lab, ops.round(lab)),
            ),
        )
    else:
        lab = ops.cast(labels, "float32")
        bad = ops.logical_or(
            ops.logical_not(ops.isfinite(lab)),
            ops.logical_or(lab < 0, lab > 1),
        )
        active = ops.expand_dims(active, -1)
    bad = ops.logical_and(bad, active)
    n_labels = ops.sum(ops.cast(bad, "int32"))
    lo = ops.min(ops.where(bad, ops.nan_to_num(lab, nan=-inf), inf))
    hi = ops.max(ops.where(bad, ops.nan_to_num(lab, nan=inf), -inf))
    return n_labels, lo, hi, n_negative, w_min, n_nonfinite, onehot_like


def _check_values(labels, weights, k, sparse, packed=None):
    """Raise now (eager) or at run time (traced); returns the 'bad' flag.

    The flag (a boolean scalar tensor) is True when the values are invalid;
    the caller turns the loss into NaN then, for the traced cases in which
    no error can be raised (XLA).
    """
    stats = _value_stats(labels, weights, k, sparse, packed)
    n_labels, _, _, n_negative, _, n_nonfinite, onehot_like = stats
    n_bad = n_labels + n_negative + n_nonfinite + onehot_like
    if _is_concrete(n_labels):
        _raise_problems(*(ops.convert_to_numpy(s) for s in stats), k, sparse)
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        names = (
            "labels: pixels with weight > 0 whose class index is outside "
            f"0..{max(k, 2) - 1} or not an integer (map labels to class "
            "indices, e.g. ISBI 255 -> 1; give ignored pixels weight 0); "
            "count, min, max =",
            "weights must be >= 0 (0 = ignore the pixel); negative count, "
            "smallest =",
            "weights must be finite; NaN/inf count =",
            "y_true looks one-hot (2 channels, the second = 1 - the first) "
            "but sparse=True reads 2 channels as [class index, weight]; "
            "pass sparse=False for one-hot labels",
        )
        asserts = [
            tf.debugging.Assert(
                tf.equal(n_labels, 0),
                ["weighted_crossentropy: " + names[0], *stats[:3]],
            ),
            tf.debugging.Assert(
                tf.equal(n_negative, 0),
                ["weighted_crossentropy: " + names[1], stats[3], stats[4]],
            ),
            tf.debugging.Assert(
                tf.equal(n_nonfinite, 0),
                ["weighted_crossentropy: " + names[2], stats[5]],
            ),
            tf.debugging.Assert(
                tf.equal(onehot_like, 0),
                ["weighted_crossentropy: " + names[3]],
            ),
        ]
        with tf.control_dependencies(asserts):
            bad = tf.identity(n_bad > 0)
        return bad
    if backend == "jax":
        import jax

        jax.debug.callback(
            functools.partial(_raise_problems, k=k, sparse=sparse), *stats
        )
    return n_bad > 0


def _check_weight_shape(sample_weight, pred_shape):
    """sample_weight as (B, H, W) or (B,) -> broadcastable; shape errors."""
    sw_shape = _static_dims(sample_weight)
    spatial = pred_shape[1:-1]
    received = f"sample_weight.shape={sw_shape}, y_pred.shape={pred_shape}"
    if len(sw_shape) == 1:
        return ops.reshape(sample_weight, (-1,) + (1,) * len(spatial))
    if len(sw_shape) == len(pred_shape) and sw_shape[-1] == 1:
        sample_weight = sample_weight[..., 0]
        sw_shape = sw_shape[:-1]
    if len(sw_shape) != len(pred_shape) - 1:
        raise ValueError(
            "`sample_weight` must be per pixel, (batch, height, width) like "
            "the labels (a trailing axis of 1 is accepted), or per image, "
            "(batch,). Received: " + received
        )
    _check_spatial("weights", sw_shape[1:], spatial, received)
    return sample_weight


def _runtime_shape_check(x, y_pred, what):
    """TF graphs with unknown sizes: assert equal spatial sizes at run time."""
    if keras.backend.backend() != "tensorflow":
        return x
    import tensorflow as tf

    if tf.executing_eagerly():
        return x
    n = len(y_pred.shape) - 2
    got = tf.shape(x)[1 : 1 + n]
    want = tf.shape(y_pred)[1 : 1 + n]
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(got, want)),
        [
            f"weighted_crossentropy: the {what} and the logits differ in "
            "spatial size. With valid padding the U-Net output is smaller "
            "than its input (572 -> 388 for depth 4): crop labels and "
            "weights to the output, y[:, m:-m, m:-m] with m = "
            "keras_unet.geometry.margin(depth) (see "
            f"keras_unet.geometry.output_size). {what} size:",
            got,
            "logits size:",
            want,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(x)


# ---------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------


def _weighted_ce(y_true, y_pred, sample_weight, sparse, check_inputs):
    """Per-pixel weighted loss and weights, both (B, H, W) float32."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    compute = "float64" if y_pred.dtype == "float64" else "float32"
    logits = ops.cast(y_pred, compute)
    labels, weights, k, received = _split_y_true(y_true, logits, sparse)
    pred_shape = _static_dims(logits)
    spatial = pred_shape[1:-1]
    known = _check_spatial(
        "labels", _static_dims(labels)[1 : 1 + len(spatial)], spatial, received
    )
    if not known:
        labels = _runtime_shape_check(labels, logits, "labels")
    packed = None
    if weights is not None:
        weights = ops.cast(weights, compute)
        if sparse and k == 2:
            packed = weights
    if sample_weight is not None:
        sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), compute)
        sw = _check_weight_shape(sample_weight, pred_shape)
        if len(sw.shape) == len(pred_shape) - 1 and None in sw.shape[1:]:
            sw = _runtime_shape_check(sw, logits, "weights")
        weights = sw if weights is None else weights * sw
    if k == 1:  # sigmoid model: soft-max over the logits [0, z]
        logits = ops.concatenate([ops.zeros_like(logits), logits], axis=-1)
        if not sparse:
            p1 = ops.cast(labels, compute)
            labels = ops.concatenate([1.0 - p1, p1], axis=-1)
        num_classes = 2
    else:
        num_classes = k
    bad = None
    if check_inputs:
        bad = _check_values(labels, weights, k, sparse, packed)
    log_p = ops.log_softmax(logits, axis=-1)
    if sparse:
        index = ops.cast(ops.round(ops.cast(labels, compute)), "int32")
        onehot = ops.one_hot(index, num_classes, dtype=compute)
    else:
        onehot = ops.cast(labels, compute)
    # Where a one-hot row is 0 (ignored pixel with an out-of-range label),
    # the product is 0 and no NaN can enter from 0 * log(0).
    ce = -ops.sum(onehot * log_p, axis=-1)
    if weights is None:
        weights = ops.ones_like(ce)
    else:
        weights = ops.broadcast_to(weights, ops.shape(ce))
        # 0 * anything = 0 for ignored pixels (ce is finite for finite
        # logits; this also keeps non-finite ce out of ignored pixels).
        ce = ops.where(weights > 0, ce, ops.zeros_like(ce))
    losses = weights * ce
    if bad is not None:
        losses = ops.where(bad, ops.full_like(losses, float("nan")), losses)
    return losses, weights


@keras.saving.register_keras_serializable(package="keras_unet")
def weighted_crossentropy(
    y_true, y_pred, sample_weight=None, sparse=True, check_inputs=True
):
    """Per-pixel weighted soft-max cross entropy on logits.

    ``loss(x) = w(x) * -log softmax(y_pred(x))[label(x)]``, where ``w`` is
    the packed weight channel of ``y_true`` times ``sample_weight`` (1 if
    neither is given). The logits are cast to float32 first (float16 and
    bfloat16 models are fine) and the log-softmax is computed stably, so
    logits of any size give finite values and gradients.

    Args:
        y_true: labels, with or without a packed weight channel (see the
            module docstring for the formats).
        y_pred: logits ``(B, H, W, K)``, as `keras_unet.build_unet` outputs.
            ``K = 1`` is a sigmoid model (logit of class 1).
        sample_weight: optional per-pixel ``(B, H, W)`` or per-image
            ``(B,)`` weights (>= 0, 0 = ignore).
        sparse: True for class-index labels, False for one-hot.
        check_inputs: check labels and weights (see `WeightedCrossentropy`
            for what is checked and how on each backend).

    Returns:
        float32 tensor ``(B, H, W)`` of weighted per-pixel losses. For the
        scalar loss, use `WeightedCrossentropy` (which also normalizes).

    Examples:
        >>> import numpy as np
        >>> logits = np.zeros((1, 2, 2, 2), "float32")
        >>> y = np.array([[[[0, 1.0], [1, 2.0]], [[1, 0.0], [0, 1.0]]]])
        >>> loss = weighted_crossentropy(y, logits)   # y packs [class, weight]
        >>> np.round(keras.ops.convert_to_numpy(loss), 4)
        array([[[0.6931, 1.3863],
                [0.    , 0.6931]]], dtype=float32)

    Reference:
        Ronneberger et al. 2015, Eq. (1).
    """
    losses, _ = _weighted_ce(
        y_true, y_pred, sample_weight, sparse, check_inputs
    )
    return losses


def _scale_for_distribution(value):
    """Divide by the replica count under tf.distribute (as Keras does)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * (1.0 / replicas)
    return value


@keras.saving.register_keras_serializable(package="keras_unet")
class WeightedCrossentropy(keras.losses.Loss):
    """The paper's weighted soft-max cross entropy, as a Keras loss.

    ``E = sum_x w(x) * -log p_{l(x)}(x) / Z``, with ``p`` the soft-max of
    the logits, ``w`` the per-pixel weights (packed in ``y_true`` and/or
    given as ``sample_weight``; see the module docstring for the label
    formats) and ``Z`` set by ``normalization``:

    - ``"weights"`` (default): ``Z = sum_x w(x)``, the weighted mean of the
      cross entropy, as PyTorch's ``CrossEntropyLoss(weight=...)`` and
      Caffe's loss with ignored pixels compute it. Its scale is that of the
      plain cross entropy whatever the weight map (w0, class balance,
      ignored pixels), so learning rates tuned for the unweighted loss
      carry over; the weights only decide which pixels matter more.
    - ``"pixels"``: ``Z`` = number of pixels (Keras' usual
      ``"sum_over_batch_size"`` with ``sample_weight``). The loss and its
      gradients are multiplied by the mean weight of the batch (measured
      for the paper's maps with balanced ``w_c``, w0=10, sigma=5: 1.13 on
      the DSB nuclei image, 1.62-1.89 on the ISBI 2012 labels), so the
      effective learning rate changes with w0, the class weights and the
      data, and ignored pixels still count in the mean.

    For the paper's SGD with momentum 0.99 the steady-state step is
    ``lr / (1 - 0.99) = 100 x lr`` times the gradient; with ``"pixels"`` it
    is further multiplied by the mean weight. This project saw momentum
    0.99 with lr 0.01 on a pixel-averaged weighted loss collapse to
    predicting membrane everywhere. ``"weights"`` removes the mean-weight
    factor but not the factor 100: with momentum 0.99 use lr <= 1e-3 (or
    Adam 1e-3). The paper writes the energy as a plain sum over the pixels
    (Eq. 1) and gives no learning rate; ``reduction="sum"`` computes that
    sum, whose gradients are larger than the mean's by the number of
    pixels (150,544 for one 388x388 tile), so the learning rate must be
    smaller by the same factor.

    Checks (``check_inputs=True``): spatial sizes of labels, weights and
    logits must agree (a mismatch, such as the uncropped 572 label against
    the 388 output of a valid U-Net, raises a ValueError that explains the
    crop); class indices must lie in ``0..K-1`` wherever the weight is > 0
    (so labels such as 255 are allowed on ignored pixels); weights must be
    finite and >= 0; a 2-class one-hot ``y_true`` passed with
    ``sparse=True`` (which would read it as [class index, weight]) is
    recognised. Shapes are checked when the function is traced; values are
    checked:

    - eagerly (any backend): a ValueError right away;
    - TensorFlow graphs (``tf.function``, ``model.fit(jit_compile=False)``):
      a ``tf.errors.InvalidArgumentError`` with the same explanation, at
      run time (sizes unknown at trace time are asserted then too);
    - JAX under ``jit`` (``model.fit`` on the JAX backend): a
      ``jax.debug.callback`` raises the ValueError from the step (a small
      host transfer per step; ``check_inputs=False`` removes it);
    - XLA-compiled TensorFlow steps (Keras' default ``jit_compile="auto"``
      on TensorFlow) drop assertions; there, and on other compiled
      backends, invalid values make the loss NaN (with zero gradient, so
      the weights are not updated from the bad batch). A NaN loss from the
      first step on therefore means bad labels or weights: call the loss
      eagerly on one batch, or fit with ``jit_compile=False``, to see the
      message.

    Args:
        sparse: True (default) for class-index labels, False for one-hot.
        normalization: ``"weights"`` (default) or ``"pixels"``, see above.
        check_inputs: check label and weight values (see above).
        reduction: ``"sum_over_batch_size"`` (default: normalize as set by
            ``normalization``), ``"sum"`` (no normalization, the paper's
            energy) or ``"none"``/None (per-pixel weighted losses).
        name: name of the loss.
        dtype: Keras' loss dtype; the computation itself is float32 (or
            float64 for float64 logits) whatever the model's precision.

    Examples:
        >>> import keras_unet
        >>> model = keras_unet.build_unet((92, 92, 1), depth=2, filters=4)
        >>> model.compile("adam", loss=WeightedCrossentropy())
        >>> # train on (x, y, w): x (B, 92, 92, 1), y (B, 52, 52) int class
        >>> # indices, w (B, 52, 52) float32 weight maps (cropped to the output)

    Reference:
        Ronneberger et al. 2015, Eq. (1) and Sect. 3.
    """

    def __init__(
        self,
        sparse=True,
        normalization="weights",
        check_inputs=True,
        reduction="sum_over_batch_size",
        name="weighted_crossentropy",
        dtype=None,
    ):
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {NORMALIZATIONS}: 'weights' "
                "divides by the sum of the weights (the weighted mean), "
                "'pixels' by the number of pixels. Received: "
                f"normalization={normalization!r}"
            )
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"`reduction` must be one of {_REDUCTIONS}; how the mean is "
                "taken is set by `normalization`. Received: "
                f"reduction={reduction!r}"
            )
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.sparse = bool(sparse)
        self.normalization = normalization
        self.check_inputs = bool(check_inputs)

    def call(self, y_true, y_pred):
        """Per-pixel weighted losses (weights packed in ``y_true`` only)."""
        losses, _ = _weighted_ce(
            y_true, y_pred, None, self.sparse, self.check_inputs
        )
        return losses

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            losses, weights = _weighted_ce(
                y_true, y_pred, sample_weight, self.sparse, self.check_inputs
            )
            if self.reduction in (None, "none"):
                return losses
            total = ops.sum(losses)
            if self.reduction == "sum":
                return total
            if self.normalization == "weights":
                value = ops.divide_no_nan(total, ops.sum(weights))
            else:
                value = ops.mean(losses)
            return _scale_for_distribution(value)

    def get_config(self):
        config = super().get_config()
        config.update(
            sparse=self.sparse,
            normalization=self.normalization,
            check_inputs=self.check_inputs,
        )
        return config
