"""Exports: a SavedModel for TensorFlow Serving and a BioImage Model Zoo
package."""

from keras_unet import _moved


def __getattr__(name):  # keras_unet 0.1's module keras_unet.export
    return _moved.old_attribute(__name__, name)
