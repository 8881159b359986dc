"""The optional extras: import one of their modules, or say how to install it.

keras_unet's core needs Keras, NumPy, SciPy, OpenCV and tifffile. Larger-
than-memory prediction needs the ``[dask]`` extra and the BioImage Model Zoo
export the ``[bioimageio]`` extra; they are imported only when used, and a
missing one is one `ImportError` naming the ``pip`` command.
"""

from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "import_extra"]

#: What each extra is for, and its install command.
EXTRAS = {
    "dask": (
        "larger-than-memory prediction",
        'pip install "keras-unet-paper[dask]"',
    ),
    "bioimageio": (
        "the BioImage Model Zoo export",
        'pip install "keras-unet-paper[bioimageio]"',
    ),
}


def import_extra(module, extra):
    """`module`, or an ImportError naming the extra that provides it.

    Args:
        module: the module's dotted name, e.g. ``"dask.array"``.
        extra: its extra, a key of `EXTRAS`.

    Examples:
        >>> import_extra("dask.array", "dask").__name__
        'dask.array'
    """
    purpose, command = EXTRAS[extra]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is needed for {purpose}; install it with `{command}`. "
            f"Received: ImportError: {err}"
        ) from err
