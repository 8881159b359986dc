"""What the exports accept and write, stated once for the exports and the
command line (this module imports neither Keras nor TensorFlow)."""

from __future__ import annotations

__all__ = ["EXPORT_FORMATS", "INPUT_DTYPES", "WEIGHT_FORMATS"]

#: ``keras-unet export --format``: TensorFlow Serving, the BioImage Model Zoo.
EXPORT_FORMATS = ("savedmodel", "bioimageio")
#: The image dtypes an export takes (uint8 / 255, uint16 / 65535, float32
#: as it is: as `keras_unet.data.normalize.to_float_image`).
INPUT_DTYPES = ("uint8", "uint16", "float32")
#: The weights a BioImage Model Zoo package can carry.
WEIGHT_FORMATS = ("keras_v3", "tensorflow_saved_model_bundle")
