"""What the command line says when something fails: one line.

`user_message` is the text of an input error (a bare ``[Errno N]`` said
in words, a temporary sibling's path replaced by the user's);
`resource_message` the text of a failure of the machine (full disk,
memory, I/O).
"""

from __future__ import annotations

import errno
import pathlib

__all__ = ["resource_message", "user_message"]


def _shown_path(filename):
    """The path the user gave for a temporary sibling of atomic writes
    (``dir/.name.x1y2.tmp.ext`` -> ``dir/name.ext``)."""
    path = pathlib.Path(str(filename))
    stem, _, rest = path.name[1:].partition(".")
    if path.name.startswith(".") and ".tmp" in rest:
        return str(path.with_name(stem + rest.partition(".tmp")[2]))
    return str(filename)


def user_message(err):
    """The error's text; a bare ``[Errno N] ...: path`` said in words."""
    if isinstance(err, OSError) and err.errno and err.filename:
        kind = {
            errno.EEXIST: "exists and cannot be used as this output",
            errno.ENOTDIR: "is not a folder",
            errno.EISDIR: "is a folder",
        }.get(err.errno, (err.strerror or str(err)).lower())
        return f"{_shown_path(err.filename)} {kind}; choose another path."
    return str(err)


def resource_message(err):
    """One line for a failure of the machine: full disk, memory, I/O."""
    if isinstance(err, MemoryError):
        return (
            f"out of memory ({err or 'MemoryError'}); use a smaller "
            "--tile-size or --batch-size, or a machine with more memory"
        )
    where = f" ({_shown_path(err.filename)})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the device{where}; free space or choose "
            "another output (no file was left half-written)"
        )
    if err.errno == errno.EROFS:
        return f"read-only file system{where}; choose another output"
    return f"{err.strerror or err}{where} ({type(err).__name__})"
