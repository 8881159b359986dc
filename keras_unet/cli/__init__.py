"""The ``keras-unet`` command line: one module per sub-command.

``keras-unet`` runs `main`; every sub-command explains its options with
``--help``.
"""

from keras_unet import _moved
from keras_unet.cli.main import main

__all__ = ["main"]


def __getattr__(name):  # keras_unet 0.1's module keras_unet.cli
    return _moved.old_attribute(__name__, name)
