"""The ``keras-unet`` command line.

Every sub-command explains its options with ``--help``. Errors in the
user's input print one line (``keras-unet: error: ...``) and exit with
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

import keras_unet
from keras_unet.cli import demo, evaluate, export, predict, summary, train
from keras_unet.cli.backend import choose_backend
from keras_unet.cli.errors import resource_message, user_message

__all__ = ["COMMANDS", "build_parser", "main"]

#: The sub-commands, in the order ``--help`` lists them; each module has
#: ``add_parser(subparsers)`` and ``run(args)``.
COMMANDS = (summary, demo, train, predict, evaluate, export)


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
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None):
    choose_backend()
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
        print(f"keras-unet: error: {user_message(err)}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as err:  # the machine, not the input
        if os.environ.get("KERAS_UNET_DEBUG"):
            raise
        print(f"keras-unet: error: {resource_message(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a diverged run, TensorFlow's "disk full"
        callbacks = sys.modules.get("keras_unet.training.callbacks")
        if callbacks and isinstance(err, callbacks.TrainingDiverged):
            print(f"keras-unet: error: {err}", file=sys.stderr)
            return 1
        if "No space left on device" not in str(err):
            raise
        full = OSError(errno.ENOSPC, "No space left on device")
        print(f"keras-unet: error: {resource_message(full)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("keras-unet: interrupted", file=sys.stderr)
        return 130
