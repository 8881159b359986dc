"""Reading and writing images, and the one place images become floats.

Every entry point of keras_unet (training pipeline, tiled prediction, the
exported SavedModel, the CLI) converts images with `to_float_image`, so a
model always sees the same value range it was trained on.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "atomic_path",
    "read_image",
    "to_float_image",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def to_float_image(image) -> np.ndarray:
    """Convert an image to float32, scaling integer types to [0, 1].

    uint8 is divided by 255 and uint16 by 65535 (other integer types by their
    maximum); bool becomes 0/1; float images are kept as they are (float32).

    Raises:
        ValueError: on an empty image or NaN/inf pixels.
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"The image is empty. Received: shape={image.shape}")
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            "Expected an integer, bool or float image. "
            f"Received: dtype={image.dtype}"
        )
    image = image.astype(np.float32, copy=False)
    if not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise ValueError(
            f"The image has {bad} NaN or infinite pixel(s); replace them (e.g. "
            "numpy.nan_to_num) before segmenting."
        )
    return image


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; move it into place on success.

    The temporary file keeps the suffix of `path` (so writers that pick the
    format from the extension work). If the block raises, the temporary file
    is removed and an existing file at `path` is left untouched.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = pathlib.Path(tmp)
    try:
        yield tmp
        if tmp.is_file():  # mkstemp makes 0600 files; use the usual mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_image(path) -> np.ndarray:
    """Read an image file as stored (no scaling): PNG/JPEG/BMP/TIFF.

    TIFF files are read with tifffile (any bit depth, float TIFFs included);
    the others with OpenCV. Colour images are returned as RGB (H, W, 3).
    """
    import cv2

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such image file: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(
            f"Could not read {path} as an image (unknown format?)."
        )
    if image.ndim == 3 and image.shape[-1] == 3:
        image = image[..., ::-1]
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(image)


def write_image(path, image) -> pathlib.Path:
    """Write an image atomically: TIFF via tifffile, others via OpenCV.

    ``image`` is RGB when it has 3 channels. A crash never leaves a
    half-written file at `path`.
    """
    import cv2

    path = pathlib.Path(path)
    image = np.asarray(image)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, image)
        else:
            if image.ndim == 3 and image.shape[-1] == 3:
                image = image[..., ::-1]
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(image)):
                raise ValueError(f"OpenCV could not write {path}")
    return path
