"""`TrainConfig`: every setting of a training run, stated once.

Each field carries its help text, its choices or bounds, and its
command-line flag in the field metadata; ``keras-unet train`` builds its
options from them (`keras_unet.cli`), `TrainConfig.check` validates with
them, and ``config.json`` of a run stores the fields, so that
``keras-unet train --config run/config.json`` repeats the run.

This module imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import typing

from keras_unet.checks import check_choice, check_int, check_number
from keras_unet.model import geometry
from keras_unet.training.recipes import (
    AUGMENTATIONS,
    DEFAULT_PRESET,
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    WEIGHTS,
    Recipe,
    recipe,
)

__all__ = ["FORMATS", "RESUMABLE", "TrainConfig", "option", "value_type"]

FORMATS = ("isbi2012", "ctc", "folders", "synthetic")
#: Settings a resumed run may change; the others must stay as stored.
#: (``output`` too: a run folder that was moved or copied still resumes.)
RESUMABLE = (
    "epochs",
    "early_stopping",
    "verbose",
    "tensorboard",
    "resume",
    "cache_dir",
    "xla",
    "deterministic",
    "save_every",
    "output",
)


def option(
    default,
    help,
    *,
    flag=None,
    choices=None,
    minimum=None,
    maximum=None,
    group="training",
    preset=False,
    metavar=None,
    cli=True,
):
    """A `TrainConfig` field with its help, rules and command-line flag.

    Args:
        default: the field's default.
        help: one line for ``--help``.
        flag: the command-line flag (default ``--field-name``).
        choices: allowed values.
        minimum: smallest allowed number (inclusive).
        maximum: upper bound (exclusive).
        group: the ``--help`` section.
        preset: None means "take it from the preset".
        metavar: the value's name in ``--help``.
        cli: expose it as a command-line option.
    """
    metadata = dict(
        help=help,
        flag=flag,
        choices=choices,
        minimum=minimum,
        maximum=maximum,
        group=group,
        preset=preset,
        metavar=metavar,
        cli=cli,
    )
    if isinstance(default, list):
        return dataclasses.field(
            default_factory=lambda: list(default), metadata=metadata
        )
    return dataclasses.field(default=default, metadata=metadata)


def _from_preset(help, kind, choices=None, minimum=None):
    """A recipe field: None takes the preset's value."""
    return option(
        None,
        f"{help} (default: from --preset)",
        preset=True,
        choices=choices,
        minimum=minimum,
        group="recipe",
        metavar=None if choices else kind.upper(),
    )


