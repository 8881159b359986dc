"""``keras-unet summary``: a model's layer table and tile geometry."""

from __future__ import annotations

import os
import sys

from keras_unet.cli.backend import quiet_tensorflow
from keras_unet.cli.options import add_model_args

__all__ = ["add_parser", "run"]


def geometry_report(input_size, depth, padding):
    """Lines describing the tile geometry for `input_size`."""
    from keras_unet.model.geometry import UNetGeometry

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


def run(args):
    quiet_tensorflow()
    from keras_unet.model.unet import build_unet

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


def add_parser(sub):
    p = sub.add_parser(
        "summary",
        help="print a model's layer table and tile geometry",
        description="Build a U-Net and print its layer table, parameter count "
        "and tile geometry (valid input sizes, output size, margin).",
    )
    add_model_args(p)
    p.set_defaults(func=run)
