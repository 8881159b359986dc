"""Saving and loading ``.keras`` U-Nets, with their spec inside.

A ``.keras`` file is a zip archive; keras_unet adds entries of its own
beside Keras' (`SPEC_ENTRY`: the `UNetSpec`; a training run's
``last.keras`` also holds its resume state). Keras ignores them, so plain
``keras.saving.load_model`` loads the file too; `load_model` also gives the
model its spec back. Files without the entry (saved with ``model.save``, or
by keras_unet 0.1.0) load as well: their spec is inspected once.
"""

from __future__ import annotations

import json
import pathlib
import zipfile

import keras

from keras_unet.io.atomic import atomic_path
from keras_unet.model.spec import UNetSpec, attach_spec, spec_of

__all__ = ["SPEC_ENTRY", "load_model", "read_entry", "save_model"]

#: The zip entry of a ``.keras`` file that holds the model's `UNetSpec`.
SPEC_ENTRY = "keras_unet_spec.json"


def save_model(model, path, entries=None, spec=None):
    """Save `model` to the ``.keras`` file `path`, atomically, with its spec.

    Args:
        model: a U-Net.
        path: the ``.keras`` file; an existing file is replaced only when
            the new one is complete.
        entries: optional ``{zip entry name: JSON-ready value}`` to store
            beside the model (read them with `read_entry`).
        spec: the spec to store (default: `spec_of(model)`).

    Returns:
        The path.
    """
    path = pathlib.Path(path)
    spec = spec_of(model) if spec is None else spec
    stored = {SPEC_ENTRY: spec.to_config(), **(entries or {})}
    with atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            for name, value in stored.items():
                archive.writestr(name, json.dumps(value, indent=2))
    return path


def read_entry(path, name):
    """The JSON value of the entry `name` of a ``.keras`` file (None if it
    has none, or if the file cannot be read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(name))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return None


def load_model(path, compile=True):
    """Load a ``.keras`` U-Net saved by keras_unet (e.g. ``best.keras``).

    Imports `keras_unet.model.losses` and `keras_unet.model.metrics` first,
    so that the registered loss and metrics of a compiled model are found
    (plain ``keras.saving.load_model`` works too once they are imported).
    The network itself uses only built-in Keras layers: with
    ``compile=False`` any Keras 3 installation loads it, without
    keras_unet. The model carries the spec stored in the file.

    Args:
        path: the ``.keras`` file.
        compile: restore the optimizer, loss and metrics (needed to resume
            training; not for prediction).
    """
    from keras_unet.model import losses, metrics  # noqa: F401 - registration

    path = _check_model_file(path)
    model = keras.saving.load_model(path, compile=compile)
    stored = read_entry(path, SPEC_ENTRY)
    if stored is not None:
        attach_spec(model, UNetSpec.from_config(stored))
    return model


def _check_model_file(path):
    """`path` if it is a readable ``.keras`` file, else a one-line error."""
    path = pathlib.Path(path)
    if not path.is_file():
        what = (
            "is a folder, not a .keras file"
            if path.is_dir()
            else "does not exist"
        )
        raise FileNotFoundError(
            f"No such model file: {path} {what} (best.keras or last.keras "
            "of a run)."
        )
    if path.suffix != ".keras":
        raise ValueError(
            f"{path} is not a .keras file. keras_unet saves models with "
            "model.save('name.keras'); for a SavedModel use "
            "tf.saved_model.load."
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a readable .keras file (a .keras file is a zip "
            "archive; this one is damaged or truncated): save the model "
            "again, or use another checkpoint (best.keras / last.keras)."
        )
    return path
