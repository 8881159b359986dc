"""Training recipes: optimizer, schedule, loss weighting, augmentation.

`compile_unet(model, preset)` compiles a U-Net with a recipe's optimizer,
the weighted loss and the training metrics; then call ``model.fit`` on a
`keras_unet.make_training_dataset` stream yourself, or let
`keras_unet.training.train.train` do the whole job.

Recipes (`PRESETS`; every field can be overridden):

- ``"adam"`` (the default): Adam 1e-3 after a linear warm-up, then a
  cosine decay to 0 at the end of the run; one 572 px tile per step (the
  paper's "large tiles over large batches"), the paper's weight maps (class
  balance + separation borders, w0=10, sigma=5) and augmentation.
- ``"paper"``: the paper's optimizer, SGD with momentum 0.99 at a constant
  rate after the warm-up, otherwise as "adam". The learning rate is 1e-4
  with the weighted loss normalized by the sum of weights: with momentum
  0.99 the steady-state step is 100x the learning rate, and 1e-2 collapsed
  to all-membrane in this project's tests.
- ``"plain"``: what a typical Keras script does: constant Adam 1e-3,
  unweighted cross entropy, flips and 90-degree rotations only (with the
  same warm-up, so that it trains at the paper's model size too).
- ``"large-batch"``: as "adam" with 8 tiles per step.

Why the warm-up: Adam's first update moves every weight by about the
learning rate in the direction of its gradient's sign. At the paper's
width (64 filters; 4,608 inputs per unit in the widest 3x3 convolutions)
these moves add up coherently, and the second step's loss was 1,836 times
the first's (0.65 -> 1,836) in this project's measurements
(benchmarks/stability.py); a warm-up from 1% of the rate avoids it.
"""

from __future__ import annotations

import dataclasses

from keras_unet.checks import check_choice, check_int, check_number
from keras_unet.data.prepare import WEIGHTS

__all__ = [
    "AUGMENTATIONS",
    "DEFAULT_PRESET",
    "OPTIMIZERS",
    "PRESETS",
    "Recipe",
    "SCHEDULES",
    "WEIGHTS",
    "compile_unet",
    "learning_rate_schedule",
    "make_optimizer",
    "recipe",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
AUGMENTATIONS = ("paper", "flips", "none")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimizer, schedule, batch, loss weighting and augmentation.

    Attributes:
        optimizer: "adam", "adamw" or "sgd".
        learning_rate: the peak learning rate.
        momentum: SGD momentum.
        batch_size: tiles per step.
        weights: "unet" (the paper's maps), "balanced" (class balance
            only) or "none".
        augment: "paper", "flips" or "none".
        warmup_steps: steps of linear warm-up from 1% of the rate.
        schedule: after the warm-up, "constant" or "cosine" (decay to 0 at
            the last step of the run).
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    batch_size: int = 1
    weights: str = "unet"
    augment: str = "paper"
    warmup_steps: int = 100
    schedule: str = "cosine"

    def __post_init__(self):
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_number(self.learning_rate, "learning_rate", 0.0, strict=True)
        check_number(self.momentum, "momentum", 0.0, 1.0)
        check_int(self.batch_size, "batch_size", 1, "tiles per step")
        check_choice(self.weights, "weights", WEIGHTS)
        check_choice(self.augment, "augment", AUGMENTATIONS)
        check_int(self.warmup_steps, "warmup_steps", 0)
        check_choice(self.schedule, "schedule", SCHEDULES)


PRESETS = {
    "adam": Recipe(),
    "paper": Recipe(
        optimizer="sgd", learning_rate=1e-4, momentum=0.99, schedule="constant"
    ),
    "plain": Recipe(weights="none", augment="flips", schedule="constant"),
    "large-batch": Recipe(batch_size=8),
}
DEFAULT_PRESET = "adam"


def recipe(preset=DEFAULT_PRESET, **overrides) -> Recipe:
    """The recipe of a preset with some fields replaced (None: keep).

    Examples:
        >>> recipe("plain", learning_rate=3e-4).weights
        'none'
    """
    check_choice(preset, "preset", tuple(PRESETS))
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(PRESETS[preset], **given)


def learning_rate_schedule(
    rate, warmup_steps=0, total_steps=None, schedule="constant"
):
    """Keras' `CosineDecay` as warm-up + constant or warm-up + cosine.

    The rate rises linearly from 1% over `warmup_steps`, then stays
    (``"constant"``) or decays to 0 at `total_steps` (``"cosine"``).

    Returns:
        A float (no warm-up, constant) or a
        `keras.optimizers.schedules.CosineDecay`.
    """
    import keras

    check_choice(schedule, "schedule", SCHEDULES)
    if schedule == "cosine" and not total_steps:
        raise ValueError(
            "The cosine schedule decays the learning rate to 0 at the end of "
            "the run: pass total_steps=steps_per_epoch * epochs, or "
            "schedule='constant'. Received: total_steps=None"
        )
    if not warmup_steps and schedule == "constant":
        return float(rate)
    cosine = schedule == "cosine"
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.01 * rate if warmup_steps else rate,
        decay_steps=max(int(total_steps) - warmup_steps, 1) if cosine else 1,
        alpha=0.0 if cosine else 1.0,
        warmup_target=float(rate) if warmup_steps else None,
        warmup_steps=int(warmup_steps),
    )


