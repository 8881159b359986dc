"""Export a U-Net as a TensorFlow SavedModel that segments images of any size.

The exported graph does what `keras_unet.tiling.predict_tiled` does, with
the same functions: the tile plan of `keras_unet.tiling` (`balanced_tile`,
`plan_axis`, `mirror_index`, `tile_of_pixel`) and the transforms of
`keras_unet.tta` are evaluated on tensors, from the image's dynamic height
and width. So it scales integer images, mirror-pads them by any amount,
predicts tiles at offsets that are multiples of ``2**depth`` (exact), and
applies the optional test-time augmentation and the soft-max. TensorFlow
Serving, `tf.saved_model.load` and `saved_model_cli` run it without
keras_unet or Keras.

Signatures (all take one input named ``image`` and return one output named
``probabilities``):

- ``serving_default``: the signature of `input_dtype` (uint8 by default),
- ``predict_uint8``: uint8 images, scaled by 1/255,
- ``predict_uint16``: uint16 images, scaled by 1/65535,
- ``predict_float32``: float32 images, used as they are (NaN/inf rejected).

Accepted image shapes (C = the model's input channels, K = its classes):

====================  ==========================  ===================
input                 read as                     output
====================  ==========================  ===================
``(H, W)``            one grey image (C = 1)       ``(H, W, K)``
``(H, W, C)``         one image                    ``(H, W, K)``
``(N, H, W)``         N grey images (C = 1; only   ``(N, H, W, K)``
                      when W != 1, else (H, W, C))
``(N, H, W, C)``      N images of the same size    ``(N, H, W, K)``
====================  ==========================  ===================

TensorFlow Serving's REST "instances" format adds the batch axis: one
instance of shape (H, W) arrives as (1, H, W) and returns (1, H, W, K).
See docs/serving.md for request examples.

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015 (Fig. 2: overlap-tile strategy).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

from keras_unet import tiling
from keras_unet.checks import check_choice, check_int
from keras_unet.tta import average_over_transforms, resolve_tta

__all__ = ["INPUT_DTYPES", "METADATA_FILE", "export_saved_model"]

INPUT_DTYPES = ("uint8", "uint16", "float32")
METADATA_FILE = "keras_unet.json"
_SHAPES = (
    "`image` must have shape (H, W), (H, W, C), (N, H, W) or (N, H, W, C)."
)


def _predict_fn(tf, tm, tile_max, batch_size, names, mirror, from_logits):
    """`predict_tiled` of one (H, W, C) float32 image, as a tf.function."""
    g, ctx = tm.spec.geometry, tm.spec.geometry.context
    channels, k = tm.spec.input_channels, tm.spec.num_classes

    def plan(n, t_max):  # tiling's plan along one axis, on tensors
        tile = t_max if tm.fixed else tiling.balanced_tile(n, t_max, g, tf)
        return (tile, *tiling.plan_axis(n, tile, ctx, g.step, tf))

    def logits(x):
        h, w = tf.shape(x)[0], tf.shape(x)[1]
        th, ch, sh, bottom = plan(h, tile_max[0])
        tw, cw, sw, right = plan(w, tile_max[1])
        rows = tiling.mirror_index(tf.range(-ctx, h + bottom), h, mirror, tf)
        cols = tiling.mirror_index(tf.range(-ctx, w + right), w, mirror, tf)
        padded = tf.gather(tf.gather(x, rows), cols, axis=1)
        n = ch * cw
        calls, per_call = tiling.balanced_batch(batch_size, n)

        def call(i):  # one batch of tiles (slots past the last repeat it)
            ids = tf.minimum(i * per_call + tf.range(per_call), n - 1)
            r = (ids // cw * sh)[:, None] + tf.range(th)[None]
            c = (ids % cw * sw)[:, None] + tf.range(tw)[None]
            tiles = tf.gather(tf.gather(padded, r), c, axis=2, batch_dims=1)
            tiles = tf.ensure_shape(tiles, [None, None, None, channels])
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
        ty, y = tiling.tile_of_pixel(tf.range(h), sh, ch, tf)
        tx, x = tiling.tile_of_pixel(tf.range(w), sw, cw, tf)
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
    checks = [
        tf.debugging.assert_greater_equal(rank, 2, message=_SHAPES),
        tf.debugging.assert_less_equal(rank, 4, message=_SHAPES),
    ]
    # Every op below waits for the rank checks, so that a bad rank gets the
    # message above and not a failure of some shape computation.
    with tf.control_dependencies(checks):
        shape = tf.shape(image)
        ones = tf.ones([4 - tf.clip_by_value(rank, 2, 4)], tf.int32)
        padded = tf.concat([ones, shape], 0)  # rank 4, leading ones
        batch3 = tf.logical_and(
            tf.equal(rank, 3), tf.not_equal(shape[-1], channels)
        )
        batch3 = tf.logical_and(batch3, channels == 1)  # (N, H, W) grey
        shape4 = tf.where(
            tf.equal(rank, 2),
            tf.stack([1, padded[2], padded[3], 1]),
            tf.where(batch3, tf.concat([padded[1:], [1]], 0), padded),
        )
        grey = " (or (H, W) grey images)" if channels == 1 else ""
        checks = [
            tf.debugging.assert_equal(
                shape4[3],
                channels,
                message=f"The model expects images with {channels} "
                f"channel(s) in the last axis{grey}",
            ),
            tf.debugging.assert_greater(
                tf.reduce_prod(shape4),
                0,
                message="The image is empty (it has no pixels).",
            ),
        ]
    with tf.control_dependencies(checks):
        x = tf.reshape(image, shape4)
    batched = tf.logical_or(tf.equal(rank, 4), batch3)
    return tf.ensure_shape(x, [None, None, None, channels]), batched


def _serving_fn(tf, predict_one, spec, dtype):
    """The signature of one input dtype: scale, predict each image, rank."""

    def serve(image):
        x, batched = _as_batch(tf, image, spec.input_channels)
        if dtype == "float32":
            x = tf.debugging.assert_all_finite(
                x,
                "The image has NaN or infinite pixels; replace them before "
                "segmenting.",
            )
        else:  # as keras_unet.io.to_float_image
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
        return {"probabilities": out}

    return serve


def _check_target(path, overwrite):
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"{path} exists and is not a directory; choose another path. "
            f"Received: path={str(path)!r}"
        )
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{path} exists and is not empty; pass overwrite=True to replace "
            "it, or export to a new version folder (TF Serving layout: "
            f"<base>/<model name>/<version>/). Received: path={str(path)!r}"
        )


def _write_atomically(archive, metadata, path, overwrite):
    """Write into a temporary folder next to `path`, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(
        tempfile.mkdtemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    )
    # mkdtemp makes the folder private (0700); a SavedModel must be readable
    # by the serving process (often another user, e.g. in Docker).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    old = None
    try:
        archive.write_out(str(tmp), verbose=False)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        _check_target(path, overwrite)  # again: it may have appeared since
        if path.exists():
            old = tmp.with_suffix(".old")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                old = None
                raise
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


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
):
    """Write a SavedModel that segments one image of any size, for TF Serving.

    The graph scales the image (uint8 / 255, uint16 / 65535, float32 as it
    is), mirror-pads it, runs the overlap-tile prediction with tile offsets
    that are multiples of ``2**depth`` (tiles batched with `tf.map_fn`),
    applies the optional test-time augmentation and the soft-max (sigmoid
    for one class), and returns the probability map of the image's size.
    Its result equals `keras_unet.tiling.predict_tiled` with the same
    `tta` and `mirror` to float round-off.

    The directory is written atomically: the SavedModel is built in a
    temporary folder next to `path` and renamed into place, so a crash
    never leaves a half-written model at `path`.

    Args:
        model: a U-Net (see `keras_unet.tiling.predict_tiled`). Needs the
            TensorFlow backend of Keras.
        path: the SavedModel directory. For TensorFlow Serving use
            ``<base>/<model name>/<version>/``, e.g. ``models/unet/1``.
        tta: test-time augmentation baked into the graph (see
            `keras_unet.tta.resolve_tta`); None for none.
        tile_size: largest input tile, int or ``(rows, cols)``, a valid
            input size of the model. Default: the largest tile within
            `memory_budget` (`keras_unet.tiling.max_tile_size`). Smaller
            images get smaller tiles, computed in the graph.
        batch_size: tiles per model call inside the graph.
        input_dtype: dtype of the ``serving_default`` signature: "uint8"
            (default), "uint16" or "float32". The signatures
            ``predict_uint8``, ``predict_uint16`` and ``predict_float32``
            are always exported.
        mirror: "reflect" or "symmetric" (as in `predict_tiled`).
        from_logits: apply the soft-max/sigmoid (False if the model already
            outputs probabilities).
        memory_budget: bytes of activation memory per tile batch used to
            choose the default tile size; default
            `keras_unet.tiling.DEFAULT_CPU_MEMORY_BUDGET` (2 GiB), since the
            serving machine is not known here.
        overwrite: replace an existing non-empty directory at `path`.
        spec: a `keras_unet.model.UNetSpec` for a model whose geometry
            cannot be inferred (as in `predict_tiled`).

    Returns:
        The `pathlib.Path` of the SavedModel. It also holds
        ``keras_unet.json`` describing the export (geometry, tile size,
        signatures).

    Raises:
        FileExistsError: `path` is a non-empty directory and `overwrite` is
            False, or a file.
        ValueError: invalid `tile_size`, `tta`, `input_dtype`, ...

    Examples:
        >>> import tempfile
        >>> import tensorflow as tf
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> path = f"{tempfile.mkdtemp()}/models/unet/1"
        >>> _ = export_saved_model(model, path)
        >>> served = tf.saved_model.load(path)
        >>> image = tf.zeros((300, 517), tf.uint8)
        >>> serve = served.signatures["serving_default"]
        >>> serve(image=image)["probabilities"].shape
        TensorShape([300, 517, 2])

    Reference:
        Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for
        Biomedical Image Segmentation. MICCAI 2015 (Fig. 2).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "export_saved_model needs the TensorFlow backend of Keras. Save "
            "the model (model.save('unet.keras')), then load and export it in "
            "a process started with KERAS_BACKEND=tensorflow. Received: "
            f"backend={keras.backend.backend()!r}"
        )
    import tensorflow as tf

    check_choice(input_dtype, "input_dtype", INPUT_DTYPES)
    tiling.check_mirror(mirror)
    names = resolve_tta(tta)
    batch_size = check_int(batch_size, "batch_size", 1)
    path = pathlib.Path(path)
    _check_target(path, overwrite)
    tm = tiling.prepare_model(model, spec)
    if tile_size is None:
        default = memory_budget is None  # the serving machine is unknown
        budget = tiling.DEFAULT_CPU_MEMORY_BUDGET if default else memory_budget
        tile_max = tiling.max_tile_size(tm, budget)
    else:
        tile_max = tiling.check_tile_size(tm, tile_size, any_image=True)
    predict_one = _predict_fn(
        tf, tm, tile_max, batch_size, names, mirror, from_logits
    )
    archive = keras.export.ExportArchive()
    archive.track(tm.model)
    endpoints = {}
    for dtype in INPUT_DTYPES:
        endpoints[dtype] = archive.add_endpoint(
            f"predict_{dtype}",
            _serving_fn(tf, predict_one, tm.spec, dtype),
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
        "input": "image: (H, W), (H, W, C), (N, H, W) or (N, H, W, C)",
        "output": "probabilities: (H, W, K) or (N, H, W, K), float32",
    }
    _write_atomically(archive, metadata, path, overwrite)
    return path
