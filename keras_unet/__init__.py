"""keras_unet: the original U-Net (Ronneberger, Fischer, Brox 2015) for Keras 3.

The public API is listed in ``__init__.pyi`` and loaded lazily
(`lazy_loader`, as scikit-image does), so that ``import keras_unet`` and
``keras-unet --version`` do not pay for importing TensorFlow until a
model, loss or pipeline is used. The modules are grouped by the stage of
the flow: `keras_unet.io`, `model`, `data`, `inference`, `evaluation`,
`training`, `export`, `jobs` and `cli` (docs/architecture.md); the module
paths of keras_unet 0.1 still import (`keras_unet._moved`).

Example:

>>> import keras_unet
>>> model = keras_unet.build_unet()            # the paper's network
>>> keras_unet.output_size(572)
388
"""

import lazy_loader as _lazy

from keras_unet import _moved

__version__ = "0.2.0"

_moved.install()
_getattr, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)


def __getattr__(name):
    if f"{__name__}.{name}" in _moved.MOVED:  # keras_unet 0.1's modules
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    return _getattr(name)
