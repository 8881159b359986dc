"""The network: its geometry, the builder, its spec, saving, the loss and the
training metrics."""

from keras_unet import _moved


def __getattr__(name):  # keras_unet 0.1's module keras_unet.model
    return _moved.old_attribute(__name__, name)
