"""Reading and writing images, and the one place images become floats.

Every entry point of keras_unet (training pipeline, tiled prediction, the
exported SavedModel, the CLI) converts images with `to_float_image`, so a
model always sees the same value range it was trained on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
import tempfile
import time

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "atomic_folder",
    "atomic_path",
    "check_output_folder",
    "files_by_stem",
    "folder_lock",
    "list_files",
    "read_array",
    "read_image",
    "remove_temporaries",
    "to_float_image",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _read_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask is process-global


def to_float_image(image) -> np.ndarray:
    """Convert an image to float32, scaling integer types to [0, 1].

    uint8 is divided by 255 and uint16 by 65535; bool becomes 0/1; float
    images are kept as they are (float32). Other integer types (int8,
    int16, int32, int64, uint32, ...) are refused: their range says nothing
    about the data (``np.array([[0, 128, 255]])`` is int64), so dividing by
    the type's maximum would silently give an almost black image.

    Raises:
        ValueError: on an empty image, NaN/inf pixels or an ambiguous
            integer type.
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"The image is empty. Received: shape={image.shape}")
    if image.dtype == bool:
        return image.astype(np.float32)
    if image.dtype in (np.uint8, np.uint16):
        return image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    if np.issubdtype(image.dtype, np.integer):
        raise ValueError(
            f"Images of dtype {image.dtype} are ambiguous: keras_unet scales "
            "uint8 by 1/255 and uint16 by 1/65535 and keeps floats as they "
            "are. Convert first, e.g. image.astype(np.uint8) for 0-255 data, "
            "image.astype(np.uint16) for 16-bit data, or to float32 in the "
            f"range you train with. Received: dtype={image.dtype}"
        )
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
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files
            with open(tmp, "rb") as f:  # on disk before it replaces `path`
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_folder_target(path, overwrite):
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"{path} exists and is not a directory; choose another path. "
            f"Received: path={str(path)!r}"
        )
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{path} exists and is not empty; pass overwrite=True to replace "
            "it, or write to a new folder (TF Serving layout: "
            f"<base>/<model name>/<version>/). Received: path={str(path)!r}"
        )


def check_output_folder(path, marker, ours, overwrite, holds):
    """Refuse an output folder whose replacement would lose the user's work.

    An absent or empty folder is fine. A folder replaced with `overwrite`
    must be an earlier output of the same command: it holds the `marker`
    file and only entries for which ``ours(entry)`` is true. Anything else
    is the user's (data, a run, notes) and is never replaced.

    Args:
        holds: what the folder holds, for the message (e.g. "a SavedModel
            export").

    Raises:
        FileExistsError: naming the folder and what to do.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"{path} exists and is not a directory; choose another output path."
        )
    if not path.is_dir() or not any(path.iterdir()):
        return
    foreign = sorted(p.name for p in path.iterdir() if not ours(p))
    if not (path / marker).is_file() or foreign:
        shown = ", ".join(foreign[:3]) or f"no {marker}"
        raise FileExistsError(
            f"{path} is not empty and is not {holds} ({shown}); it is never "
            "replaced: choose a new output folder (nothing was changed)."
        )
    if not overwrite:
        raise FileExistsError(
            f"{path} already holds {holds}; choose a new output folder, or "
            "pass --overwrite (overwrite=True) to replace it."
        )


@contextlib.contextmanager
def atomic_folder(path, overwrite=False):
    """Yield a temporary folder next to `path`; rename it into place.

    A folder is never seen half-written: the block writes into the
    temporary folder, which replaces `path` only when the block succeeds.
    A non-empty folder at `path` is refused unless `overwrite` (it is then
    moved aside, and restored if the final rename fails).

    Raises:
        FileExistsError: `path` is a file, or a non-empty folder and
            `overwrite` is False (checked before and after the block).
    """
    path = pathlib.Path(path)
    _check_folder_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(
        tempfile.mkdtemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    )
    old = tmp.with_suffix(".old")
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private (0700)
    try:
        yield tmp
        _check_folder_target(path, overwrite)  # it may have appeared since
        if path.exists():
            os.replace(path, old)  # waits here, restored if the rename fails
        os.replace(tmp, path)
    except BaseException:
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def folder_lock(folder, what="keras-unet run"):
    """Hold an exclusive lock on `folder` (its ``.lock`` file) in the block.

    The operating system drops the lock when the process ends, however it
    ends, so a killed run never leaves a stale lock behind. On systems
    without ``fcntl`` (Windows) the block runs unlocked.

    Raises:
        FileExistsError: another process holds the lock (it is named).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = pathlib.Path(folder) / ".lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FileExistsError(
            f"{folder} is in use by another {what} ({holder}); wait for it "
            "to end or choose another output folder."
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def remove_temporaries(folder, stems):
    """Delete the temporary files `atomic_path` left in `folder` for files
    named `stems` when a write was killed (``.<stem>.<random>.tmp<ext>``).

    Call it only while holding `folder_lock`, so no write is in progress.
    """
    for path in pathlib.Path(folder).iterdir():
        stem = path.name[1:].split(".", 1)[0]
        if path.name.startswith(".") and ".tmp" in path.name and stem in stems:
            path.unlink()


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


def list_files(folder, suffixes=IMAGE_SUFFIXES) -> list:
    """The files of `folder` with one of `suffixes` (any case), sorted.

    Hidden files (names starting with ".", e.g. our own temporary files)
    are skipped.
    """
    return sorted(
        p
        for p in pathlib.Path(folder).iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix.lower() in suffixes
    )


def files_by_stem(files, folder, what="image") -> dict:
    """Map file stems to files; two files with one stem are an error.

    keras_unet pairs images with masks, labels and predictions by name
    stem, so ``a.png`` beside ``a.tif`` would be ambiguous.
    """
    found = {}
    for path in files:
        if path.stem in found:
            raise ValueError(
                f"Two {what} files in {folder} share a name stem "
                f"{path.stem!r} (same name stem): {found[path.stem].name} "
                f"and {path.name}; files are matched by stem, keep one. "
                f"Received: {found[path.stem].name}, {path.name}"
            )
        found[path.stem] = path
    return found
