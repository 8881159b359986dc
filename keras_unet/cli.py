"""The ``keras-unet`` command line.

Every sub-command explains its options with ``--help``. Errors in the
user's input print one line (``keras-unet: error: ...``) and exit with
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import pathlib
import sys

import keras_unet

__all__ = ["main"]


def _quiet_tensorflow():
    """Import TensorFlow without its C++ start-up chatter on stderr.

    TF 2.21 logs several lines (oneDNN, CUDA probing) before its log level
    is read, so the import runs with file descriptor 2 pointed at a
    temporary file; the text is shown if the import fails. Set
    KERAS_UNET_VERBOSE=1 to see everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_UNET_VERBOSE") or "tensorflow" in sys.modules:
        return
    if _choose_backend() != "tensorflow":
        return  # TensorFlow is imported only where it is needed
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device probing logs too
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _installed(name):
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _choose_backend():
    """The Keras backend to use; JAX or PyTorch when TensorFlow is absent.

    Keras takes KERAS_BACKEND, else ``keras.json``, else TensorFlow. When
    that backend is not installed, KERAS_BACKEND is set to one that is,
    instead of failing on ``import keras``.
    """
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    home = pathlib.Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()
    try:
        import json

        configured = json.loads((home / "keras.json").read_text())["backend"]
    except (OSError, ValueError, KeyError, TypeError):
        configured = "tensorflow"
    if _installed(configured):
        return configured
    for name in ("jax", "torch", "tensorflow"):
        if _installed(name):
            os.environ["KERAS_BACKEND"] = name
            return name
    return configured


def _int_at_least(minimum):
    """An argparse type: an integer >= `minimum`."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {value}"
            )
        return value

    return parse


_positive_int = _int_at_least(1)


def _add_model_args(p):
    """The model options of `TrainConfig`, with their defaults, + channels."""
    from keras_unet.config import TrainConfig

    g = p.add_argument_group("model (keras_unet.build_unet)")
    for field in dataclasses.fields(TrainConfig):
        if field.metadata["group"] == "model":
            kwargs = dict(_option_kwargs(field), default=field.default)
            g.add_argument("--" + field.name.replace("_", "-"), **kwargs)
    g.add_argument("--channels", type=_positive_int, default=1,
                   help="input channels (default 1)")  # fmt: skip
    g.add_argument("--classes", type=_positive_int, default=2,
                   help="output classes (default 2)")  # fmt: skip


def geometry_report(input_size, depth, padding):
    """Lines describing the tile geometry for `input_size`."""
    from keras_unet.geometry import UNetGeometry

    g = UNetGeometry(depth, padding)
    out = g.output_size(input_size)
    near = g.valid_sizes(
        max(g.min_input_size, input_size - 4 * g.step), input_size + 4 * g.step
    )
    trace = g.size_trace(input_size)
    lines = [
        "Tile geometry",
        f"  depth {depth}, padding '{padding}'",
        f"  input tile {input_size} px -> output tile {out} px",
        f"  context margin {g.margin} px on every side of an output tile",
        f"  rule: {g.describe_rule()}",
        f"  valid input sizes near {input_size}: {', '.join(map(str, near))}",
        "  feature-map sizes: " + " ".join(f"{n}" for _, n in trace),
    ]
    return lines


def _print_summary(model):
    """Keras' layer table, whole when piped (rich crops at 80 columns)."""
    columns = os.environ.get("COLUMNS")
    if columns is None and not sys.stdout.isatty():
        os.environ["COLUMNS"] = "120"
    try:
        model.summary(line_length=110)
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)


def _cmd_summary(args):
    _quiet_tensorflow()
    from keras_unet.model import build_unet

    model = build_unet(
        (args.input_size, args.input_size, args.channels),
        num_classes=args.classes,
        depth=args.depth,
        filters=args.filters,
        dropout=args.dropout,
        padding=args.padding,
        batch_norm=args.batch_norm,
    )
    _print_summary(model)
    print("\n".join(geometry_report(args.input_size, args.depth, args.padding)))
    return 0