@dataclasses.dataclass
class TrainConfig:
    """Everything `keras_unet.training.train.train` needs; stored in
    ``config.json``.

    Data: `data` is a path (None for the built-in synthetic cells), `format`
    one of `FORMATS`. For "folders", `data` is the image folder and `masks`
    the mask folder. `val_names` (else a seeded `val_fraction`) picks the
    validation images, which decide ``best.keras`` and the decision
    threshold; `holdout_names` are left out of training and validation
    altogether (keep them for an unbiased test). Recipe fields left None
    come from `preset` (see `keras_unet.training.recipes.PRESETS`).

    Examples:
        >>> config = TrainConfig(filters=16, steps=150)
        >>> config.recipe().learning_rate
        0.001
    """

    # data
    data: str | None = option(
        None,
        "dataset path: ISBI 2012 folder, Cell "
        "Tracking Challenge folder, or image folder for --format folders; "
        "omit for the built-in synthetic cells",
        group="data",
    )
    format: str | None = option(
        None,
        "dataset layout (default: isbi2012 "
        "when --data is given, folders with --masks, else synthetic)",
        choices=(None, *FORMATS),
        group="data",
    )
    masks: str | None = option(
        None, "mask folder (--format folders)", group="data"
    )
    mask_suffix: str = option(
        "",
        "suffix of mask file stems, e.g. _mask (--format folders)",
        group="data",
    )
    mask_type: str = option(
        "classes",
        "folders: class-index masks or instance ids",
        choices=("classes", "instances"),
        group="data",
    )
    synthetic_count: int = option(
        12, "synthetic images to make", minimum=2, group="data"
    )
    synthetic_size: int = option(
        256, "size of the synthetic images (px)", minimum=16, group="data"
    )
    val_fraction: float = option(
        0.2,
        "fraction of the training images used "
        "for validation, which picks best.keras and the decision threshold",
        minimum=0.0,
        maximum=1.0,
        group="data",
    )
    val_names: list | None = option(
        None,
        "validate on these images (file "
        "stems, e.g. 16 17) instead of a random --val-fraction",
        metavar="NAME",
        group="data",
    )
    holdout_names: list | None = option(
        None,
        "leave these images (file "
        "stems, e.g. 20 21 22 23) out of training and validation, to test "
        "on them afterwards",
        flag="--holdout",
        metavar="NAME",
        group="data",
    )
    # model
    depth: int = option(4, "number of 2x2 max-pools", minimum=1, group="model")
    filters: int = option(
        64,
        "channels of the first level, doubled at every level",
        minimum=1,
        group="model",
    )
    dropout: float = option(
        0.5,
        "dropout rate at the end of the contracting path (0 disables it)",
        minimum=0.0,
        maximum=1.0,
        group="model",
    )
    batch_norm: bool = option(
        False,
        "batch normalization after every 3x3 convolution (not in the paper)",
        group="model",
    )
    padding: str = option(
        "valid",
        "'valid' (the paper: unpadded "
        "convolutions, output smaller than input) or 'same'",
        choices=geometry.PADDINGS,
        group="model",
    )
    input_size: int = option(
        572,
        "training tile size in px; with valid "
        "padding n_min + 2**depth*k (188 + 16k for depth 4)",
        minimum=1,
        group="model",
    )
    # recipe
    preset: str = option(
        DEFAULT_PRESET,
        "training recipe: adam (Adam, the "
        "paper's weight maps and augmentation), paper (the paper's SGD with "
        "momentum 0.99), plain (a typical Keras script: Adam, unweighted "
        "cross entropy, flips only), large-batch (adam with 8 tiles per "
        "step)",
        choices=tuple(PRESETS),
        group="recipe",
    )
    optimizer: str | None = _from_preset("optimizer", "str", choices=OPTIMIZERS)
    learning_rate: float | None = _from_preset(
        "peak learning rate", "float", minimum=0.0
    )
    momentum: float | None = _from_preset("SGD momentum", "float", minimum=0.0)
    batch_size: int | None = _from_preset(
        "tiles per step, per device with --distribute", "int", minimum=1
    )
    weights: str | None = _from_preset(
        "loss weights: the paper's maps, class balance only, or none",
        "str",
        choices=WEIGHTS,
    )
    augment: str | None = _from_preset(
        "augmentation", "str", choices=AUGMENTATIONS
    )
    warmup_steps: int | None = _from_preset(
        "steps of linear learning-rate warm-up", "int", minimum=0
    )
    schedule: str | None = _from_preset(
        "learning rate after the warm-up: constant, or cosine decay to 0 at "
        "the end of the run",
        "str",
        choices=SCHEDULES,
    )
    w0: float = option(
        10.0,
        "border weight w0 of the paper's maps",
        minimum=0.0,
        group="recipe",
    )
    sigma: float = option(
        5.0,
        "border width sigma of the paper's maps (px)",
        minimum=0.0,
        group="recipe",
    )
    # schedule
    steps: int = option(100, "steps per epoch", minimum=1)
    epochs: int = option(10, "epochs", minimum=1)
    early_stopping: int | None = option(
        None,
        "stop after PATIENCE epochs without improvement",
        minimum=1,
        metavar="PATIENCE",
    )
    seed: int = option(
        0, "random seed (weights, data order, augmentation)", minimum=0
    )
    # execution
    output: str = option("runs/unet", "output folder", group="execution")
    save_every: int = option(
        1,
        "epochs between last.keras writes (model "
        "and optimizer: 370 MB at the paper's size; also written at the "
        "end and on Ctrl-C)",
        minimum=1,
        metavar="EPOCHS",
        group="execution",
    )
    resume: bool = option(
        False,
        "continue the run in --output from "
        "last.keras, with the settings of its config.json (options given "
        "here win)",
        group="execution",
    )
    mixed_precision: str | None = option(
        None,
        "mixed precision (float16 uses loss scaling)",
        choices=(None, "float16", "bfloat16"),
        group="execution",
    )
    xla: bool = option(
        False, "compile the training step with XLA", group="execution"
    )
    distribute: str | None = option(
        None,
        "data-parallel training "
        "(TensorFlow): mirrored on all local GPUs, or multi-worker on the "
        "machines named in TF_CONFIG (see docs/scaling.md)",
        choices=(None, "mirrored", "multi-worker"),
        group="execution",
    )
    deterministic: bool = option(
        False, "deterministic ops, slower", group="execution"
    )
    tensorboard: bool = option(
        True,
        "write TensorBoard logs (needs TensorFlow installed)",
        group="execution",
    )
    cache_dir: str | None = option(
        None,
        "weight-map cache folder (default OUTPUT/weight_cache)",
        group="execution",
    )
    verbose: int = option(
        1,
        "Keras progress output: 0 silent, 1 bar, 2 a line per epoch",
        choices=(0, 1, 2),
        group="execution",
        cli=False,
    )

    def __post_init__(self):
        if self.format is None:  # what the data arguments say
            if self.masks:
                self.format = "folders"
            else:
                self.format = "isbi2012" if self.data else "synthetic"

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
        if isinstance(values, dict):
            values = values.get("config", values)
        if not isinstance(values, dict):
            raise ValueError(
                f"{path} holds a JSON {type(values).__name__}, not an object "
                'of settings such as {"filters": 16}: pass a config.json.'
            )
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
        """The preset's recipe with this config's recipe fields applied."""
        fields = [f.name for f in dataclasses.fields(Recipe)]
        return recipe(self.preset, **{k: getattr(self, k) for k in fields})

    def check(self) -> Recipe:
        """Validate every setting (one-line errors); returns the recipe."""
        for field in dataclasses.fields(self):
            _check_field(field, getattr(self, field.name))
        if not str(self.output).strip():
            raise ValueError("`output` is empty: give the run's folder.")
        if self.format != "synthetic" and not self.data:
            raise ValueError(
                f"`data` (a path) is needed for format={self.format!r}."
            )
        if self.format == "synthetic" and self.data:
            raise ValueError(
                "`data` is given but format='synthetic' (the built-in cells) "
                "would not read it: pass format='isbi2012', 'ctc' or "
                f"'folders'. Received: data={self.data!r}"
            )
        if self.format == "folders" and not self.masks:
            raise ValueError(
                "format='folders' needs `masks` (the mask folder)."
            )
        if self.sigma == 0:
            raise ValueError("`sigma` must be > 0 (the paper uses 5 px).")
        geometry.UNetGeometry(self.depth, self.padding).check(
            self.input_size, received=f"input_size={self.input_size}"
        )
        return self.recipe()


