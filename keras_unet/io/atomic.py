"""Atomic writes, and output folders that never replace a user's files.

A file or folder is written under a temporary sibling name and renamed
into place when complete, so a crash or a kill never leaves it half
written; an existing output is replaced only when it is an earlier output
of the same command (`check_output_folder`).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile

__all__ = [
    "atomic_folder",
    "atomic_path",
    "check_output_folder",
    "remove_temporaries",
]


def _read_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask is process-global


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


def remove_temporaries(folder, stems):
    """Delete the temporary files `atomic_path` left in `folder` for files
    named `stems` when a write was killed (``.<stem>.<random>.tmp<ext>``).

    Call it only while holding `folder_lock`, so no write is in progress.
    """
    for path in pathlib.Path(folder).iterdir():
        stem = path.name[1:].split(".", 1)[0]
        if path.name.startswith(".") and ".tmp" in path.name and stem in stems:
            path.unlink()