def _cmd_demo(args):
    _quiet_tensorflow()
    from keras_unet.workflows import run_demo

    print(
        "keras-unet demo: training a U-Net on "
        + (
            f"ISBI 2012 ({args.data})"
            if args.data
            else "the built-in synthetic cells"
        )
        + f", writing to {args.output}/"
    )
    report = run_demo(
        args.output, data=args.data, seed=args.seed, quick=args.quick
    )
    mean = report["mean"]
    print("\nHeld-out images:")
    for row in report["held_out"]:
        print(
            "  "
            + ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
            )
        )
    print("Mean: " + ", ".join(f"{k} {v:.4f}" for k, v in mean.items()))
    print(
        f"Took {report['training']['seconds']:.0f} s. Outputs: "
        f"{report['outputs']['model']}, {report['outputs']['training_curve']}, "
        f"{report['outputs']['predictions']}/, {args.output}/report.json"
    )
    return 0


def _option_kwargs(field):
    """argparse keyword arguments generated from a TrainConfig field."""
    meta, kind = field.metadata, str(field.type)
    kwargs = dict(dest=field.name, default=None, help=meta["help"])
    if not meta.get("preset"):
        shown = field.default
        if field.default_factory is not dataclasses.MISSING:
            shown = field.default_factory()
        if shown not in ("", None) and "default" not in meta["help"]:
            kwargs["help"] += f" (default {shown})"
    if isinstance(field.default, bool):
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    if meta.get("choices") is not None:
        kwargs["choices"] = [c for c in meta["choices"] if c is not None]
    if "list" in kind:
        kwargs["nargs"] = "+"
    elif "int" in kind and "float" not in kind:
        kwargs["type"] = _int_at_least(meta.get("minimum") or 0)
    elif "float" in kind:
        kwargs["type"] = float
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    return kwargs


def train_options():
    """``[(group, flags, kwargs)]`` for every TrainConfig field on the CLI."""
    from keras_unet.config import TrainConfig

    options = []
    for field in dataclasses.fields(TrainConfig):
        if not field.metadata.get("cli", True):
            continue
        flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
        options.append((field.metadata["group"], [flag], _option_kwargs(field)))
    return options


def _cmd_train(args):
    _quiet_tensorflow()
    from keras_unet.config import RUN_INFO, TrainConfig
    from keras_unet.train import train

    overrides = {dest: getattr(args, dest) for _, _, kw in train_options()
                 for dest in [kw["dest"]]}  # fmt: skip
    config_file = args.config
    if args.resume and not config_file:
        # continue the run with its own settings (command-line options win)
        stored = pathlib.Path(args.output or TrainConfig().output) / RUN_INFO
        config_file = stored if stored.is_file() else None
    if args.quiet:
        overrides["verbose"] = 0
    if config_file:
        config = TrainConfig.from_json(config_file, **overrides)
    else:
        config = TrainConfig(
            **{k: v for k, v in overrides.items() if v is not None}
        )
    try:
        result = train(config)
    except KeyboardInterrupt:
        return 130
    if not result.chief:
        print("Done: a worker of the multi-worker run (the chief writes).")
        return 0
    threshold = result.calibration.get("decision_threshold")
    print(
        f"Done: {result.output}/best.keras, last.keras, log.csv, "
        "training_curve.png, config.json"
        + (f"; decision threshold {threshold:g}" if threshold else "")
    )
    return 0


def _cmd_predict(args):
    _quiet_tensorflow()
    from keras_unet.volumes import is_zarr
    from keras_unet.workflows import predict_files, predict_volume

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
            args.model, inputs, args.output, class_of_interest=args.class_,
            threshold=args.threshold, labels=args.labels, tta=tta,
            tile_size=args.tile_size, batch_size=args.batch_size,
            chunk_size=args.chunk_size, scheduler=args.scheduler,
            workers=args.workers, progress=not args.quiet,
        )  # fmt: skip
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


def _cmd_evaluate(args):
    from keras_unet.workflows import evaluate_predictions

    invert = {"auto": None, "yes": True, "no": False}[args.invert]
    report = evaluate_predictions(
        args.predictions, args.labels, args.output, invert=invert,
        overwrite=args.overwrite,
    )  # fmt: skip
    mean = report.get("mean", {})
    shown = {k: v for k, v in mean.items() if isinstance(v, float)}
    print(
        "Mean over images: "
        + ", ".join(f"{k} {v:.5g}" for k, v in shown.items())
    )
    if args.output:
        print(f"Wrote {args.output}/metrics.json and metrics.csv")
    return 0


