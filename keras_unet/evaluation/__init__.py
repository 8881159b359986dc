"""The measures of the paper and of the field, and a folder of maps scored
against a folder of labels (numpy only: no Keras, no TensorFlow)."""

from keras_unet import _moved


def __getattr__(name):  # keras_unet 0.1's module keras_unet.evaluation
    return _moved.old_attribute(__name__, name)
