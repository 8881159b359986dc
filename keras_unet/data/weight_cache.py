"""The paper's weight maps, computed once per label image and kept on disk.

`cached_weight_maps` keys every map by the label image's content and the
parameters of `keras_unet.data.weight_maps.unet_weight_map`, so training
never recomputes a map, and a changed label or parameter never reuses one.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import numbers
import os
import pathlib

import numpy as np

from keras_unet.data.weight_maps import unet_weight_map

__all__ = ["cached_weight_maps"]

# Bump when the numbers computed for the same labels and parameters change,
# so that caches written by an older version are not reused.
_CACHE_VERSION = 1


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in np.asarray(value).tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)  # 10 and 10.0 give the same cache entry
    return value


# Taken once, so that the cache key does not depend on later wrapping.
_WEIGHT_MAP_SIGNATURE = inspect.signature(unet_weight_map)


def _weight_map_params(kwargs):
    sig = _WEIGHT_MAP_SIGNATURE
    unknown = set(kwargs) - set(sig.parameters) - {"labels"}
    if unknown or "return_target" in kwargs or "labels" in kwargs:
        bad = sorted(unknown | ({"return_target", "labels"} & set(kwargs)))
        raise TypeError(
            "cached_weight_maps() passes its keyword arguments to "
            f"unet_weight_map(); these are not accepted: {bad}. Received: "
            f"{sorted(kwargs)}"
        )
    bound = sig.bind_partial(None, **kwargs)
    bound.apply_defaults()
    params = dict(bound.arguments)
    del params["labels"], params["return_target"]
    return params


def _source_key(source, key):
    """(human-readable stem, digest of the label's identity)."""
    h = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"No such label file: {path}")
        if key == "content":
            h.update(b"file-content\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        else:
            st = path.stat()
            h.update(
                f"file-stat\0{path.resolve()}\0{st.st_size}\0"
                f"{st.st_mtime_ns}".encode()
            )
        return path.stem, h
    arr = np.ascontiguousarray(np.asarray(source))
    h.update(f"array\0{arr.dtype.str}\0{arr.shape}\0".encode())
    h.update(arr.tobytes())
    return "array", h


def cached_weight_maps(
    labels,
    cache_dir,
    *,
    key: str = "content",
    return_targets: bool = False,
    mmap_mode=None,
    **weight_map_kwargs,
):
    """Compute weight maps once per label and parameters, then reuse them.

    Each label (a file path or an array) gets a cache entry in `cache_dir`
    named ``<stem>.<digest>.weights.npy`` (float32 weight map) and
    ``<stem>.<digest>.target.npy`` (uint8 target, see `unet_weight_map`).
    The digest covers the label's identity, every `unet_weight_map`
    parameter (defaults included) and a version number of this code, so a
    changed label or a changed parameter gives a new entry and the old one
    is never reused. Files are written atomically
    (`keras_unet.io.atomic.atomic_path`): an interrupted run leaves either a
    complete entry or none, and concurrent runs can share a cache folder.
    Old entries are not deleted; remove the folder to reclaim space.

    Args:
        labels: a sequence of label file paths (read with
            `keras_unet.io.images.read_image`) and/or (H, W) label arrays.
        cache_dir: folder for the cache (created if needed).
        key: how a label file is identified: ``"content"`` (default; a
            SHA-256 of the file's bytes, robust to copies and touches) or
            ``"stat"`` (absolute path, size and modification time; no file
            read when the entry exists). Arrays are always hashed by
            content.
        return_targets: return ``(target, weights)`` pairs instead of
            weight maps alone.
        mmap_mode: passed to `numpy.load` (e.g. ``"r"`` to memory-map).
        **weight_map_kwargs: parameters of `unet_weight_map` (``w0``,
            ``sigma``, ``class_weights``, ``label_type``, ...).

    Returns:
        A list with one float32 (H, W) weight map per label, or one
        ``(target, weights)`` pair per label.

    Examples:
        >>> import tempfile
        >>> instances = np.zeros((32, 32), np.int32)
        >>> instances[4:12, 4:12], instances[4:12, 12:20] = 1, 2
        >>> folder = tempfile.mkdtemp()
        >>> [w] = cached_weight_maps([instances], folder, sigma=5.0)
        >>> w.shape, w.dtype
        ((32, 32), dtype('float32'))
    """
    from keras_unet.io.atomic import atomic_path
    from keras_unet.io.images import read_image

    if key not in ("content", "stat"):
        raise ValueError(
            "`key` must be 'content' (hash the label file) or 'stat' (path, "
            f"size and modification time). Received: key={key!r}"
        )
    if isinstance(labels, (str, os.PathLike, np.ndarray)):
        labels = [labels]
    params = _weight_map_params(weight_map_kwargs)
    params_text = json.dumps(
        {k: _jsonable(v) for k, v in params.items()}, sort_keys=True
    )
    cache_dir = pathlib.Path(cache_dir)
    results = []
    for source in labels:
        stem, h = _source_key(source, key)
        h.update(f"\0params\0{params_text}\0v{_CACHE_VERSION}".encode())
        base = f"{stem}.{h.hexdigest()[:24]}"
        w_path = cache_dir / f"{base}.weights.npy"
        t_path = cache_dir / f"{base}.target.npy"
        target = weights = None
        if w_path.is_file() and t_path.is_file():
            try:
                weights = np.load(w_path, mmap_mode=mmap_mode)
                target = np.load(t_path, mmap_mode=mmap_mode)
            except (OSError, ValueError):  # unreadable: recompute
                target = weights = None
        if weights is None:
            arr = (
                read_image(source)
                if isinstance(source, (str, os.PathLike))
                else source
            )
            target, weights = unet_weight_map(arr, return_target=True, **params)
            for path, value in ((t_path, target), (w_path, weights)):
                with atomic_path(path) as tmp:
                    np.save(tmp, value)
        results.append((target, weights) if return_targets else weights)
    return results
