"""Command-line options made from `TrainConfig` fields, and argument types.

Every training option is a `keras_unet.training.config.TrainConfig` field:
its flag, help, choices and bounds are read from the field, so the command
line and the Python API cannot disagree.
"""

from __future__ import annotations

import argparse
import dataclasses

__all__ = [
    "add_model_args",
    "int_at_least",
    "option_kwargs",
    "positive_int",
    "train_options",
]


def int_at_least(minimum):
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


positive_int = int_at_least(1)


def add_model_args(p):
    """The model options of `TrainConfig`, with their defaults, + channels."""
    from keras_unet.training.config import TrainConfig

    g = p.add_argument_group("model (keras_unet.build_unet)")
    for field in dataclasses.fields(TrainConfig):
        if field.metadata["group"] == "model":
            kwargs = dict(option_kwargs(field), default=field.default)
            g.add_argument("--" + field.name.replace("_", "-"), **kwargs)
    g.add_argument(
        "--channels",
        type=positive_int,
        default=1,
        help="input channels (default 1)",
    )
    g.add_argument(
        "--classes",
        type=positive_int,
        default=2,
        help="output classes (default 2)",
    )


def option_kwargs(field):
    """argparse keyword arguments generated from a TrainConfig field."""
    from keras_unet.training.config import value_type

    meta, kind = field.metadata, value_type(field)
    kwargs = dict(dest=field.name, default=None, help=meta["help"])
    if not meta.get("preset"):
        shown = field.default
        if field.default_factory is not dataclasses.MISSING:
            shown = field.default_factory()
        if shown not in ("", None) and "default" not in meta["help"]:
            kwargs["help"] += f" (default {shown})"
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    if meta.get("choices") is not None:
        kwargs["choices"] = [c for c in meta["choices"] if c is not None]
    if kind is list:
        kwargs["nargs"] = "+"
    elif kind is int:
        kwargs["type"] = int_at_least(meta.get("minimum") or 0)
    elif kind is float:
        kwargs["type"] = float
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    return kwargs


def train_options():
    """``[(group, flags, kwargs)]`` for every TrainConfig field on the CLI."""
    from keras_unet.training.config import TrainConfig

    options = []
    for field in dataclasses.fields(TrainConfig):
        if not field.metadata.get("cli", True):
            continue
        flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
        options.append((field.metadata["group"], [flag], option_kwargs(field)))
    return options
