"""Export a U-Net as a TensorFlow SavedModel that segments images of any size.

The graph is `keras_unet.predict_tiled` in TensorFlow ops: the tile plan of
`keras_unet.inference.tile_plan` and the transforms of
`keras_unet.inference.tta`, evaluated on tensors from the image's dynamic
size. TensorFlow Serving runs it without keras_unet or Keras. The BioImage
Model Zoo package is `keras_unet.export.bioimageio`. Serving (the
project's docs/serving.md has the details)::

    docker run --rm -p 8501:8501 -e MODEL_NAME=unet \
        --mount type=bind,source=$PWD/serving/unet,target=/models/unet \
        -t tensorflow/serving
    # REST: POST http://localhost:8501/v1/models/unet:predict with the JSON
    # {"instances": [image.tolist()]} (an (H, W) or (H, W, C) image); the
    # answer's "predictions" hold the signature's outputs per image.
"""

from __future__ import annotations

import json
import pathlib

from keras_unet.checks import check_choice, check_int, check_number
from keras_unet.data.mirror import check_mirror, mirror_index
from keras_unet.export.formats import INPUT_DTYPES
from keras_unet.inference import tile_plan, tiling_model
from keras_unet.inference.tta import average_over_transforms, resolve_tta
from keras_unet.io.atomic import atomic_folder, check_output_folder

__all__ = ["METADATA_FILE", "export_saved_model"]

METADATA_FILE = "keras_unet.json"
_SHAPES = (
    "`image` must have shape (H, W), (H, W, C), (N, H, W) or (N, H, W, C)."
)


