"""``keras-unet predict``."""

from __future__ import annotations

from keras_unet.cli.backend import quiet_tensorflow
from keras_unet.cli.options import positive_int

__all__ = ["add_parser", "run"]


def run(args):
    quiet_tensorflow()
    from keras_unet.io.volumes import is_zarr
    from keras_unet.jobs.predict import predict_files
    from keras_unet.jobs.volume import predict_volume

    tta = "d4" if args.tta else None
    inputs = args.input[0] if len(args.input) == 1 else args.input
    lazy = args.output.endswith(".zarr") or any(map(is_zarr, args.input))
    if lazy:
        if len(args.input) != 1 or not args.output.endswith(".zarr"):
            raise ValueError(
                "Larger-than-memory prediction reads one input (Zarr, "
                "OME-Zarr, TIFF or a folder of slices) and writes one new "
                "OME-Zarr folder ending in .zarr. Received: "
                f"--input {' '.join(args.input)} --output {args.output}"
            )
        predict_volume(
            args.model,
            inputs,
            args.output,
            class_of_interest=args.class_,
            threshold=args.threshold,
            labels=args.labels,
            tta=tta,
            tile_size=args.tile_size,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=not args.quiet,
        )
        print(f"Done: {args.output} (OME-Zarr)")
        return 0
    predict_files(
        args.model,
        inputs,
        args.output,
        class_of_interest=args.class_,
        threshold=args.threshold,
        tta=tta,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
        overlays=not args.no_overlay,
        overwrite=args.overwrite,
    )
    return 0


def add_parser(sub):
    p = sub.add_parser(
        "predict",
        help="segment images with a trained model",
        description="Segment an image or a folder of images of any size with "
        "the overlap-tile strategy. Writes OUTPUT/<stem>.tif (float32 "
        "probability of the class of interest: the membrane for ISBI 2012 "
        "models, else the cells) and OUTPUT/overlays/<stem>.png. With an "
        "OUTPUT ending in .zarr (or a Zarr input) the image is read and "
        "predicted chunk by chunk on Dask, never whole, and written as "
        "OME-Zarr: a Zarr/OME-Zarr array, a TIFF of any size, or a folder "
        "of slices as a Z stack (docs/large_images.md).",
    )
    p.add_argument("--model", required=True, help="a .keras model file")
    p.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="image files, or one folder of images",
    )
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--tta", action="store_true", help="average over the 8 rotations/flips"
    )
    p.add_argument(
        "--tile-size",
        type=positive_int,
        default=None,
        help="input tile size (default: chosen from memory)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="tiles per batch (default: chosen from memory)",
    )
    p.add_argument(
        "--class",
        dest="class_",
        metavar="CLASS",
        type=int,
        default=None,
        help="class whose probability is written (default: from "
        "the run's config.json)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold of the overlays (default: the one "
        "calibrated on the run's validation images, else 0.5)",
    )
    p.add_argument(
        "--no-overlay", action="store_true", help="skip overlay PNGs"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier keras-unet predict output folder (never "
        "a folder holding other files)",
    )
    _add_lazy_predict(p)
    p.set_defaults(func=run)


def _add_lazy_predict(p):
    """The options of `predict`'s larger-than-memory path (Dask)."""
    lazy = p.add_argument_group("larger than memory (OUTPUT ending in .zarr)")
    lazy.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="output chunk side in px, a multiple of 2**depth (default: 2048)",
    )
    lazy.add_argument(
        "--labels",
        action="store_true",
        help="also write the label image (pixels at the threshold)",
    )
    lazy.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on a dask.distributed scheduler, e.g. tcp://host:8786",
    )
    lazy.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="start a local Dask cluster of N worker processes",
    )
    lazy.add_argument("--quiet", action="store_true", help="no progress bar")
