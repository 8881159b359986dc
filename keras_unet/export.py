"""Export a U-Net as a TensorFlow SavedModel that segments images of any size.

The exported graph does everything `keras_unet.tiling.predict_tiled` does:
scaling of integer images, mirror padding (any amount, also for images
smaller than the context margin), overlap-tile prediction with tile offsets
that are multiples of ``2**depth`` (so the result is exact), optional
test-time augmentation, and the soft-max. TensorFlow Serving, `tf.saved_model
.load` and `saved_model_cli` can run it without keras_unet or Keras.

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

__all__ = ["INPUT_DTYPES", "export_saved_model"]

INPUT_DTYPES = ("uint8", "uint16", "float32")
_SCALE = {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0, "float32": None}
METADATA_FILE = "keras_unet.json"


def _tf_mirror_indices(tf, n, before, after, mode):
    """`keras_unet.tiling.mirror_indices` with TensorFlow ops."""
    i = tf.range(-before, n + after)
    if mode == "reflect":
        period = tf.maximum(2 * (n - 1), 1)
        j = tf.math.floormod(i, period)
        j = tf.where(j >= n, period - j, j)
        return tf.where(n == 1, tf.zeros_like(j), j)
    period = 2 * n
    j = tf.math.floormod(i, period)
    return tf.where(j >= n, period - 1 - j, j)


def _tf_dihedral(tf, x, name, inverse=False):
    """`keras_unet.tiling.dihedral_transform` on (H, W, ...) tensors."""
    if inverse:
        name = tiling._INVERSE[name]
    transpose, flip_rows, flip_cols = tiling.TTA_TRANSFORMS[name]
    if transpose:
        x = tf.transpose(x, [1, 0, 2])
    if flip_rows:
        x = tf.reverse(x, [0])
    if flip_cols:
        x = tf.reverse(x, [1])
    return x


def _make_predict_fn(tf, model, geo, tile_max, batch_size, names, mirror,
                     from_logits):  # fmt: skip
    """A function (H, W, C) float32 -> (H, W, K) probabilities, in TF ops."""
    m, s, n_min, r = geo.margin, geo.step, geo.n_min, geo.overlap
    crop, classes, channels = geo.crop, geo.classes, geo.channels

    def round_up(v):
        return tf.where(v <= n_min, n_min, n_min + (v - n_min + s - 1) // s * s)

    def axis_plan(n, t_max):
        """Same arithmetic as tiling._balanced_tile and tiling._axis_plan."""
        if geo.fixed is None:
            t_max = tf.minimum(t_max, round_up(n + 2 * m))
        else:
            t_max = tf.constant(t_max)
        out_max = t_max - 2 * m
        stride_max = tf.maximum(out_max - out_max % s, 1)
        count = tf.where(
            n <= out_max, 1, 1 + (n - out_max + stride_max - 1) // stride_max
        )
        if geo.fixed is None:
            need = (n + (count - 1) * r + count - 1) // count
            tile = tf.minimum(round_up(need + 2 * m), t_max)
        else:
            tile = t_max
        out = tile - 2 * m
        stride = out - out % s
        padded = (count - 1) * stride + tile
        return tile, out, tf.maximum(stride, 1), count, padded - n - m

    def logits_fn(x):
        shape = tf.shape(x)
        h, w = shape[0], shape[1]
        th, oh, sh, ch, bottom = axis_plan(h, tile_max[0])
        tw, ow, sw, cw, right = axis_plan(w, tile_max[1])
        rows = _tf_mirror_indices(tf, h, m, bottom, mirror)
        cols = _tf_mirror_indices(tf, w, m, right, mirror)
        padded = tf.gather(tf.gather(x, rows, axis=0), cols, axis=1)
        n = ch * cw
        # Batches of equal size; the slots past the last tile repeat it.
        calls = (n + batch_size - 1) // batch_size
        per_call = (n + calls - 1) // calls

        def run_call(k):
            # Cut this call's tiles only (all tiles at once would hold the
            # image about (tile / stride)**2 times in memory).
            ids = tf.minimum(k * per_call + tf.range(per_call), n - 1)
            r_idx = (ids // cw * sh)[:, None] + tf.range(th)[None, :]
            c_idx = (ids % cw * sw)[:, None] + tf.range(tw)[None, :]
            tiles = tf.gather(padded, r_idx, axis=0)  # (b, th, Pw, C)
            tiles = tf.gather(tiles, c_idx, axis=2, batch_dims=1)
            tiles = tf.ensure_shape(tiles, [None, None, None, channels])
            return tf.cast(model(tiles, training=False), tf.float32)

        # parallel_iterations=1: one batch of tiles in memory at a time.
        out = tf.map_fn(
            run_call,
            tf.range(calls),
            fn_output_signature=tf.TensorSpec(
                [None, None, None, classes], tf.float32
            ),
            parallel_iterations=1,
        )
        out = tf.reshape(out, [calls * per_call, -1, tf.shape(out)[3],
                               classes])[:n]  # fmt: skip
        if crop:
            out = out[:, crop:-crop, crop:-crop]
        out = tf.reshape(out, [ch, cw, oh, ow, classes])
        out = tf.transpose(out, [0, 2, 1, 3, 4])
        out = tf.reshape(out, [ch * oh, cw * ow, classes])
        # Output pixel y comes from tile i = min(y // stride, count - 1),
        # row y - i * stride of that tile's output (as in tile_iterator).
        yy, xx = tf.range(h), tf.range(w)
        iy = tf.minimum(yy // sh, ch - 1)
        ix = tf.minimum(xx // sw, cw - 1)
        out = tf.gather(out, iy * oh + yy - iy * sh, axis=0)
        return tf.gather(out, ix * ow + xx - ix * sw, axis=1)

    def activate(logits):
        if not from_logits:
            return logits
        if classes == 1:
            return tf.sigmoid(logits)
        return tf.nn.softmax(logits, axis=-1)

    def predict_one(x):
        total = None
        for name in names:
            p = activate(logits_fn(_tf_dihedral(tf, x, name)))
            p = _tf_dihedral(tf, p, name, inverse=True)
            total = p if total is None else total + p
        if len(names) > 1:
            total = total / float(len(names))
        return total

    # One traced graph shared by all signatures (traced once, stored once).
    return tf.function(
        predict_one,
        input_signature=[tf.TensorSpec([None, None, channels], tf.float32)],
        autograph=False,
    )


def _make_serving_fn(tf, predict_one, geo, dtype):
    channels, classes = geo.channels, geo.classes
    scale = _SCALE[dtype]

    def serve(image):
        rank = tf.rank(image)
        checks = [
            tf.debugging.assert_greater_equal(
                rank, 2,
                message="`image` must have shape (H, W), (H, W, C), (N, H, W) "
                "or (N, H, W, C).",
            ),
            tf.debugging.assert_less_equal(
                rank, 4,
                message="`image` must have shape (H, W), (H, W, C), (N, H, W) "
                "or (N, H, W, C).",
            ),
        ]  # fmt: skip
        # Every op below waits for the rank checks, so that a bad rank gets
        # the message above and not a failure of some shape computation.
        with tf.control_dependencies(checks):
            shape = tf.shape(image)
            ones = tf.ones([4 - tf.clip_by_value(rank, 2, 4)], tf.int32)
            padded = tf.concat([ones, shape], 0)
            last = shape[-1]
            is_batch3 = tf.logical_and(
                tf.equal(rank, 3), tf.not_equal(last, channels)
            )
            if channels != 1:
                is_batch3 = tf.logical_and(is_batch3, False)
            shape4 = tf.where(
                tf.equal(rank, 2),
                tf.stack([1, padded[2], padded[3], 1]),
                tf.where(
                    is_batch3,
                    tf.stack([padded[1], padded[2], padded[3], 1]),
                    padded,
                ),
            )
            batched = tf.logical_or(tf.equal(rank, 4), is_batch3)
            checks = [
                tf.debugging.assert_equal(
                    shape4[3], channels,
                    message=f"The model expects images with {channels} "
                    f"channel(s) in the last axis"
                    + (" (or (H, W) grey images)" if channels == 1 else ""),
                ),
                tf.debugging.assert_greater(
                    tf.reduce_prod(shape4), 0,
                    message="The image is empty (it has no pixels).",
                ),
            ]  # fmt: skip
        with tf.control_dependencies(checks):
            x = tf.reshape(image, shape4)
        x = tf.ensure_shape(x, [None, None, None, channels])
        if scale is None:
            x = tf.debugging.assert_all_finite(
                tf.cast(x, tf.float32),
                "The image has NaN or infinite pixels; replace them before "
                "segmenting.",
            )
        else:
            x = tf.cast(x, tf.float32) * scale
        out = tf.map_fn(
            predict_one,
            x,
            parallel_iterations=1,
            fn_output_signature=tf.TensorSpec(
                [None, None, classes], tf.float32
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
    depth=None,
    padding=None,
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
            `keras_unet.tiling.resolve_tta`); None for none.
        tile_size: largest input tile, int or ``(rows, cols)``, a valid
            input size of the model. Default: the largest tile whose
            activations fit `memory_budget`. Smaller images get smaller
            tiles, computed in the graph.
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
        depth: override passed to `keras_unet.inspect_unet`.
        padding: override passed to `keras_unet.inspect_unet`.

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

    if input_dtype not in INPUT_DTYPES:
        raise ValueError(
            f"`input_dtype` must be one of {INPUT_DTYPES}. "
            f"Received: input_dtype={input_dtype!r}"
        )
    tiling._check_mode(mirror)
    names = tiling.resolve_tta(tta)
    batch_size = tiling._check_int(batch_size, "batch_size", 1)
    path = pathlib.Path(path)
    _check_target(path, overwrite)

    flexible, geo = tiling._prepare(model, depth, padding)
    if geo.fixed is not None:
        tile_max = geo.fixed
        if tile_size is not None:
            tiling._check_tile_size(geo, tile_size)
    elif tile_size is None:
        budget = (
            tiling.DEFAULT_CPU_MEMORY_BUDGET
            if memory_budget is None
            else tiling._check_budget(memory_budget)
        )
        act = tiling._activation_model(flexible, geo)
        big = (tiling._MAX_TILE,) * 2
        tile_max = tiling._auto_tile(
            geo, act, tiling._itemsize(flexible), big, budget
        )
    else:
        tile_max = tiling._check_tile_size(geo, tile_size)
    if geo.fixed is None:
        for t in tile_max:
            if t < geo.min_tiling_size:
                raise ValueError(
                    f"tile_size {t} is too small to tile large images: its "
                    f"output is less than the {geo.step} px offset step; use "
                    f"at least {geo.min_tiling_size}. "
                    f"Received: tile_size={tile_size!r}"
                )
    predict_one = _make_predict_fn(
        tf, flexible, geo, tuple(int(t) for t in tile_max), batch_size, names,
        mirror, from_logits,
    )  # fmt: skip

    archive = keras.export.ExportArchive()
    archive.track(flexible)
    endpoints = {}
    for dtype in INPUT_DTYPES:
        spec = tf.TensorSpec(None, getattr(tf, dtype), name="image")
        endpoints[dtype] = archive.add_endpoint(
            f"predict_{dtype}",
            _make_serving_fn(tf, predict_one, geo, dtype),
            input_signature=[spec],
        )
    archive.add_endpoint("serving_default", endpoints[input_dtype])

    metadata = {
        "format": "keras_unet SavedModel export",
        "model_name": model.name,
        "depth": geo.depth,
        "padding": geo.padding,
        "margin": geo.margin,
        "step": geo.step,
        "input_channels": geo.channels,
        "num_classes": geo.classes,
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
    return path
