"""One process at a time in a folder: an exclusive lock the system drops."""

from __future__ import annotations

import contextlib
import os
import pathlib
import time

__all__ = ["folder_lock"]


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