def _cmd_export(args):
    _quiet_tensorflow()
    from keras_unet.calibration import decision_threshold
    from keras_unet.config import read_run_info
    from keras_unet.export import export_saved_model
    from keras_unet.model import load_model

    if args.format == "bioimageio":
        return _export_bioimageio(args)
    model = load_model(args.model, compile=False)
    interest = read_run_info(args.model).get("class_of_interest", 1)
    threshold = args.threshold
    if threshold is None:
        threshold = decision_threshold(args.model, interest)
    path = export_saved_model(
        model,
        args.output,
        tta="d4" if args.tta else None,
        tile_size=args.tile_size,
        overwrite=args.overwrite,
        threshold=threshold,
        class_of_interest=interest if model.output_shape[-1] == 2 else 1,
    )
    base = pathlib.Path(path).resolve().parent  # <base>/<name>/<version>
    print(
        f"Wrote the SavedModel {path} (serving_default: image of any size "
        f"-> probabilities, and labels at threshold {threshold:g}).\n"
        "Serve it: docker run --rm -p 8501:8501 --mount type=bind,source="
        f"{base},target=/models/{base.name} -e MODEL_NAME={base.name} -t "
        'tensorflow/serving\nthen POST {"instances": [image.tolist()]} to '
        f"http://localhost:8501/v1/models/{base.name}:predict (more: python "
        "-m pydoc keras_unet.export)."
    )
    return 0


def _add_summary(sub):
    p = sub.add_parser(
        "summary",
        help="print a model's layer table and tile geometry",
        description="Build a U-Net and print its layer table, parameter count "
        "and tile geometry (valid input sizes, output size, margin).",
    )
    _add_model_args(p)
    p.set_defaults(func=_cmd_summary)


def _add_demo(sub):
    p = sub.add_parser(
        "demo",
        help="the main job: train, segment and evaluate on built-in data",
        description="Train a small U-Net on the built-in synthetic cells (or "
        "on ISBI 2012 with --data), segment held-out images, and write "
        "overlays, metrics (pixel/Rand/warping error, SEG IoU) and the "
        "training curve. A few minutes on 2 CPU cores.",
    )
    p.add_argument(
        "--output",
        default="demo_output",
        help="output folder (default demo_output)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="an ISBI 2012 folder to use instead of synthetic cells",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run (seconds) that checks the whole pipeline",
    )
    p.set_defaults(func=_cmd_demo)


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a U-Net on a dataset folder",
        description="Train a U-Net with model.fit. Writes OUTPUT/best.keras "
        "and last.keras (atomic), state.json (for --resume), config.json (the "
        "resolved settings: repeat the run with --config), log.csv, "
        "training_curve.png and tensorboard/. Options not given come from "
        "--config, then from the --preset.",
    )
    p.add_argument(
        "--config",
        help="a config.json of an earlier run (or any "
        "JSON with TrainConfig fields); command-line options win",
    )
    groups = {}
    for group, flags, kwargs in train_options():
        if group not in groups:
            groups[group] = p.add_argument_group(group)
        groups[group].add_argument(*flags, **kwargs)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _add_predict(sub):
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
        type=_positive_int,
        default=None,
        help="input tile size (default: chosen from memory)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
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
    p.set_defaults(func=_cmd_predict)


def _add_lazy_predict(p):
    """The options of `predict`'s larger-than-memory path (Dask)."""
    lazy = p.add_argument_group("larger than memory (OUTPUT ending in .zarr)")
    lazy.add_argument(
        "--chunk-size",
        type=_positive_int,
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
        type=_positive_int,
        default=None,
        help="start a local Dask cluster of N worker processes",
    )
    lazy.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="pixel, Rand and warping error of probability maps",
        description="Score a folder of probability maps (from keras-unet "
        "predict) against a folder of labels (0 = membrane/background), as "
        "the ISBI 2012 challenge did; writes metrics.json and metrics.csv.",
    )
    p.add_argument("--predictions", required=True, help="folder of maps")
    p.add_argument("--labels", required=True, help="folder of labels")
    p.add_argument("--output", default=None, help="folder for the report")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier report in --output",
    )
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="maps are cell probabilities (yes) or membrane (no); "
        "auto reads predictions.json",
    )
    p.set_defaults(func=_cmd_evaluate)


