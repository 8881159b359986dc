"""The training job behind ``keras-unet train``, in named steps.

`train(config)` runs, in order:

1. `open_output`: the output folder, locked for this run (refuses to
   overwrite a run unless resuming), and the resume state;
2. `load_training_data`: read the dataset (`load_data`), make class
   labels and the recipe's weight maps (`prepare`), split validation and
   held-out images (`split_validation`);
3. `make_streams`: the training stream and validation tiles
   (`keras_unet.training.fit`);
4. `write_run_info`: ``config.json``, the resolved settings;
5. `build_model`: a new U-Net compiled with the recipe
   (`keras_unet.training.recipes.compile_unet`), or ``last.keras`` when
   resuming;
6. `fit_run`: ``model.fit`` with the standard callbacks
   (`keras_unet.training.callbacks`), finishing an interrupted epoch first;
7. `calibrate`: the decision threshold of ``best.keras`` on the
   validation images (`keras_unet.training.calibration`), stored in
   ``config.json``.

Every input problem is reported before training starts; a loss that
becomes NaN or infinite stops the run with `TrainingDiverged`.

With ``distribute="multi-worker"`` every machine runs the same job; the
chief alone writes into the output folder, the others write into a
temporary folder that is removed at the end (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import tempfile

import keras

from keras_unet.data import ctc, folders, isbi2012, synthetic
from keras_unet.data.prepare import prepare
from keras_unet.data.split import Split, split
from keras_unet.training.calibration import calibrate_threshold
from keras_unet.training.config import TrainConfig
from keras_unet.training.distribute import make_strategy
from keras_unet.training.fit import (
    build_model,
    fit_run,
    make_deterministic,
    make_streams,
)
from keras_unet.training.run import BEST_MODEL, Run
from keras_unet.training.run_folder import open_output, write_run_info

__all__ = [
    "TrainResult",
    "calibrate",
    "load_data",
    "load_training_data",
    "train",
]


def load_data(config: TrainConfig):
    """Read the dataset named by `config` as an `ImageSet`."""
    if config.format == "synthetic":
        return synthetic.load_synthetic(
            config.synthetic_count, config.synthetic_size, config.seed
        )
    if config.format == "isbi2012":
        return isbi2012.load_isbi2012(config.data, "train")
    if config.format == "ctc":
        return ctc.load_ctc(config.data)
    return folders.load_folders(
        config.data,
        config.masks,
        mask_suffix=config.mask_suffix,
        mask_type=config.mask_type,
    )


def load_training_data(config, recipe, out) -> Split:
    """Read, prepare and split the data of a run (step 2)."""
    imageset = load_data(config)
    cache_dir = config.cache_dir or str(out / "weight_cache")
    prepared = prepare(
        imageset, recipe.weights, cache_dir, config.w0, config.sigma
    )
    if recipe.weights == "unet" and prepared.num_classes > 2 and config.verbose:
        print(
            f"{prepared.num_classes} classes: the paper's border weights are "
            "defined for two (cells and background); training with class "
            "balance weights only."
        )
    return split(
        prepared,
        config.val_fraction,
        config.seed,
        config.val_names,
        config.holdout_names,
    )


def calibrate(out, data):
    """The decision threshold of ``best.keras`` on the validation images.

    Returns:
        A dict for ``config.json`` (empty without validation images or for
        more than two classes), see `keras_unet.training.calibration`.
    """
    best = out / BEST_MODEL
    if not len(data.val) or data.val.num_classes != 2 or not best.is_file():
        return {}
    return calibrate_threshold(
        Run.load(best).model,
        data.val.images,
        data.val.labels,
        data.val.class_of_interest,
        data.val.weights,
    )


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    model: object
    history: dict
    output: pathlib.Path
    config: TrainConfig
    data: Split
    calibration: dict = dataclasses.field(default_factory=dict)
    replicas: int = 1
    chief: bool = True


def train(config: TrainConfig, callbacks=None) -> TrainResult:
    """Train a U-Net end to end, as ``keras-unet train`` does.

    Writes to ``config.output``: ``best.keras`` and ``last.keras``
    (atomic), ``state.json`` (resume state), ``config.json`` (the resolved
    settings, so the run can be repeated with ``--config``, and the
    decision threshold chosen on the validation images), ``log.csv``,
    ``training_curve.png`` and ``tensorboard/``. Ctrl-C saves
    ``last.keras`` and ``state.json`` and re-raises KeyboardInterrupt;
    ``resume=True`` continues from them with the optimizer state and the
    exact data stream. In a multi-worker run only the chief writes them;
    every worker resumes from the run in its ``config.output`` (a shared
    folder or a copy of the chief's).

    Args:
        config: the settings (`keras_unet.training.config.TrainConfig`).
        callbacks: extra Keras callbacks, appended to the standard ones.

    Raises:
        keras_unet.training.callbacks.TrainingDiverged: the loss became NaN or
            infinite (the last good checkpoint is kept).
    """
    recipe = config.check()
    strategy = make_strategy(config)  # first: multi-worker sets up TensorFlow
    chief = strategy is None or strategy.extended.should_checkpoint
    with (
        open_output(config, write=chief) as (out, state),
        _workspace(out, chief) as place,
    ):
        return _train_in(place, config, recipe, strategy, out, state, callbacks)


@contextlib.contextmanager
def _workspace(out, chief):
    """Where this process writes: `out`, or a temporary folder for the
    non-chief workers of a multi-worker run (removed at the end)."""
    if chief:
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="keras_unet_worker_") as tmp:
        yield pathlib.Path(tmp)


def _train_in(place, config, recipe, strategy, out, state, extra_callbacks):
    """Steps 2-7 of `train`, writing into `place`."""
    chief = place == out
    data = load_training_data(config, recipe, place)
    if config.deterministic:
        make_deterministic()
    keras.utils.set_random_seed(config.seed)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    streams = make_streams(
        config, recipe, data, int(state.get("samples_drawn", 0)), strategy
    )
    if chief:
        write_run_info(out, config, recipe, data)
    model = build_model(config, recipe, data, out, strategy, state)
    history = fit_run(
        model,
        config,
        recipe,
        streams,
        place,
        state,
        replicas,
        chief,
        extra_callbacks,
    )
    calibration = calibrate(out, data) if chief else {}
    if calibration:
        write_run_info(out, config, recipe, data, calibration=calibration)
    return TrainResult(
        model=model,
        history=history,
        output=out,
        config=config,
        data=data,
        calibration=calibration,
        replicas=replicas,
        chief=chief,
    )