def make_optimizer(name="adam", learning_rate=1e-3, momentum=0.0):
    """A Keras optimizer by name: "adam", "adamw" or "sgd" (with momentum).

    `learning_rate` may be a float or a Keras schedule.
    """
    import keras

    check_choice(name, "optimizer", OPTIMIZERS)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    return keras.optimizers.SGD(learning_rate, momentum=momentum)


def compile_unet(
    model,
    preset=DEFAULT_PRESET,
    *,
    total_steps=None,
    jit_compile=False,
    metrics=True,
    **overrides,
):
    """Compile a U-Net with a recipe's optimizer, loss and metrics.

    This applies the recipe's optimizer, learning rate, warm-up and
    schedule. Its data fields are the stream's: build it with
    ``batch_size=recipe.batch_size`` and ``augment=recipe.augment``, and
    weight maps as `keras_unet.data.prepare.prepare` makes them for
    ``recipe.weights`` (`keras_unet.training.train.train` does all of this).

    The loss is `keras_unet.model.losses.WeightedCrossentropy` (sparse labels):
    per-pixel weights come from the dataset's third element as
    ``sample_weight`` (all ones for an unweighted recipe). Metrics: pixel
    error and foreground IoU on the (valid-padded) outputs, compiled as
    ``weighted_metrics`` so that weight-0 pixels are ignored.

    Args:
        model: a U-Net (logits out), e.g. from `keras_unet.build_unet`.
        preset: a key of `PRESETS`, or a `Recipe`.
        total_steps: the run's length in steps (needed by a cosine
            schedule).
        jit_compile: XLA for the training step.
        metrics: add the keras_unet training metrics.
        **overrides: `Recipe` fields to replace (``learning_rate=3e-4``,
            ``optimizer="sgd"``, ``warmup_steps=0``, ...).

    Returns:
        The `Recipe` used.

    Examples:
        >>> import keras_unet
        >>> model = keras_unet.build_unet((None, None, 1), depth=2, filters=4)
        >>> compile_unet(model, "plain").weights
        'none'
    """
    from keras_unet.model import losses
    from keras_unet.model import metrics as unet_metrics

    if isinstance(preset, Recipe):
        given = {k: v for k, v in overrides.items() if v is not None}
        used = dataclasses.replace(preset, **given)
    else:
        used = recipe(preset, **overrides)
    rate = learning_rate_schedule(
        used.learning_rate, used.warmup_steps, total_steps, used.schedule
    )
    model.compile(
        optimizer=make_optimizer(used.optimizer, rate, used.momentum),
        loss=losses.WeightedCrossentropy(),
        weighted_metrics=[
            unet_metrics.PixelError(),
            unet_metrics.ForegroundIoU(),
        ]
        if metrics
        else None,
        jit_compile=jit_compile,
    )
    return used