def _export_bioimageio(args):
    """``export --format bioimageio``: the zoo package of a run's model."""
    from keras_unet.bioimageio import WEIGHT_FORMATS, export_bioimageio
    from keras_unet.config import read_run_info
    from keras_unet.model import load_model

    saved_model_only = {"--tta": args.tta, "--tile-size": args.tile_size,
                        "--threshold": args.threshold is not None}  # fmt: skip
    for flag, given in saved_model_only.items():
        if given:
            raise ValueError(
                f"{flag} applies to --format savedmodel; a bioimage.io "
                "package leaves tiling to the consumer. Drop it."
            )
    model = load_model(args.model, compile=False)
    training = read_run_info(args.model)
    path = export_bioimageio(
        model,
        args.output,
        name=args.name,
        description=args.description,
        authors=args.author,
        license=args.license,
        input_dtype=args.input_dtype,
        training=training,
        class_of_interest=training.get("class_of_interest", 1),
        weight_formats=args.weight_format or WEIGHT_FORMATS,
        overwrite=args.overwrite,
    )
    print(
        f"Wrote the bioimage.io package {path}; check it with `bioimageio "
        f"test {path}`. Fiji: Plugins > DeepImageJ > DeepImageJ Install Model, "
        "then DeepImageJ Run; ilastik: Neural Network Classification > "
        "Load model; "
        "napari: Plugins > BioImage.IO Model Manager."
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
        choices=("keras_v3", "tensorflow_saved_model_bundle"),
        help="weights to include; repeat for several (default: both; the "
        "SavedModel needs KERAS_BACKEND=tensorflow)",
    )
    zoo.add_argument(
        "--input-dtype",
        choices=("uint8", "uint16", "float32"),
        default="uint8",
        help="dtype of the images users give (uint8/uint16 are scaled to "
        "[0, 1] as in training)",
    )


def _add_export(sub):
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
        choices=("savedmodel", "bioimageio"),
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
        type=_positive_int,
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
    p.set_defaults(func=_cmd_export)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-unet",
        description="The original U-Net (Ronneberger et al. 2015) for Keras 3: "
        "train, segment, evaluate and export.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"keras-unet {keras_unet.__version__}",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _add_summary,
        _add_demo,
        _add_train,
        _add_predict,
        _add_evaluate,
        _add_export,
    ):
        add(sub)
    return parser


def _shown_path(filename):
    """The path the user gave for a temporary sibling of atomic writes
    (``dir/.name.x1y2.tmp.ext`` -> ``dir/name.ext``)."""
    path = pathlib.Path(str(filename))
    stem, _, rest = path.name[1:].partition(".")
    if path.name.startswith(".") and ".tmp" in rest:
        return str(path.with_name(stem + rest.partition(".tmp")[2]))
    return str(filename)


def _user_message(err):
    """The error's text; a bare ``[Errno N] ...: path`` said in words."""
    if isinstance(err, OSError) and err.errno and err.filename:
        kind = {
            errno.EEXIST: "exists and cannot be used as this output",
            errno.ENOTDIR: "is not a folder",
            errno.EISDIR: "is a folder",
        }.get(err.errno, (err.strerror or str(err)).lower())
        return f"{_shown_path(err.filename)} {kind}; choose another path."
    return str(err)


def _resource_message(err):
    """One line for a failure of the machine: full disk, memory, I/O."""
    if isinstance(err, MemoryError):
        return (
            f"out of memory ({err or 'MemoryError'}); use a smaller "
            "--tile-size or --batch-size, or a machine with more memory"
        )
    where = f" ({_shown_path(err.filename)})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the device{where}; free space or choose "
            "another output (no file was left half-written)"
        )
    if err.errno == errno.EROFS:
        return f"read-only file system{where}; choose another output"
    return f"{err.strerror or err}{where} ({type(err).__name__})"


def main(argv=None):
    _choose_backend()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ImportError as err:  # an optional backend or TensorFlow
        hint = (
            ""
            if "pip install" in str(err)  # the message names its extra
            else ". Install what is missing, e.g. pip install "
            "'keras-unet-paper[tensorflow]' (tf.data, TensorBoard, "
            "SavedModel export), [jax] or [torch]."
        )
        print(f"keras-unet: error: {err}{hint}", file=sys.stderr)
        return 2
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
    ) as err:
        if os.environ.get("KERAS_UNET_DEBUG"):
            raise
        print(f"keras-unet: error: {_user_message(err)}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as err:  # the machine, not the input
        if os.environ.get("KERAS_UNET_DEBUG"):
            raise
        print(f"keras-unet: error: {_resource_message(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a diverged run, TensorFlow's "disk full"
        callbacks = sys.modules.get("keras_unet.callbacks")
        if callbacks and isinstance(err, callbacks.TrainingDiverged):
            print(f"keras-unet: error: {err}", file=sys.stderr)
            return 1
        if "No space left on device" not in str(err):
            raise
        full = OSError(errno.ENOSPC, "No space left on device")
        print(f"keras-unet: error: {_resource_message(full)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("keras-unet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
