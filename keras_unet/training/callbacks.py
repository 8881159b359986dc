"""Keras callbacks of a keras_unet run: checkpoints, logs, divergence.

- `UNetCheckpoint`: atomic ``best.keras`` (weights only) / ``last.keras``
  (with the optimizer, and inside it the state needed to resume exactly;
  ``state.json`` is a readable copy).
- `StopOnDivergence`: ends training with `TrainingDiverged` at the first
  non-finite loss, before a checkpoint could store the broken weights.
- `TrainingCurve`: redraws ``training_curve.png`` from the CSV log.
- `training_callbacks`: the standard set, in the order they must run.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import pathlib
import time

import keras
import numpy as np

from keras_unet.io.atomic import atomic_path
from keras_unet.model.saving import read_entry, save_model
from keras_unet.model.spec import spec_of

__all__ = [
    "StopOnDivergence",
    "TrainingCurve",
    "TrainingDiverged",
    "UNetCheckpoint",
    "read_checkpoint_state",
    "read_csv_log",
    "restore_random_state",
    "training_callbacks",
    "write_training_curve",
]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class StopOnDivergence(keras.callbacks.Callback):
    """Raise `TrainingDiverged` at the first NaN or infinite training loss,
    or a NaN or infinite loss (validation too) at the end of an epoch.

    Keras' `TerminateOnNaN` stops gracefully, which still runs the epoch's
    callbacks, so a checkpoint would store the broken weights; raising
    keeps the last good checkpoint and makes the run fail loudly.

    Args:
        checkpoint: optional `UNetCheckpoint`, named in the message.
    """

    def __init__(self, checkpoint=None):
        super().__init__()
        self.checkpoint = checkpoint

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(loss):
            return
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._fail(f"the loss is {float(loss)} at step {step}")

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if key.endswith("loss") and not np.isfinite(value):
                self._fail(f"{key} is {float(value)} after epoch {epoch + 1}")

    def _fail(self, what):
        kept = ""
        if self.checkpoint is not None and self.checkpoint.last_path.exists():
            kept = (
                f" The last good checkpoint, {self.checkpoint.last_path} "
                f"(after epoch {self.checkpoint.epochs_done}), is kept."
            )
        raise TrainingDiverged(
            f"training diverged: {what}.{kept} Lower the learning rate "
            "(--learning-rate), keep a warm-up (--warmup-steps), or check "
            "the labels and weights."
        )


STATE_ENTRY = "keras_unet_state.json"  # the resume state, inside last.keras


def read_checkpoint_state(path) -> dict:
    """The resume state stored inside a ``last.keras`` ({} if none)."""
    return read_entry(path, STATE_ENTRY) or {}


def _random_variables(model):
    """The random-generator states of the model's layers (dropout), by
    layer name: Keras saves weights, not these."""
    return {
        f"{layer.name}/{i}": v
        for layer in model.layers
        for i, v in enumerate(
            v for v in layer.variables if "seed_generator" in v.path
        )
    }


def restore_random_state(model, state):
    """Set the dropout generators to where a checkpoint's run left them,
    so that a resumed run draws the masks of an uninterrupted one."""
    saved = state.get("random_state", {})
    for name, variable in _random_variables(model).items():
        if name in saved:
            variable.assign(np.asarray(saved[name], variable.dtype))


def _weights_only(model):
    """The same layers and weights without optimizer and compile state."""
    return keras.Model(model.input, model.output, name=model.name)


class UNetCheckpoint(keras.callbacks.Callback):
    """Best and last checkpoints, written atomically, with resume state.

    ``last.keras`` (model + optimizer state, and the resume state inside
    the same file: epochs and steps done, samples drawn, best value, the
    dropout generators) is replaced atomically every `save_every` epochs,
    at the end of training and on Ctrl-C (`save_last`); ``state.json`` is
    a readable copy of its state. A kill at any moment leaves a complete
    earlier ``last.keras`` that resumes exactly. ``best.keras`` (the
    network and its weights, no optimizer: a third of the size) is
    replaced when the monitored value improves.

    Steps are counted here, batch by batch, not read from the optimizer:
    with float16 loss scaling the optimizer skips steps whose gradients
    overflowed, and would under-count.

    Args:
        directory: output folder.
        monitor: the log entry to monitor ("val_loss" by default; falls
            back to "loss" when the entry is missing).
        mode: "min", "max", or "auto" ("max" for names containing "iou",
            "accuracy" or "dice", else "min").
        batch_size: samples per step (to record samples drawn).
        save_every: epochs between ``last.keras`` writes (>= 1).
    """

    def __init__(
        self,
        directory,
        monitor="val_loss",
        mode="auto",
        batch_size=1,
        save_every=1,
    ):
        super().__init__()
        if mode == "auto":
            better_high = any(k in monitor for k in ("iou", "accuracy", "dice"))
            mode = "max" if better_high else "min"
        if mode not in ("min", "max"):
            raise ValueError(
                f"`mode` must be 'min', 'max' or 'auto'. Received: {mode!r}"
            )
        self.directory = pathlib.Path(directory)
        self.monitor = monitor
        self.mode = mode
        self.batch_size = batch_size
        self.save_every = max(1, int(save_every))
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = None
        self.epochs_done = 0
        self.steps_done = 0
        self.samples_drawn = 0
        self._saved_at = None  # steps_done of the last write

    @property
    def last_path(self):
        return self.directory / "last.keras"

    @property
    def best_path(self):
        return self.directory / "best.keras"

    @property
    def state_path(self):
        return self.directory / "state.json"

    def restore(self, state):
        """Continue from the state of a ``last.keras`` (`save_last`)."""
        if state.get("best") is not None:
            self.best = float(state["best"])
        self.best_epoch = state.get("best_epoch")
        self.epochs_done = int(state.get("epochs_done", 0))
        self.steps_done = int(state.get("steps_done", 0))
        self.samples_drawn = int(state.get("samples_drawn", 0))
        self._saved_at = self.steps_done if state else None

    def _save(self, path, model, state=None):
        entries = None if state is None else {STATE_ENTRY: state}
        save_model(model, path, entries, spec=spec_of(self.model))

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        self.samples_drawn += self.batch_size

    def _catch_up(self):
        """After Ctrl-C inside a step: the optimizer may have applied a
        step whose batch end never came; count it, or a resumed run would
        train that batch twice."""
        applied = int(
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        )
        missed = applied - self.steps_done
        if missed == 1:
            self.steps_done += 1
            self.samples_drawn += self.batch_size

    def _state(self, interrupted):
        random_state = {
            name: keras.ops.convert_to_numpy(v).tolist()
            for name, v in _random_variables(self.model).items()
        }
        return {
            "epochs_done": self.epochs_done,
            "steps_done": self.steps_done,
            "samples_drawn": self.samples_drawn,
            "monitor": self.monitor,
            "mode": self.mode,
            "best": None if math.isinf(self.best) else float(self.best),
            "best_epoch": self.best_epoch,
            "interrupted": interrupted,
            "random_state": random_state,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def save_last(self, interrupted=False):
        """Write ``last.keras`` (with its state) and ``state.json``.

        Returns:
            The state.
        """
        if interrupted:
            self._catch_up()
        state = self._state(interrupted)
        self._save(self.last_path, self.model, state)
        with atomic_path(self.state_path) as tmp:  # a copy to read
            tmp.write_text(json.dumps(state, indent=2) + "\n")
        self._saved_at = self.steps_done
        return state

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.epochs_done = epoch + 1
        value = logs.get(self.monitor, logs.get("loss"))
        if value is not None and np.isfinite(value):
            if self.mode == "min":
                better = value < self.best
            else:
                better = value > self.best
            if better:
                self.best = float(value)
                self.best_epoch = epoch + 1
                self._save(self.best_path, _weights_only(self.model))
        if self.epochs_done % self.save_every == 0:
            self.save_last()

    def on_train_end(self, logs=None):
        if self._saved_at != self.steps_done:  # the interval's remainder
            self.save_last()


class TrainingCurve(keras.callbacks.Callback):
    """Redraw ``training_curve.png`` from the CSV log after every epoch."""

    def __init__(self, csv_path, png_path):
        super().__init__()
        self.csv_path = pathlib.Path(csv_path)
        self.png_path = pathlib.Path(png_path)

    def on_epoch_end(self, epoch, logs=None):
        write_training_curve(self.csv_path, self.png_path)


def read_csv_log(path):
    """The Keras CSVLogger file as {column: [values]}."""
    path = pathlib.Path(path)
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(math.nan)
    return columns


def write_training_curve(csv_path, png_path):
    """Draw loss (and validation loss, metrics) per epoch to a PNG."""
    from keras_unet import figures

    log = read_csv_log(csv_path)
    if not log.get("epoch"):
        return None
    epochs = [e + 1 for e in log["epoch"]]
    losses = {k: (epochs, v) for k, v in log.items() if k.endswith("loss")}
    others = {
        k: (epochs, v)
        for k, v in log.items()
        if k not in losses and k not in ("epoch", "learning_rate")
    }
    panels = [figures.line_plot(losses, "", "epoch", "", log_y=True)]
    titles = ["loss"]
    if others:
        panels.append(figures.line_plot(others, "", "epoch", ""))
        titles.append("metrics")
    return figures.save_panels(png_path, panels, titles)


def training_callbacks(
    output_dir,
    monitor="val_loss",
    early_stopping=None,
    tensorboard="auto",
    batch_size=1,
    append_log=False,
    mode="auto",
    save_every=1,
):
    """The standard callbacks of a keras_unet run.

    Args:
        output_dir: folder for checkpoints and logs.
        monitor: value deciding the best checkpoint (and early stopping).
        mode: "min", "max" or "auto" (see `UNetCheckpoint`).
        early_stopping: patience in epochs, or None.
        tensorboard: write TensorBoard logs to ``output_dir/tensorboard``:
            True, False or "auto" (when TensorFlow, which writes them, is
            installed).
        batch_size: samples per step (recorded for resuming).
        append_log: append to an existing CSV log (when resuming).
        save_every: epochs between ``last.keras`` writes.

    Returns:
        A list: CSVLogger, `StopOnDivergence`, `UNetCheckpoint`, the
        training-curve writer, and TensorBoard / EarlyStopping when
        enabled.
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = UNetCheckpoint(
        out, monitor, mode, batch_size=batch_size, save_every=save_every
    )
    callbacks = [
        # the log row of an epoch before its checkpoint: a kill between the
        # two leaves a row that resuming trims and trains again, not a gap
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=append_log),
        StopOnDivergence(checkpoint),  # before a checkpoint of a broken epoch
        checkpoint,
        TrainingCurve(out / "log.csv", out / "training_curve.png"),
    ]
    if tensorboard == "auto":
        tensorboard = importlib.util.find_spec("tensorflow") is not None
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard")))
    if early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode=checkpoint.mode,
                patience=int(early_stopping),
                verbose=1,
            )
        )
    return callbacks
