"""The files of a folder: the one listing of images, and pairing by stem.

keras_unet pairs images with masks, labels and predictions by file-name
stem; hidden files (names starting with ".", e.g. temporaries of atomic
writes) are never listed.
"""

from __future__ import annotations

import pathlib

from keras_unet.io.images import ARRAY_SUFFIXES, IMAGE_SUFFIXES

__all__ = ["files_by_stem", "list_files", "list_images", "require_folder"]


def list_files(folder, suffixes=IMAGE_SUFFIXES, what="image") -> list:
    """The files of `folder` with one of `suffixes` (any case), sorted.

    Hidden files (names starting with ".", e.g. our own temporary files)
    are skipped.

    Raises:
        NotADirectoryError: `folder` is a file (the message names its
            folder, the likely meaning).
        FileNotFoundError: `folder` does not exist.
    """
    folder = pathlib.Path(folder)
    if folder.is_file():
        raise NotADirectoryError(
            f"{folder} is a file; give the folder of {what}s (e.g. "
            f"{folder.parent})."
        )
    if not folder.is_dir():
        raise FileNotFoundError(f"The {what} folder does not exist: {folder}")
    return sorted(
        p
        for p in folder.iterdir()
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


def list_images(path):
    """Image files of a folder (sorted), or the one file `path`."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"No such file or folder: {path}")
    files = list_files(path, ARRAY_SUFFIXES)
    if not files:
        raise FileNotFoundError(
            f"{path} holds no images ({', '.join(ARRAY_SUFFIXES)})."
        )
    return files


def require_folder(path, expected):
    """`path` as a `pathlib.Path` if it is a folder, else FileNotFoundError
    saying what was expected there."""
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder. Expected {expected}.")
    return path