def _predict_fn(tf, tm, tile_max, batch_size, names, mirror, from_logits):
    """`predict_tiled` of one (H, W, C) float32 image, as a tf.function."""
    g, ctx = tm.spec.geometry, tm.spec.geometry.context
    channels, k = tm.spec.input_channels, tm.spec.num_classes

    def plan(n, t_max):  # tiling's plan along one axis, on tensors
        tile = t_max if tm.fixed else tile_plan.balanced_tile(n, t_max, g, tf)
        return (tile, *tile_plan.plan_axis(n, tile, ctx, g.step, tf))

    def logits(x):
        h, w = tf.shape(x)[0], tf.shape(x)[1]
        th, ch, sh, bottom = plan(h, tile_max[0])
        tw, cw, sw, right = plan(w, tile_max[1])
        rows = mirror_index(tf.range(-ctx, h + bottom), h, mirror, tf)
        cols = mirror_index(tf.range(-ctx, w + right), w, mirror, tf)
        padded = tf.gather(tf.gather(x, rows), cols, axis=1)
        n = ch * cw
        calls, per_call = tile_plan.balanced_batch(batch_size, n)

        def call(i):  # one batch of tiles (slots past the last repeat it)
            ids = tf.minimum(i * per_call + tf.range(per_call), n - 1)
            r = (ids // cw * sh)[:, None] + tf.range(th)[None]
            c = (ids % cw * sw)[:, None] + tf.range(tw)[None]
            tiles = tf.gather(tf.gather(padded, r), c, axis=2, batch_dims=1)
            return tf.cast(tm.model(tiles, training=False), tf.float32)

        # One batch of tiles in memory at a time.
        out = tf.map_fn(
            call,
            tf.range(calls),
            fn_output_signature=tf.TensorSpec([None, None, None, k]),
            parallel_iterations=1,
        )
        out = tf.reshape(out, [calls * per_call, -1, tf.shape(out)[3], k])[:n]
        if g.tile_crop:
            out = out[:, g.tile_crop : -g.tile_crop, g.tile_crop : -g.tile_crop]
        oh, ow = th - 2 * ctx, tw - 2 * ctx
        out = tf.transpose(
            tf.reshape(out, [ch, cw, oh, ow, k]), [0, 2, 1, 3, 4]
        )
        out = tf.reshape(out, [ch * oh, cw * ow, k])
        ty, y = tile_plan.tile_of_pixel(tf.range(h), sh, ch, tf)
        tx, x = tile_plan.tile_of_pixel(tf.range(w), sw, cw, tf)
        return tf.gather(tf.gather(out, ty * oh + y), tx * ow + x, axis=1)

    def probabilities(x, name):
        z = logits(x)
        if not from_logits:
            return z
        return tf.sigmoid(z) if k == 1 else tf.nn.softmax(z, axis=-1)

    # One traced graph shared by all signatures (traced once, stored once).
    return tf.function(
        lambda x: average_over_transforms(probabilities, x, names, xp=tf),
        input_signature=[tf.TensorSpec([None, None, channels], tf.float32)],
        autograph=False,
    )


def _as_batch(tf, image, channels):
    """``(N, H, W, C)`` of an image of any accepted rank; whether batched."""
    rank = tf.rank(image)
    ok = tf.logical_and(rank >= 2, rank <= 4)
    # The ops below wait for this check: a bad rank gets this message.
    with tf.control_dependencies([tf.debugging.Assert(ok, [_SHAPES])]):
        shape = tf.concat([tf.ones([4 - rank], tf.int32), tf.shape(image)], 0)
    batch3 = tf.logical_and(tf.equal(rank, 3), tf.not_equal(shape[3], channels))
    batch3 = tf.logical_and(batch3, channels == 1)  # (N, H, W) grey images
    # (H, W) -> (1, H, W, 1) and (N, H, W) -> (N, H, W, 1):
    moved = tf.logical_or(tf.equal(rank, 2), batch3)
    shape = tf.where(moved, tf.concat([shape[1:], [1]], 0), shape)
    grey = " (or (H, W) grey images)" if channels == 1 else ""
    checks = [
        tf.debugging.assert_equal(
            shape[3],
            channels,
            message=f"The model expects images with {channels} channel(s) "
            f"in the last axis{grey}",
        ),
        tf.debugging.assert_greater(
            tf.reduce_prod(shape),
            0,
            message="The image is empty (it has no pixels).",
        ),
    ]
    with tf.control_dependencies(checks):
        x = tf.reshape(image, shape)
    batched = tf.logical_or(tf.equal(rank, 4), batch3)
    return tf.ensure_shape(x, [None, None, None, channels]), batched


def _labels(tf, probs, k, interest, threshold):
    """Class indices: for two classes (or one sigmoid channel) the class of
    interest where its probability reaches the threshold; else arg-max."""
    if k > 2:
        return tf.cast(tf.argmax(probs, axis=-1), tf.uint8)
    if k == 1:
        return tf.cast(probs[..., 0] >= threshold, tf.uint8)
    chosen = probs[..., interest] >= threshold
    return tf.where(
        chosen,
        tf.constant(interest, tf.uint8),
        tf.constant(1 - interest, tf.uint8),
    )


def _serving_fn(tf, predict_one, spec, dtype, decision):
    """The signature of one input dtype: scale, predict each image, rank."""

    def serve(image):
        x, batched = _as_batch(tf, image, spec.input_channels)
        if dtype == "float32":
            x = tf.debugging.assert_all_finite(
                x,
                "The image has NaN or infinite pixels; replace them before "
                "segmenting.",
            )
        else:  # as keras_unet.data.normalize.to_float_image
            x = tf.cast(x, tf.float32) / float(tf.as_dtype(dtype).max)
        out = tf.map_fn(
            predict_one,
            x,
            parallel_iterations=1,
            fn_output_signature=tf.TensorSpec(
                [None, None, spec.num_classes], tf.float32
            ),
        )
        out = tf.cond(batched, lambda: out, lambda: out[0])
        labels = _labels(tf, out, spec.num_classes, *decision)
        return {"probabilities": out, "labels": labels}

    return serve


def export_saved_model(
    model,
    path,
    tta=None,
    tile_size=None,
    *,
    batch_size=1,
    input_dtype="uint8",
    mirror="reflect",
    from_logits=True,
    memory_budget=None,
    overwrite=False,
    spec=None,
    threshold=0.5,
    class_of_interest=1,
):
    """Write a SavedModel that segments one image of any size, for TF Serving.

    The graph scales the image (uint8 / 255, uint16 / 65535), mirror-pads
    it, predicts tiles at offsets that are multiples of ``2**depth``,
    applies the test-time augmentation and the soft-max: `predict_tiled`
    with the same `tta` and `mirror`, to float round-off. The folder is
    written under a temporary name and renamed (never half a model).

    Signatures ``predict_uint8``, ``predict_uint16``, ``predict_float32``
    (NaN/inf rejected) and ``serving_default`` (that of `input_dtype`) take
    an ``image`` ``(H, W)``, ``(H, W, C)``, ``(N, H, W)`` (grey, when ``W !=
    C``) or ``(N, H, W, C)`` and return ``probabilities`` ``(H, W, K)`` or
    ``(N, H, W, K)`` and ``labels``, uint8 class indices ``(H, W)`` or
    ``(N, H, W)`` read at the decision threshold.

    Args:
        model: a U-Net (see `predict_tiled`); needs Keras' TensorFlow
            backend.
        path: the folder; for TF Serving ``<base>/<name>/<version>/``.
        tta: test-time augmentation in the graph (`keras_unet.inference.tta`).
        tile_size: largest input tile, int or ``(rows, cols)``, a valid
            input size; default: the largest within `memory_budget`.
            Smaller images get smaller tiles, computed in the graph.
        batch_size: tiles per model call inside the graph.
        input_dtype: that of ``serving_default``: "uint8", "uint16" or
            "float32".
        mirror: as in `predict_tiled`.
        from_logits: as in `predict_tiled`.
        spec: as in `predict_tiled`.
        memory_budget: bytes per tile batch for the default tile size;
            default `DEFAULT_CPU_MEMORY_BUDGET` (the server is not known).
        overwrite: replace a non-empty folder at `path`.
        threshold: the decision threshold of ``labels`` for a two-class
            (or one-channel) model, on the probability of
            `class_of_interest` (``keras-unet export`` takes the one
            calibrated in training, `keras_unet.training.calibration`); more
            classes use the arg-max.
        class_of_interest: the class `threshold` applies to.

    Returns:
        The `pathlib.Path` of the SavedModel; its ``keras_unet.json``
        describes the export (geometry, tile size, signatures).

    Raises:
        FileExistsError: `path` is a file, or a non-empty folder and
            `overwrite` is False.
        ValueError: invalid `tile_size`, `tta`, `input_dtype`, ...

    Examples:
        >>> import tempfile
        >>> import tensorflow as tf
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> path = f"{tempfile.mkdtemp()}/models/unet/1"
        >>> _ = export_saved_model(model, path)
        >>> serve = tf.saved_model.load(path).signatures["serving_default"]
        >>> serve(image=tf.zeros((300, 517), tf.uint8))["probabilities"].shape
        TensorShape([300, 517, 2])

    Reference:
        Ronneberger, Fischer, Brox. U-Net (MICCAI 2015), Fig. 2.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "export_saved_model needs the TensorFlow backend of Keras. Save "
            "the model (model.save('unet.keras')), then load and export it in "
            "a process started with KERAS_BACKEND=tensorflow. Received: "
            f"backend={keras.backend.backend()!r}"
        )
    import tensorflow as tf

    check_output_folder(
        path,
        METADATA_FILE,
        _exported,
        overwrite,
        "a keras-unet SavedModel export",
    )
    check_choice(input_dtype, "input_dtype", INPUT_DTYPES)
    check_mirror(mirror)
    names = resolve_tta(tta)
    batch_size = check_int(batch_size, "batch_size", 1)
    threshold = check_number(threshold, "threshold", 0.0, 1.0)
    class_of_interest = check_int(class_of_interest, "class_of_interest", 0)
    path = pathlib.Path(path)
    tm = tiling_model.TilingModel.of(model, spec)
    if tm.spec.num_classes == 2 and class_of_interest > 1:
        raise ValueError(
            "`class_of_interest` must be 0 or 1 for a two-class model. "
            f"Received: class_of_interest={class_of_interest}"
        )
    if tile_size is None:
        default = memory_budget is None  # the serving machine is unknown
        budget = (
            tiling_model.DEFAULT_CPU_MEMORY_BUDGET if default else memory_budget
        )
        tile_max = tm.max_tile(budget)
    else:
        tile_max = tm.check_tile(tile_size, any_image=True)
    predict_one = _predict_fn(
        tf, tm, tile_max, batch_size, names, mirror, from_logits
    )
    archive = keras.export.ExportArchive()
    archive.track(tm.model)
    endpoints = {}
    for dtype in INPUT_DTYPES:
        endpoints[dtype] = archive.add_endpoint(
            f"predict_{dtype}",
            _serving_fn(
                tf, predict_one, tm.spec, dtype, (class_of_interest, threshold)
            ),
            input_signature=[tf.TensorSpec(None, dtype, name="image")],
        )
    archive.add_endpoint("serving_default", endpoints[input_dtype])
    g = tm.spec.geometry
    metadata = {
        "format": "keras_unet SavedModel export",
        "model_name": model.name,
        "depth": g.depth,
        "padding": g.padding,
        "margin": g.context,
        "step": g.step,
        "input_channels": tm.spec.input_channels,
        "num_classes": tm.spec.num_classes,
        "tile_size": [int(t) for t in tile_max],
        "batch_size": batch_size,
        "tta": list(names),
        "mirror": mirror,
        "from_logits": bool(from_logits),
        "serving_default_dtype": input_dtype,
        "signatures": {
            "serving_default": f"predict_{input_dtype}",
            **{f"predict_{d}": d for d in INPUT_DTYPES},
        },
        "decision_threshold": threshold,
        "class_of_interest": class_of_interest,
        "input": "image: (H, W), (H, W, C), (N, H, W) or (N, H, W, C)",
        "output": "probabilities: (H, W, K) or (N, H, W, K), float32; "
        "labels: (H, W) or (N, H, W), uint8",
    }
    with atomic_folder(path, overwrite) as tmp:  # checked again at the end
        archive.write_out(str(tmp), verbose=False)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def _exported(entry):
    """Whether `entry` is part of what `export_saved_model` writes."""
    return entry.name in {
        METADATA_FILE,
        "saved_model.pb",
        "fingerprint.pb",
        "variables",
        "assets",
    }
