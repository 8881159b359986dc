"""# Training: the paper's U-Net with model.fit

What it shows: training with plain `model.fit` on the keras_unet pipeline:
the weighted soft-max cross entropy (`WeightedCrossentropy`) with the
paper's weight maps passed as per-pixel `sample_weight`, a recipe from
`keras_unet.training.recipes.PRESETS` (optimizer with a learning-rate warm-up),
and the standard callbacks of `keras_unet.training.callbacks` (atomic best/last
checkpoints that can be resumed, a run that diverges fails loudly, CSV and
TensorBoard logs, training curve). It runs on every Keras backend: set
KERAS_BACKEND=jax or torch to train on JAX or PyTorch.

Data: the built-in synthetic cells, or an ISBI 2012 folder (`--isbi PATH`).
Time: about 2 minutes on 2 CPU cores (depth 3, 16 filters, 188 px tiles);
`--quick` about 15 s. On a GPU, raise `--filters 64 --depth 4 --size 572`
for the paper's network (about 80 steps/s on an H100).

    python examples/02_training.py [--isbi PATH] [--out examples_output]
"""

import argparse
import pathlib

from keras_unet import build_unet
from keras_unet.data import isbi2012, prepare, stream, synthetic, validation
from keras_unet.training import callbacks, recipes

"""## Data, targets and weight maps, as the recipe asks"""


def load_data(isbi, quick, cache, recipe):
    if isbi:
        imageset = isbi2012.load_isbi2012(isbi)
    else:
        imageset = synthetic.load_synthetic(
            3 if quick else 10, size=256, seed=0
        )
    # the paper's maps, class balance only, or ones (recipe.weights)
    prepared = prepare.prepare(imageset, recipe.weights, cache)
    return prepared.images, prepared.labels, prepared.weights


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--isbi", help="an ISBI 2012 folder instead of synthetic cells"
    )
    p.add_argument("--out", default="examples_output")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--size", type=int, default=188)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--preset", default="adam", choices=sorted(recipes.PRESETS))
    p.add_argument("--quick", action="store_true", help="small and fast (CI)")
    args = p.parse_args(argv)
    if args.quick:
        args.filters, args.steps, args.epochs = 4, 3, 2
    out = pathlib.Path(args.out)
    recipe = recipes.recipe(args.preset)
    images, targets, wmaps = load_data(
        args.isbi, args.quick, out / "weight_cache", recipe
    )
    n_val = max(1, len(images) // 5)

    """## The pipeline: random tiles, the paper's augmentation, (x, y, w)"""
    train_ds = stream.make_training_dataset(
        images[n_val:],
        targets[n_val:],
        wmaps[n_val:],
        input_size=args.size,
        depth=args.depth,
        seed=0,
        batch_size=recipe.batch_size,
        augment=recipe.augment,
    )
    val_ds = validation.make_validation_dataset(
        images[:n_val],
        targets[:n_val],
        wmaps[:n_val],
        input_size=args.size,
        depth=args.depth,
        batch_size=recipe.batch_size,
    )

    """## Model, loss and callbacks"""
    model = build_unet(
        (None, None, 1), depth=args.depth, filters=args.filters, seed=0
    )
    recipes.compile_unet(
        model, args.preset, total_steps=args.steps * args.epochs
    )
    print(f"recipe {args.preset}: {recipe}")
    run = out / "02_run"
    if (run / "last.keras").exists():
        raise SystemExit(f"{run} holds a run already; remove it or use --out")
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        steps_per_epoch=args.steps,
        epochs=args.epochs,
        callbacks=callbacks.training_callbacks(
            run, tensorboard=not args.quick, batch_size=recipe.batch_size
        ),
        shuffle=False,  # the stream shuffles itself
        verbose=2,
    )
    print(
        f"final loss {history.history['loss'][-1]:.4f}, val loss "
        f"{history.history['val_loss'][-1]:.4f}; wrote {run}/best.keras, "
        f"{run}/training_curve.png"
    )


if __name__ == "__main__":
    main()
