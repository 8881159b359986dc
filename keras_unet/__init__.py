"""keras_unet: the original U-Net (Ronneberger, Fischer, Brox 2015) for Keras 3.

The public API is re-exported here and loaded lazily, so that
``import keras_unet`` and ``keras-unet --version`` do not pay for importing
TensorFlow until a model, loss or pipeline is used.

Example:

>>> import keras_unet
>>> model = keras_unet.build_unet()            # the paper's network
>>> keras_unet.geometry.output_size(572)
388
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "build_unet": "keras_unet.model",
    "inspect_unet": "keras_unet.model",
    "UNetSpec": "keras_unet.model",
    "synthetic_cells": "keras_unet.datasets",
    "unet_weight_map": "keras_unet.weights",
    "cached_weight_maps": "keras_unet.weights",
    "separate_instances": "keras_unet.weights",
    "class_balance_weights": "keras_unet.weights",
    "WeightedCrossentropy": "keras_unet.losses",
    "weighted_crossentropy": "keras_unet.losses",
    "AugmentConfig": "keras_unet.augment",
    "elastic_deform": "keras_unet.augment",
    "make_training_dataset": "keras_unet.data",
    "make_validation_dataset": "keras_unet.data",
    "isbi_scores": "keras_unet.scores",
    "seg_iou": "keras_unet.scores",
    "evaluate_folders": "keras_unet.evaluation",
    "ForegroundIoU": "keras_unet.metrics",
    "PixelError": "keras_unet.metrics",
    "load_model": "keras_unet.model",
    "predict_tiled": "keras_unet.tiling",
    "predict_tiled_batch": "keras_unet.tiling",
    "predict_chunked": "keras_unet.chunked",
    "open_volume": "keras_unet.volumes",
    "write_ome_zarr": "keras_unet.volumes",
    "export_saved_model": "keras_unet.export",
    "export_bioimageio": "keras_unet.bioimageio",
    "TrainConfig": "keras_unet.config",
    "compile_unet": "keras_unet.recipes",
}
_SUBMODULES = (
    "augment",
    "bioimageio",
    "calibration",
    "callbacks",
    "checks",
    "chunked",
    "cli",
    "config",
    "data",
    "datasets",
    "evaluation",
    "export",
    "figures",
    "geometry",
    "io",
    "losses",
    "metrics",
    "mirror",
    "model",
    "recipes",
    "scores",
    "tiling",
    "topology",
    "train",
    "tta",
    "volumes",
    "weights",
    "workflows",
)

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"keras_unet.{name}")
    else:
        raise AttributeError(f"module 'keras_unet' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
