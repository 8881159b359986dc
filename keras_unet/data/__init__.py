"""The data: readers, the `ImageSet`, normalization, the paper's weight maps,
augmentation, and the streams `model.fit` reads."""

from keras_unet import _moved


def __getattr__(name):  # keras_unet 0.1's module keras_unet.data
    return _moved.old_attribute(__name__, name)
