"""Keras callbacks of a keras_unet run: checkpoints, logs, divergence.

- `UNetCheckpoint`: atomic ``best.keras`` / ``last.keras`` with the state
  needed to resume (``state.json``).
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

from keras_unet.io import atomic_path

__all__ = [
    "StopOnDivergence",
    "TrainingCurve",
    "TrainingDiverged",
    "UNetCheckpoint",
    "read_csv_log",
    "training_callbacks",
    "write_training_curve",
]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class StopOnDivergence(keras.callbacks.Callback):
    """Raise `TrainingDiverged` at the first NaN or infinite training loss.

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
        kept = ""
        if self.checkpoint is not None and self.checkpoint.last_path.exists():
            kept = (
                f" The last good checkpoint, {self.checkpoint.last_path} "
                f"(after epoch {self.checkpoint.epochs_done}), is kept."
            )
        raise TrainingDiverged(
            f"training diverged: the loss is {float(loss)} at step {step}."
            f"{kept} Lower the learning rate (--learning-rate), keep a "
            "warm-up (--warmup-steps), or check the labels and weights."
        )


class UNetCheckpoint(keras.callbacks.Callback):
    """Best and last checkpoints, written atomically, with resume state.

    After every epoch ``last.keras`` (model + optimizer state) and
    ``state.json`` (epochs done, training steps done, samples drawn, best
    value) are replaced atomically: a crash or Ctrl-C at any moment leaves
    the previous complete files. ``best.keras`` is replaced when the
    monitored value improves. `save_last` is also called when training is
    interrupted.

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
    """

    def __init__(
        self, directory, monitor="val_loss", mode="auto", batch_size=1
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
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = None
        self.epochs_done = 0
        self.steps_done = 0
        self.samples_drawn = 0

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
        """Continue from a ``state.json`` written by `save_last`."""
        if state.get("best") is not None:
            self.best = float(state["best"])
        self.best_epoch = state.get("best_epoch")
        self.epochs_done = int(state.get("epochs_done", 0))
        self.steps_done = int(state.get("steps_done", 0))
        self.samples_drawn = int(state.get("samples_drawn", 0))

    def _save(self, path):
        with atomic_path(path) as tmp:
            self.model.save(tmp)

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        self.samples_drawn += self.batch_size

    def save_last(self, interrupted=False):
        """Write ``last.keras`` and ``state.json``; returns the state."""
        self._save(self.last_path)
        state = {
            "epochs_done": self.epochs_done,
            "steps_done": self.steps_done,
            "samples_drawn": self.samples_drawn,
            "monitor": self.monitor,
            "mode": self.mode,
            "best": None if math.isinf(self.best) else float(self.best),
            "best_epoch": self.best_epoch,
            "interrupted": interrupted,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with atomic_path(self.state_path) as tmp:
            tmp.write_text(json.dumps(state, indent=2) + "\n")
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
                self._save(self.best_path)
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

    Returns:
        A list: `UNetCheckpoint`, `StopOnDivergence`, CSVLogger,
        training-curve writer, and TensorBoard / EarlyStopping when enabled.
        The checkpoint callback is first.
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = UNetCheckpoint(
        out, monitor=monitor, mode=mode, batch_size=batch_size
    )
    callbacks = [
        checkpoint,
        StopOnDivergence(checkpoint),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=append_log),
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