def _check_field(field, value):
    """Check one value against its field's metadata (ValueError)."""
    try:
        _check_value(field, value)
    except TypeError as err:
        raise ValueError(str(err)) from None


def value_type(field) -> type:
    """The type of a `TrainConfig` field's values, ``None`` aside: bool,
    int, float, str or list (from the field's type hint).

    Examples:
        >>> [value_type(f) for f in dataclasses.fields(TrainConfig)][:3]
        [<class 'str'>, <class 'str'>, <class 'str'>]
    """
    hint = _type_hints()[field.name]
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = typing.get_origin(kinds[0]) or kinds[0]
    return kind


@functools.cache
def _type_hints():
    return typing.get_type_hints(TrainConfig)


def _check_value(field, value):
    meta = field.metadata
    if value is None and (meta.get("preset") or field.default is None):
        return
    kind = value_type(field)
    if meta.get("choices") is not None:
        check_choice(value, field.name, meta["choices"])
    elif kind is bool:
        if not isinstance(value, bool):
            raise ValueError(
                f"`{field.name}` must be true or false. "
                f"Received: {field.name}={value!r}"
            )
    elif kind is int:
        check_int(value, field.name, meta.get("minimum") or 0)
    elif kind is float:
        check_number(
            value, field.name, meta.get("minimum"), meta.get("maximum")
        )
    elif kind is list and not isinstance(value, list | tuple):
        raise ValueError(
            f"`{field.name}` must be a list of names. "
            f"Received: {field.name}={value!r}"
        )
