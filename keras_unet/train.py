"""Training with `model.fit`: recipes, checkpoints, resume, and `train`.

Three levels, use the one you need:

- `compile_unet(model, preset)`: optimizer + weighted loss + metrics of a
  recipe; then call ``model.fit`` yourself on a
  `keras_unet.data.make_training_dataset` stream.
- `training_callbacks(output_dir)`: atomic best/last checkpoints with the
  state needed to resume, CSV and TensorBoard logs, early stopping and a
  training-curve PNG.
- `train(TrainConfig(...))`: the whole job behind ``keras-unet train``:
  read data, cache weight maps, build the model, fit, write everything.

Recipes (`PRESETS`; every field can be overridden):

- ``"adam"`` (the default): Adam 1e-3, one 572 px tile per step (the paper's
  "large tiles over large batches"), the paper's weight maps (class balance
  + separation borders, w0=10, sigma=5) and augmentation.
- ``"paper"``: the paper's optimizer, SGD with momentum 0.99, otherwise as
  "adam". The learning rate is 1e-4 with the weighted loss normalized by
  the sum of weights: with momentum 0.99 the steady-state step is 100x the
  learning rate, and 1e-2 collapsed to all-membrane in this project's tests.
- ``"plain"``: a plain baseline: Adam 1e-3, unweighted cross entropy,
  flips and 90-degree rotations only.
- ``"large-batch"``: Adam 1e-3 with 8 tiles per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import time

import keras
import numpy as np

from keras_unet import geometry
from keras_unet.io import atomic_path

__all__ = [
    "PRESETS",
    "Recipe",
    "TrainConfig",
    "TrainingCurve",
    "UNetCheckpoint",
    "compile_unet",
    "make_optimizer",
    "train",
    "training_callbacks",
]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimizer, batch, loss weighting and augmentation of a preset."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    batch_size: int = 1
    weights: str = "unet"  # "unet", "balanced" or "none"
    augment: str = "paper"  # "paper", "flips" or "none"


PRESETS = {
    "adam": Recipe(),
    "paper": Recipe(optimizer="sgd", learning_rate=1e-4, momentum=0.99),
    "plain": Recipe(weights="none", augment="flips"),
    "large-batch": Recipe(batch_size=8),
}
DEFAULT_PRESET = "adam"


def make_optimizer(name="adam", learning_rate=1e-3, momentum=0.0):
    """A Keras optimizer by name: "adam", "sgd" (with momentum) or "adamw"."""

    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum)
    raise ValueError(
        f"Unknown optimizer {name!r}: use 'adam', 'adamw' or 'sgd'."
    )


def _recipe(preset, **overrides):
    if preset not in PRESETS:
        raise ValueError(
            f"Unknown preset {preset!r}. Choose one of {sorted(PRESETS)}."
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(PRESETS[preset], **given)


def compile_unet(
    model,
    preset=DEFAULT_PRESET,
    *,
    optimizer=None,
    learning_rate=None,
    momentum=None,
    jit_compile=False,
    metrics=True,
):
    """Compile a U-Net with a recipe's optimizer, loss and metrics.

    The loss is `keras_unet.losses.WeightedCrossentropy` (sparse labels):
    per-pixel weights come from the dataset's third element as
    ``sample_weight`` (all ones for an unweighted recipe). Metrics: pixel
    error and foreground IoU on the (valid-padded) outputs.

    Args:
        model: a U-Net (logits out), e.g. from `keras_unet.build_unet`.
        preset: a key of `PRESETS`.
        optimizer: overrides the recipe's optimizer name.
        learning_rate: overrides the recipe's learning rate.
        momentum: overrides the recipe's SGD momentum.
        jit_compile: XLA for the training step.
        metrics: add the keras_unet training metrics.

    Returns:
        The `Recipe` used.
    """
    from keras_unet import losses
    from keras_unet import metrics as unet_metrics

    recipe = _recipe(
        preset,
        optimizer=optimizer,
        learning_rate=learning_rate,
        momentum=momentum,
    )
    model.compile(
        optimizer=make_optimizer(
            recipe.optimizer, recipe.learning_rate, recipe.momentum
        ),
        loss=losses.WeightedCrossentropy(),
        # weighted_metrics: Keras passes sample_weight (weight 0 = ignore)
        weighted_metrics=[
            unet_metrics.PixelError(),
            unet_metrics.ForegroundIoU(),
        ]
        if metrics
        else None,
        jit_compile=jit_compile,
    )
    return recipe


# --------------------------------------------------------------------------
# Callbacks


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
    import csv

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
    tensorboard=True,
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
        tensorboard: write TensorBoard logs to ``output_dir/tensorboard``.
        batch_size: samples per step (recorded for resuming).
        append_log: append to an existing CSV log (when resuming).

    Returns:
        A list: `UNetCheckpoint`, CSVLogger, training-curve writer, and
        TensorBoard / EarlyStopping when enabled. The checkpoint callback is
        first.
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = UNetCheckpoint(
        out, monitor=monitor, mode=mode, batch_size=batch_size
    )
    callbacks = [
        checkpoint,
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=append_log),
        TrainingCurve(out / "log.csv", out / "training_curve.png"),
    ]
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


# --------------------------------------------------------------------------
# The whole job


@dataclasses.dataclass
class TrainConfig:
    """Everything `train` needs; written to ``<output>/config.json``.

    Data: `data` is a path (None for the built-in synthetic cells), `format`
    one of "isbi2012", "ctc", "folders", "synthetic". For "folders", `data`
    is the image folder and `masks` the mask folder. `val_names` (else a
    seeded `val_fraction`) picks the validation images, which decide
    ``best.keras``; `holdout_names` are left out of training and
    validation altogether (keep them for an unbiased test).

    Recipe fields left None come from `preset` (see `PRESETS`).
    """

    # data
    data: str | None = None
    format: str = "synthetic"
    masks: str | None = None
    mask_suffix: str = ""
    mask_type: str = "classes"
    synthetic_count: int = 12
    synthetic_size: int = 256
    val_fraction: float = 0.2
    val_names: list | None = None
    holdout_names: list | None = None
    # model
    depth: int = 4
    filters: int = 64
    dropout: float = 0.5
    batch_norm: bool = False
    padding: str = "valid"
    input_size: int = 572
    # recipe
    preset: str = DEFAULT_PRESET
    optimizer: str | None = None
    learning_rate: float | None = None
    momentum: float | None = None
    batch_size: int | None = None
    weights: str | None = None
    augment: str | None = None
    w0: float = 10.0
    sigma: float = 5.0
    # schedule
    steps: int = 100
    epochs: int = 10
    early_stopping: int | None = None
    seed: int = 0
    # execution
    output: str = "runs/unet"
    resume: bool = False
    mixed_precision: str | None = None
    xla: bool = False
    distribute: str | None = None
    deterministic: bool = False
    tensorboard: bool = True
    cache_dir: str | None = None
    verbose: int = 1

    @classmethod
    def from_json(cls, path, **overrides):
        """Read a config file (JSON), then apply `overrides` (not None)."""
        path = pathlib.Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"No such config file: {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        values = values.get("config", values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{path} has unknown setting(s) {unknown}; known settings "
                f"are {sorted(known)}."
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def recipe(self) -> Recipe:
        return _recipe(
            self.preset,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            batch_size=self.batch_size,
            weights=self.weights,
            augment=self.augment,
        )

    def check(self):
        """Validate the settings; raises ValueError naming the bad one."""
        if self.format not in ("isbi2012", "ctc", "folders", "synthetic"):
            raise ValueError(
                "`format` must be one of isbi2012, ctc, folders, synthetic. "
                f"Received: {self.format!r}"
            )
        if self.format != "synthetic" and not self.data:
            raise ValueError(
                f"`data` (a path) is needed for format={self.format!r}."
            )
        if self.format == "folders" and not self.masks:
            raise ValueError(
                "format='folders' needs `masks` (the mask folder)."
            )
        for name in ("steps", "epochs", "depth", "filters", "synthetic_count"):
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < 1
            ):
                raise ValueError(
                    f"`{name}` must be an integer >= 1. Received: {value!r}"
                )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(
                "`val_fraction` must be in [0, 1). "
                f"Received: {self.val_fraction}"
            )
        if self.mixed_precision not in (None, "float16", "bfloat16"):
            raise ValueError(
                "`mixed_precision` must be None, 'float16' or 'bfloat16'. "
                f"Received: {self.mixed_precision!r}"
            )
        if self.distribute not in (None, "mirrored"):
            raise ValueError(
                "`distribute` must be None or 'mirrored'. "
                f"Received: {self.distribute!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(
                f"`seed` must be an integer. Received: {self.seed!r}"
            )
        if self.early_stopping is not None and (
            not isinstance(self.early_stopping, int) or self.early_stopping < 1
        ):
            raise ValueError(
                "`early_stopping` must be None or a patience >= 1 (epochs). "
                f"Received: {self.early_stopping!r}"
            )
        for name, low in (("w0", 0.0), ("sigma", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= low:
                raise ValueError(
                    f"`{name}` must be a number >= {low}. Received: {value!r}"
                )
        if self.sigma == 0:
            raise ValueError("`sigma` must be > 0 (the paper uses 5 px).")
        if (
            not isinstance(self.dropout, int | float)
            or not 0 <= self.dropout < 1
        ):
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: {self.dropout!r}"
            )
        recipe = self.recipe()
        if (
            isinstance(recipe.batch_size, bool)
            or not isinstance(recipe.batch_size, int)
            or recipe.batch_size < 1
        ):
            raise ValueError(
                "`batch_size` must be an integer >= 1. "
                f"Received: {recipe.batch_size!r}"
            )
        if not isinstance(recipe.learning_rate, int | float) or not (
            recipe.learning_rate > 0
        ):
            raise ValueError(
                "`learning_rate` must be a number > 0. "
                f"Received: {recipe.learning_rate!r}"
            )
        if recipe.weights not in ("unet", "balanced", "none"):
            raise ValueError(
                "`weights` must be 'unet', 'balanced' or 'none'. "
                f"Received: {recipe.weights!r}"
            )
        if recipe.augment not in ("paper", "flips", "none"):
            raise ValueError(
                "`augment` must be 'paper', 'flips' or 'none'. "
                f"Received: {recipe.augment!r}"
            )
        make_optimizer(recipe.optimizer, recipe.learning_rate, recipe.momentum)
        geometry.check_input_size(
            self.input_size,
            self.depth,
            self.padding,
            received=f"input_size={self.input_size}",
        )
        return recipe


@dataclasses.dataclass
class Prepared:
    """Training-ready arrays: float/uint images, class labels, weights."""

    images: list
    labels: list
    weights: list
    names: list
    num_classes: int
    class_of_interest: int
    description: str


def load_data(config: TrainConfig):
    """Read the dataset named by `config` as a `datasets.ImageSet`."""
    from keras_unet import datasets

    if config.format == "synthetic":
        return datasets.load_synthetic(
            config.synthetic_count, config.synthetic_size, config.seed
        )
    if config.format == "isbi2012":
        return datasets.load_isbi2012(config.data, "train")
    if config.format == "ctc":
        return datasets.load_ctc(config.data)
    return datasets.load_folders(
        config.data,
        config.masks,
        mask_suffix=config.mask_suffix,
        mask_type=config.mask_type,
    )


def prepare(imageset, recipe, cache_dir, w0=10.0, sigma=5.0) -> Prepared:
    """Class labels and weight maps for training, from an `ImageSet`.

    Instance annotations become binary targets with separation lines
    between touching cells (`keras_unet.weights.separate_instances`).
    Weight maps follow the recipe: "unet" (the paper's maps, cached in
    `cache_dir`), "balanced" (class balance only) or "none" (ones); pixels
    marked in ``imageset.ignore`` get weight 0.
    """
    from keras_unet import weights as wm

    n = len(imageset)
    if imageset.labels is None and imageset.instances is None:
        raise ValueError(
            f"{imageset.description} has no annotations to train on."
        )
    if imageset.instances is not None:
        kind, source = "instances", imageset.instances
    else:
        kind, source = "classes", imageset.labels
    binary = imageset.num_classes == 2
    if recipe.weights in ("unet", "balanced") and binary:
        label_type = "instances" if kind == "instances" else "binary"
        pairs = wm.cached_weight_maps(
            source,
            cache_dir,
            return_targets=True,
            w0=w0 if recipe.weights == "unet" else 0.0,
            sigma=sigma,
            label_type=label_type,
        )
        labels = [np.asarray(t, np.int32) for t, _ in pairs]
        weights = [np.asarray(w, np.float32) for _, w in pairs]
    else:
        if kind == "instances":
            labels = [wm.separate_instances(s).astype(np.int32) for s in source]
        else:
            labels = [np.asarray(s, np.int32) for s in source]
        if recipe.weights == "none":
            weights = [np.ones(lb.shape, np.float32) for lb in labels]
        else:  # multi-class: class balance only
            weights = [
                wm.class_balance_weights(lb).astype(np.float32) for lb in labels
            ]
    if imageset.ignore is not None:
        weights = [w * (~ig) for w, ig in zip(weights, imageset.ignore)]
    return Prepared(
        images=list(imageset.images),
        labels=labels,
        weights=weights,
        names=list(imageset.names),
        num_classes=max(imageset.num_classes, 2),
        class_of_interest=imageset.class_of_interest,
        description=f"{imageset.description} ({n} images)",
    )


def split_validation(
    n, fraction, seed, names=None, val_names=None, holdout_names=None
):
    """Indices (train, val): `val_names` if given, else a seeded fraction.

    Images named in `holdout_names` are in neither list.
    """
    for what, chosen in (
        ("val_names", val_names),
        ("holdout_names", holdout_names),
    ):
        missing = sorted(set(chosen or []) - set(names or []))
        if missing:
            raise ValueError(f"{what} {missing} are not in the data.")
    held = {
        i
        for i, name in enumerate(names or [])
        if name in set(holdout_names or [])
    }
    pool = [i for i in range(n) if i not in held]
    if val_names:
        val = [i for i, name in enumerate(names) if name in set(val_names)]
        if held & set(val):
            raise ValueError(
                "An image cannot be both in val_names and holdout_names."
            )
    else:
        k = int(round(len(pool) * fraction))
        if fraction > 0 and k == 0 and len(pool) > 1:
            k = 1
        rng = np.random.default_rng(seed)
        val = sorted(rng.permutation(pool)[:k].tolist()) if k else []
    train = [i for i in pool if i not in set(val)]
    if not train:
        raise ValueError(
            f"No image left for training: {n} image(s), {len(val)} for "
            "validation. Lower val_fraction."
        )
    return train, val


def _check_output(path, resume):
    out = pathlib.Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".keras_unet_write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"Cannot write to the output folder {out}: {err.strerror}. "
            "Choose another --output."
        ) from None
    found = [n for n in ("last.keras", "state.json") if (out / n).exists()]
    if found and not resume:
        raise FileExistsError(
            f"{out} already holds a training run ({', '.join(found)}). Pass "
            "--resume to continue it, or choose another --output; nothing "
            "was overwritten."
        )
    if resume and len(found) < 2:
        missing = {"last.keras", "state.json"} - set(found)
        raise FileNotFoundError(
            f"--resume: {out} holds no run to resume (missing "
            f"{', '.join(sorted(missing))})."
        )
    return out


def _write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def _versions():
    import tensorflow as tf

    import keras_unet

    return {
        "keras_unet": keras_unet.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "backend": keras.backend.backend(),
    }


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    model: object
    history: dict
    output: pathlib.Path
    config: TrainConfig
    data: Prepared
    train_indices: list
    val_indices: list
    interrupted: bool = False
    replicas: int = 1


def train(config: TrainConfig, callbacks=None) -> TrainResult:
    """Train a U-Net end to end, as ``keras-unet train`` does.

    Writes to ``config.output``: ``best.keras`` and ``last.keras`` (atomic),
    ``state.json`` (resume state), ``config.json`` (the resolved settings,
    so the run can be repeated with ``--config``), ``log.csv``,
    ``training_curve.png`` and ``tensorboard/``. All input problems are
    reported before training starts. Ctrl-C saves ``last.keras`` and
    ``state.json`` and re-raises KeyboardInterrupt; ``resume=True``
    continues from them with the optimizer state and the exact data stream.

    Args:
        config: the settings.
        callbacks: extra Keras callbacks, appended to the standard ones.
    """
    import tensorflow as tf

    from keras_unet import data as unet_data
    from keras_unet.model import build_unet, load_model

    recipe = config.check()
    out = _check_output(config.output, config.resume)
    state = {}
    if config.resume:
        state = json.loads((out / "state.json").read_text())

    imageset = load_data(config)
    cache_dir = config.cache_dir or str(out / "weight_cache")
    prepared = prepare(imageset, recipe, cache_dir, config.w0, config.sigma)
    train_idx, val_idx = split_validation(
        len(prepared.images),
        config.val_fraction,
        config.seed,
        prepared.names,
        config.val_names,
        config.holdout_names,
    )

    def pick(items, idx):
        return [items[i] for i in idx]

    channels = {1 if im.ndim == 2 else im.shape[-1] for im in prepared.images}
    if len(channels) != 1:
        raise ValueError(
            f"Images have different channel counts: {sorted(channels)}."
        )
    channels = channels.pop()

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    strategy = None
    if config.distribute:
        # All local GPUs; without GPUs, all (logical) CPU devices.
        devices = tf.config.list_logical_devices("GPU") or (
            tf.config.list_logical_devices("CPU")
        )
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    replicas = strategy.num_replicas_in_sync if strategy else 1
    global_batch = recipe.batch_size * replicas

    def training_stream(start, validate=True):
        """The training tiles from sample `start` on (resumable)."""
        return unet_data.make_training_dataset(
            pick(prepared.images, train_idx),
            pick(prepared.labels, train_idx),
            pick(prepared.weights, train_idx),
            input_size=config.input_size,
            depth=config.depth,
            padding=config.padding,
            seed=config.seed,
            num_classes=prepared.num_classes,
            batch_size=global_batch,
            augment=recipe.augment,
            start=start,
            validate=validate,
        )

    train_ds = training_stream(int(state.get("samples_drawn", 0)))
    val_ds = None
    if val_idx:
        val_ds = unet_data.make_validation_dataset(
            pick(prepared.images, val_idx),
            pick(prepared.labels, val_idx),
            pick(prepared.weights, val_idx),
            input_size=config.input_size,
            depth=config.depth,
            padding=config.padding,
            num_classes=prepared.num_classes,
            batch_size=global_batch,
        )

    # "config" holds the settings as given (recipe fields left to the
    # preset stay None, so --config with another --preset works);
    # "recipe" is what they resolved to.
    _write_json(
        out / "config.json",
        {
            "config": dataclasses.asdict(
                dataclasses.replace(config, resume=False)
            ),
            "recipe": dataclasses.asdict(recipe),
            "num_classes": prepared.num_classes,
            "class_of_interest": prepared.class_of_interest,
            "channels": channels,
            "data": prepared.description,
            "train_names": pick(prepared.names, train_idx),
            "val_names": pick(prepared.names, val_idx),
            "versions": _versions(),
        },
    )

    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")
    try:
        scope = strategy.scope() if strategy else contextlib.nullcontext()
        with scope:
            if config.resume:
                model = load_model(out / "last.keras")
            else:
                model = build_unet(
                    (None, None, channels),
                    num_classes=prepared.num_classes,
                    depth=config.depth,
                    filters=config.filters,
                    dropout=config.dropout,
                    padding=config.padding,
                    batch_norm=config.batch_norm,
                    seed=config.seed,
                )
                compile_unet(
                    model,
                    config.preset,
                    optimizer=recipe.optimizer,
                    learning_rate=recipe.learning_rate,
                    momentum=recipe.momentum,
                    jit_compile=config.xla,
                )
    finally:
        keras.config.set_dtype_policy(previous_policy)

    extra_callbacks = callbacks
    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks = training_callbacks(
        out,
        monitor=monitor,
        early_stopping=config.early_stopping,
        tensorboard=config.tensorboard,
        batch_size=global_batch,
        append_log=config.resume,
    )
    callbacks += list(extra_callbacks or [])
    checkpoint = callbacks[0]
    checkpoint.restore(state)
    epochs_done = checkpoint.epochs_done
    within = checkpoint.steps_done - epochs_done * config.steps
    if (
        within >= config.steps
    ):  # interrupted after its steps, e.g. in validation
        epochs_done += within // config.steps
        within %= config.steps
    history = {}
    interrupted = False
    fit_kwargs = dict(
        validation_data=val_ds,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=False,  # the stream is shuffled by itself
    )
    try:
        if 0 < within < config.steps and epochs_done < config.epochs:
            # Finish the interrupted epoch first, then continue the stream
            # after the samples that epoch draws.
            h = model.fit(
                train_ds,
                initial_epoch=epochs_done,
                epochs=epochs_done + 1,
                steps_per_epoch=config.steps - within,
                **fit_kwargs,
            )
            _merge(history, h.history)
            epochs_done += 1
            train_ds = training_stream(checkpoint.samples_drawn)
        if epochs_done < config.epochs and not model.stop_training:
            h = model.fit(
                train_ds,
                initial_epoch=epochs_done,
                epochs=config.epochs,
                steps_per_epoch=config.steps,
                **fit_kwargs,
            )
            _merge(history, h.history)
    except KeyboardInterrupt:
        interrupted = True
        if checkpoint.model is None:  # interrupted before training began
            raise
        saved = checkpoint.save_last(interrupted=True)
        for callback in callbacks:  # close the CSV and TensorBoard writers
            if isinstance(
                callback,
                keras.callbacks.CSVLogger | keras.callbacks.TensorBoard,
            ):
                callback.on_train_end()
        print(
            f"\nInterrupted: saved {checkpoint.last_path} after "
            f"{saved['steps_done']} steps; continue with --resume."
        )
        raise
    finally:
        write_training_curve(out / "log.csv", out / "training_curve.png")
    return TrainResult(
        model=model,
        history=history,
        output=out,
        config=config,
        data=prepared,
        train_indices=train_idx,
        val_indices=val_idx,
        interrupted=interrupted,
        replicas=replicas,
    )


def _merge(history, new):
    for key, values in new.items():
        history.setdefault(key, []).extend(values)
