"""`model.fit` of a run: its streams, its model, the epochs not done yet.

`make_streams` gives the training stream and the validation tiles of a
`keras_unet.data.split.Split`, `build_model` a new compiled U-Net (or
``last.keras`` to resume), and `fit_run` runs ``model.fit`` with the run's
callbacks for the epochs not done yet, saving ``last.keras`` on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses

import keras

from keras_unet.data.stream import make_training_dataset
from keras_unet.data.validation import make_validation_dataset
from keras_unet.model.saving import load_model
from keras_unet.model.unet import build_unet
from keras_unet.training.callbacks import (
    UNetCheckpoint,
    restore_random_state,
    training_callbacks,
    write_training_curve,
)
from keras_unet.training.recipes import compile_unet, learning_rate_schedule

__all__ = [
    "Streams",
    "build_model",
    "fit",
    "fit_run",
    "make_deterministic",
    "make_streams",
]


def make_deterministic():
    """Deterministic kernels on the current backend (slower)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


@dataclasses.dataclass
class Streams:
    """The data of `fit`: training stream(s) and validation tiles.

    Attributes:
        make: ``make(start)`` is the training stream from sample `start`
            on (sample i depends only on the seed and i, so resuming at
            the samples drawn continues the exact stream).
        first: the stream this run starts with.
        validation: the validation tiles, or None.
    """

    make: object
    first: object
    validation: object


def make_streams(config, recipe, data, samples_drawn, strategy=None):
    """The training stream from sample `samples_drawn` on, and validation.

    `data` is the run's `keras_unet.data.split.Split`.

    The stream is batched with the global batch (``batch_size`` per
    replica, times the replicas). In a multi-worker run each worker
    computes only its part of every global batch (`shard` of
    `keras_unet.data.stream.make_training_dataset`), so the workers together
    draw exactly the samples of a one-process run with the global batch.

    Returns:
        `Streams` (step 3).
    """
    replicas = strategy.num_replicas_in_sync if strategy else 1
    common = dict(
        input_size=config.input_size,
        depth=config.depth,
        padding=config.padding,
    )

    def stream(start, batch_size, shard=None):
        return make_training_dataset(
            data.train,
            seed=config.seed,
            augment=recipe.augment,
            start=start,
            shard=shard,
            batch_size=batch_size,
            **common,
        )

    def make(start):
        if config.distribute != "multi-worker":
            return stream(start, recipe.batch_size * replicas)
        return strategy.distribute_datasets_from_function(
            lambda context: stream(
                start,
                recipe.batch_size,  # per replica: each takes whole batches
                (context.input_pipeline_id, context.num_input_pipelines),
            )
        )

    val_ds = None
    if len(data.val):
        val_ds = make_validation_dataset(
            data.val,
            batch_size=recipe.batch_size * replicas,
            **common,
        )
    return Streams(make, make(samples_drawn), val_ds)


def build_model(config, recipe, data, out, strategy=None, state=None):
    """A new U-Net compiled with `recipe`, or ``last.keras`` to resume."""
    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")
    try:
        scope = strategy.scope() if strategy else contextlib.nullcontext()
        with scope:
            if config.resume:
                model = load_model(out / "last.keras")
                return _resumed(model, config, recipe, state or {})
            model = build_unet(
                (None, None, data.train.channels),
                num_classes=data.train.num_classes,
                depth=config.depth,
                filters=config.filters,
                dropout=config.dropout,
                padding=config.padding,
                batch_norm=config.batch_norm,
                seed=config.seed,
            )
            compile_unet(
                model,
                recipe,
                total_steps=config.steps * config.epochs,
                jit_compile=config.xla,
            )
            return model
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _resumed(model, config, recipe, state):
    """``last.keras``: its dropout generators where the run left them, its
    cosine schedule stretched to the run's new end."""
    restore_random_state(model, state)
    if recipe.schedule == "cosine":
        model.optimizer.learning_rate = learning_rate_schedule(
            recipe.learning_rate,
            recipe.warmup_steps,
            config.steps * config.epochs,
            "cosine",
        )
    return model


