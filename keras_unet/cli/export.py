"""``keras-unet export``: a SavedModel or a BioImage Model Zoo package."""

from __future__ import annotations

import pathlib

from keras_unet.cli.backend import quiet_tensorflow
from keras_unet.cli.options import positive_int
from keras_unet.export.formats import (
    EXPORT_FORMATS,
    INPUT_DTYPES,
    WEIGHT_FORMATS,
)

__all__ = ["add_parser", "run"]


def run(args):
    quiet_tensorflow()
    from keras_unet.export.saved_model import export_saved_model
    from keras_unet.training.run import Run

    run = Run.load(args.model)
    if args.format == "bioimageio":
        return _export_bioimageio(args, run)
    decision = run.decision(threshold=args.threshold)
    path = export_saved_model(
        run.model,
        args.output,
        tta="d4" if args.tta else None,
        tile_size=args.tile_size,
        overwrite=args.overwrite,
        threshold=decision.threshold,
        class_of_interest=decision.class_of_interest
        if run.num_classes == 2
        else 1,
    )
    base = pathlib.Path(path).resolve().parent  # <base>/<name>/<version>
    print(
        f"Wrote the SavedModel {path} (serving_default: image of any size "
        "-> probabilities, and labels at threshold "
        f"{decision.threshold:g}).\n"
        "Serve it: docker run --rm -p 8501:8501 --mount type=bind,source="
        f"{base},target=/models/{base.name} -e MODEL_NAME={base.name} -t "
        'tensorflow/serving\nthen POST {"instances": [image.tolist()]} to '
        f"http://localhost:8501/v1/models/{base.name}:predict (more: python "
        "-m pydoc keras_unet.export.saved_model)."
    )
    return 0


def _export_bioimageio(args, run):
    """``export --format bioimageio``: the zoo package of a run's model."""
    from keras_unet.export.bioimageio import export_bioimageio

    saved_model_only = {
        "--tta": args.tta,
        "--tile-size": args.tile_size,
        "--threshold": args.threshold is not None,
    }
    for flag, given in saved_model_only.items():
        if given:
            raise ValueError(
                f"{flag} applies to --format savedmodel; a bioimage.io "
                "package leaves tiling to the consumer. Drop it."
            )
    path = export_bioimageio(
        run.model,
        args.output,
        name=args.name,
        description=args.description,
        authors=args.author,
        license=args.license,
        input_dtype=args.input_dtype,
        training=run.record,
        class_of_interest=run.class_of_interest,
        weight_formats=args.weight_format or WEIGHT_FORMATS,
        overwrite=args.overwrite,
    )
    print(
        f"Wrote the bioimage.io package {path}; check it with `bioimageio "
        f"test {path}`. Fiji: Plugins > DeepImageJ > DeepImageJ Install "
        "Model, then DeepImageJ Run; ilastik: Neural Network Classification "
        "> Load model; napari: Plugins > BioImage.IO Model Manager."
    )
    return 0


def _add_bioimageio_options(p):
    zoo = p.add_argument_group(
        "--format bioimageio (BioImage Model Zoo: Fiji, ilastik, napari)"
    )
    zoo.add_argument("--name", help="the model's name in the zoo (required)")
    zoo.add_argument(
        "--description", help="what it segments, one sentence (required)"
    )
    zoo.add_argument(
        "--author",
        action="append",
        help="an author's name; repeat for several (required)",
    )
    zoo.add_argument(
        "--license", help="SPDX license identifier, e.g. MIT (required)"
    )
    zoo.add_argument(
        "--weight-format",
        action="append",
        choices=WEIGHT_FORMATS,
        help="weights to include; repeat for several (default: both; the "
        "SavedModel needs KERAS_BACKEND=tensorflow)",
    )
    zoo.add_argument(
        "--input-dtype",
        choices=INPUT_DTYPES,
        default="uint8",
        help="dtype of the images users give (uint8/uint16 are scaled to "
        "[0, 1] as in training)",
    )


def add_parser(sub):
    p = sub.add_parser(
        "export",
        help="export a SavedModel for TensorFlow Serving, or a BioImage "
        "Model Zoo package (Fiji/deepImageJ, ilastik, napari)",
        description="Export a trained model as a SavedModel whose "
        "serving_default signature takes one image of any size and returns "
        "the full-size probability map (mirroring, tiling, optional TTA and "
        "soft-max inside the graph); or, with --format bioimageio, as a "
        "bioimage.io zip that deepImageJ (Fiji), ilastik, QuPath, napari "
        "and bioimageio.core run, tiling large images with the model's "
        "halo (needs pip install 'keras-unet-paper[bioimageio]').",
    )
    p.add_argument("--model", required=True, help="a .keras model file")
    p.add_argument(
        "--output",
        required=True,
        help="SavedModel folder, e.g. serving/unet/1; or the .zip of "
        "--format bioimageio",
    )
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="savedmodel",
        help="savedmodel (TensorFlow Serving) or bioimageio (BioImage "
        "Model Zoo)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="8-fold test-time augmentation inside the graph",
    )
    p.add_argument(
        "--tile-size",
        type=positive_int,
        default=None,
        help="tile size used inside the graph",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold of the labels output (default: the one "
        "calibrated on the run's validation images, else 0.5)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing SavedModel folder (or zip)",
    )
    _add_bioimageio_options(p)
    p.set_defaults(func=run)
