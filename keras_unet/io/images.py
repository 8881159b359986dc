"""Reading and writing image files (PNG, JPEG, BMP, TIFF, NumPy ``.npy``).

Images are read as stored, without scaling: `keras_unet.data.normalize`
turns them into the floats a model sees. Writes are atomic.
"""

from __future__ import annotations

import errno
import pathlib
import shutil

import numpy as np

from keras_unet.io.atomic import atomic_path

__all__ = [
    "ARRAY_SUFFIXES",
    "IMAGE_SUFFIXES",
    "read_array",
    "read_image",
    "write_image",
]


IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: What `read_array` reads: images and NumPy ``.npy`` arrays.
ARRAY_SUFFIXES = (*IMAGE_SUFFIXES, ".npy")


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
        return _read_tiff(path)
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


def _read_tiff(path):
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except (ValueError, OSError, EOFError, IndexError, KeyError) as err:
        raise ValueError(
            f"Could not read {path} as a TIFF (damaged or truncated? "
            f"tifffile: {err}); replace or remove the file."
        ) from err


def write_image(path, image) -> pathlib.Path:
    """Write an image atomically: TIFF via tifffile, others via OpenCV.

    ``image`` is RGB when it has 3 channels. A crash never leaves a
    half-written file at `path`.
    """
    import cv2

    path = pathlib.Path(path)
    image = np.asarray(image)
    tiff = path.suffix.lower() in (".tif", ".tiff")
    if not tiff and image.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"Cannot write {image.dtype} data to {path.name} without losing "
            "it (PNG/JPEG hold 8- or 16-bit integers): write a .tif, or "
            "convert, e.g. (probabilities * 255).astype(np.uint8)."
        )
    with atomic_path(path) as tmp:
        if tiff:
            import tifffile

            tifffile.imwrite(tmp, image)
        else:
            if image.ndim == 3 and image.shape[-1] == 3:
                image = image[..., ::-1]
            elif image.ndim == 3 and image.shape[-1] == 4:
                image = image[..., [2, 1, 0, 3]]
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(image)):
                free = shutil.disk_usage(path.parent).free
                raise OSError(
                    errno.ENOSPC if free < 2**20 else errno.EIO,
                    "OpenCV could not write the image (disk full?)",
                    str(path),
                )
    return path


def read_array(path) -> np.ndarray:
    """Read an image file (`read_image`) or a NumPy ``.npy`` file."""
    path = pathlib.Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"No such file: {path}")
        return np.load(path, allow_pickle=False)
    return read_image(path)