def _tensorboard_available(config):
    if not config.tensorboard:
        return False
    try:
        import tensorflow  # noqa: F401 - Keras' TensorBoard writes with it
    except ImportError:
        print("TensorBoard logs skipped: TensorFlow is not installed.")
        return False
    return True


def fit(model, config, streams, callbacks):
    """``model.fit`` for the epochs not done yet.

    After an interrupt inside an epoch, that epoch is finished first and
    the stream continues after the samples it drew, so a resumed run sees
    exactly the samples of an uninterrupted one.

    Returns:
        The merged history dict.
    """
    checkpoint = _find_checkpoint(callbacks)
    epochs_done = checkpoint.epochs_done
    within = checkpoint.steps_done - epochs_done * config.steps
    if within >= config.steps:  # interrupted after its steps (validation)
        epochs_done += within // config.steps
        within %= config.steps
    history = {}
    kwargs = dict(
        validation_data=streams.validation,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=False,  # the stream shuffles itself
    )
    train_ds = streams.first
    if 0 < within < config.steps and epochs_done < config.epochs:
        h = model.fit(
            train_ds,
            initial_epoch=epochs_done,
            epochs=epochs_done + 1,
            steps_per_epoch=config.steps - within,
            **kwargs,
        )
        _merge(history, h.history)
        epochs_done += 1
        train_ds = streams.make(checkpoint.samples_drawn)
    if epochs_done < config.epochs and not model.stop_training:
        h = model.fit(
            train_ds,
            initial_epoch=epochs_done,
            epochs=config.epochs,
            steps_per_epoch=config.steps,
            **kwargs,
        )
        _merge(history, h.history)
    return history


def _merge(history, new):
    for key, values in new.items():
        history.setdefault(key, []).extend(values)


def _close_logs(callbacks):
    """Close the CSV and TensorBoard writers of a fit that raised."""
    for callback in callbacks:
        if (
            isinstance(
                callback,
                keras.callbacks.CSVLogger | keras.callbacks.TensorBoard,
            )
            and getattr(callback, "model", None) is not None
        ):
            callback.on_train_end()


def _find_checkpoint(callbacks):
    return next(c for c in callbacks if isinstance(c, UNetCheckpoint))


def _save_on_interrupt(callbacks):
    """Ctrl-C: save ``last.keras`` + state."""
    checkpoint = _find_checkpoint(callbacks)
    if checkpoint.model is None:  # interrupted before training began
        return
    saved = checkpoint.save_last(interrupted=True)
    print(
        f"\nInterrupted: saved {checkpoint.last_path} after "
        f"{saved['steps_done']} steps; continue with --resume."
    )


def fit_run(
    model,
    config,
    recipe,
    streams,
    place,
    state,
    replicas=1,
    chief=True,
    extra_callbacks=None,
):
    """`fit` with the run's callbacks, writing into the folder `place`.

    The callbacks (`keras_unet.training.callbacks.training_callbacks`) start
    from the resume `state`; Ctrl-C saves ``last.keras`` (the chief only)
    and re-raises; the CSV and TensorBoard logs are closed and the training
    curve drawn whatever happens.

    Returns:
        The merged history dict.
    """
    callbacks = training_callbacks(
        place,
        monitor="val_loss" if streams.validation is not None else "loss",
        early_stopping=config.early_stopping,
        tensorboard=chief and _tensorboard_available(config),
        batch_size=recipe.batch_size * replicas,
        append_log=config.resume,
        save_every=config.save_every,
    ) + list(extra_callbacks or [])
    _find_checkpoint(callbacks).restore(state)
    try:
        return fit(model, config, streams, callbacks)
    except KeyboardInterrupt:
        if chief:
            _save_on_interrupt(callbacks)
        _close_logs(callbacks)
        raise
    except Exception:
        _close_logs(callbacks)
        raise
    finally:
        write_training_curve(place / "log.csv", place / "training_curve.png")
