"""Input and output: image files, folder listings, atomic writes, the run lock,
and arrays larger than memory (Zarr, OME-Zarr, TIFF)."""

from keras_unet import _moved


def __getattr__(name):  # keras_unet 0.1's module keras_unet.io
    return _moved.old_attribute(__name__, name)
