"""The ``keras-unet`` command line.

Every sub-command explains its options with ``--help``. Errors in the
user's input print one line (``keras-unet: error: ...``) and exit with
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

import keras_unet

__all__ = ["main"]


class CLIError(Exception):
    """An error in the user's input, printed without a traceback."""


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
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1, got {value}"
        )
    return value


def _add_model_args(p):
    g = p.add_argument_group("model (keras_unet.build_unet)")
    g.add_argument(
        "--input-size",
        type=_positive_int,
        default=572,
        help="input tile size in pixels (default 572, the paper's); with valid "
        "padding it must be n_min + 2**depth*k (188 + 16k for depth 4)",
    )
    g.add_argument(
        "--depth",
        type=_positive_int,
        default=4,
        help="number of 2x2 max-pools (default 4)",
    )
    g.add_argument(
        "--filters",
        type=_positive_int,
        default=64,
        help="channels of the first level; doubled at every level (default 64)",
    )
    g.add_argument(
        "--channels",
        type=_positive_int,
        default=1,
        help="input channels (default 1)",
    )
    g.add_argument(
        "--classes",
        type=_positive_int,
        default=2,
        help="output classes (default 2)",
    )
    g.add_argument(
        "--padding",
        choices=("valid", "same"),
        default="valid",
        help="'valid' (the paper: unpadded convolutions, output smaller than "
        "input) or 'same' (default valid)",
    )
    g.add_argument(
        "--batch-norm",
        action="store_true",
        help="batch normalization after every 3x3 conv",
    )
    g.add_argument(
        "--dropout",
        type=float,
        default=0.5,
        help="dropout rate at the end of the "
        "contracting path (default 0.5; 0 disables)",
    )


def geometry_report(input_size, depth, padding):
    """Lines describing the tile geometry for `input_size`."""
    from keras_unet import geometry

    out = geometry.output_size(input_size, depth, padding)
    m = geometry.margin(depth, padding)
    lo = max(geometry.min_input_size(depth, padding), input_size - 4 * 2**depth)
    near = geometry.valid_input_sizes(
        lo, input_size + 4 * 2**depth, depth, padding
    )
    trace = geometry.size_trace(input_size, depth, padding)
    lines = [
        "Tile geometry",
        f"  depth {depth}, padding '{padding}'",
        f"  input tile {input_size} px -> output tile {out} px",
        f"  context margin {m} px on every side of an output tile",
        f"  rule: {geometry.describe_rule(depth, padding)}",
        f"  valid input sizes near {input_size}: {', '.join(map(str, near))}",
        "  feature-map sizes: " + " ".join(f"{n}" for _, n in trace),
    ]
    return lines


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
    model.summary(line_length=110)
    print("\n".join(geometry_report(args.input_size, args.depth, args.padding)))
    return 0


def _cmd_demo(args):
    _quiet_tensorflow()
    import pathlib

    from keras_unet import figures
    from keras_unet.datasets import synthetic_cells
    from keras_unet.model import build_unet

    out = pathlib.Path(args.output)
    model = build_unet()
    print(
        f"The paper's U-Net: {model.count_params():,} parameters, "
        f"{model.input_shape[1:]} -> {model.output_shape[1:]}"
    )
    print("\n".join(geometry_report(572, 4, "valid")))
    images, instances = synthetic_cells(2, size=256, seed=args.seed)
    panels, titles = [], []
    for img, ins in zip(images, instances):
        panels += [img, figures.color_instances(ins)]
        titles += ["synthetic image", f"{ins.max()} cells"]
    path = figures.save_panels(
        out / "synthetic_cells.png", panels, titles, ncols=2
    )
    print(f"wrote {path}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-unet",
        description="The original U-Net (Ronneberger et al. 2015) for Keras 3.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"keras-unet {keras_unet.__version__}",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "summary",
        help="print a model's layer table and tile geometry",
        description="Build a U-Net and print its layer table, parameter count "
        "and tile geometry (valid input sizes, output size, margin).",
    )
    _add_model_args(p)
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser(
        "demo",
        help="the main job on the built-in synthetic cells",
        description="Build the paper's U-Net, print its geometry and write a "
        "picture of the built-in synthetic cell data.",
    )
    p.add_argument(
        "--output",
        default="demo_output",
        help="output folder (default demo_output)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0)"
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (CLIError, ValueError, TypeError, FileNotFoundError) as err:
        print(f"keras-unet: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-unet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
