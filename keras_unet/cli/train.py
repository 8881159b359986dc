"""``keras-unet train``."""

from __future__ import annotations

import pathlib

from keras_unet.cli.backend import quiet_tensorflow
from keras_unet.cli.options import train_options

__all__ = ["add_parser", "run"]


def run(args):
    quiet_tensorflow()
    from keras_unet.training.config import TrainConfig
    from keras_unet.training.run import RUN_INFO
    from keras_unet.training.train import train

    overrides = {
        kwargs["dest"]: getattr(args, kwargs["dest"])
        for _, _, kwargs in train_options()
    }
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


def add_parser(sub):
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
    p.set_defaults(func=run)
