"""Which Keras backend the command line uses, and TensorFlow imported quietly.

Keras takes ``KERAS_BACKEND``, else ``keras.json``, else TensorFlow;
`choose_backend` picks an installed one when that is not, and
`quiet_tensorflow` keeps TensorFlow's start-up chatter off the terminal.
"""

from __future__ import annotations

import os
import pathlib
import sys

__all__ = ["choose_backend", "quiet_tensorflow"]


def quiet_tensorflow():
    """Import TensorFlow without its C++ start-up chatter on stderr.

    TF 2.21 logs several lines (oneDNN, CUDA probing) before its log level
    is read, so the import runs with file descriptor 2 pointed at a
    temporary file; the text is shown if the import fails. Set
    KERAS_UNET_VERBOSE=1 to see everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_UNET_VERBOSE") or "tensorflow" in sys.modules:
        return
    if choose_backend() != "tensorflow":
        return  # TensorFlow is imported only where it is needed
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device probing logs too
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _installed(name):
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def choose_backend():
    """The Keras backend to use; JAX or PyTorch when TensorFlow is absent.

    Keras takes KERAS_BACKEND, else ``keras.json``, else TensorFlow. When
    that backend is not installed, KERAS_BACKEND is set to one that is,
    instead of failing on ``import keras``.
    """
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    home = pathlib.Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()
    try:
        import json

        configured = json.loads((home / "keras.json").read_text())["backend"]
    except (OSError, ValueError, KeyError, TypeError):
        configured = "tensorflow"
    if _installed(configured):
        return configured
    for name in ("jax", "torch", "tensorflow"):
        if _installed(name):
            os.environ["KERAS_BACKEND"] = name
            return name
    return configured
