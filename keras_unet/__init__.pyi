# The public API of keras_unet: what `import keras_unet` offers, loaded
# lazily by lazy_loader from this list (and read by type checkers).

from . import (
    checks,
    cli,
    data,
    evaluation,
    export,
    figures,
    inference,
    io,
    jobs,
    model,
    optional,
    training,
)
from .data.augment import AugmentConfig, elastic_deform
from .data.imageset import ImageSet
from .data.stream import make_training_dataset
from .data.synthetic import synthetic_cells
from .data.validation import make_validation_dataset
from .data.weight_cache import cached_weight_maps
from .data.weight_maps import (
    class_balance_weights,
    separate_instances,
    unet_weight_map,
)
from .evaluation.folders import evaluate_folders
from .evaluation.isbi import isbi_scores
from .evaluation.seg import seg_iou
from .export.bioimageio import export_bioimageio
from .export.saved_model import export_saved_model
from .inference.chunked import predict_chunked
from .inference.tiled import predict_tiled, predict_tiled_batch
from .io.volumes import open_volume, write_ome_zarr
from .model.geometry import (
    UNetGeometry,
    input_size_for_output,
    output_size,
    valid_input_sizes,
)
from .model.losses import WeightedCrossentropy, weighted_crossentropy
from .model.metrics import ForegroundIoU, PixelError
from .model.saving import load_model, save_model
from .model.spec import UNetSpec, inspect_unet, spec_of
from .model.unet import build_unet
from .training.config import TrainConfig
from .training.recipes import compile_unet
from .training.run import Run

__version__: str
