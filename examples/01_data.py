"""# Data: instances, the paper's weight maps and augmented training tiles

What it shows: how keras_unet turns annotated images into what the network
trains on. Instance labels (one id per cell) become a binary target in which
touching cells are split by thin background lines, plus the paper's weight
map (class balance + large weights on the borders between touching cells).
The tf.data pipeline then cuts random 572 px tiles with the context margin,
applies the paper's elastic deformation, rotation, flips and gray-value
variation, and crops labels and weights to the 388 px output.

Data: the built-in synthetic cells, or an ISBI 2012 folder (`--isbi PATH`).
Time: about 10 s on 2 CPU cores; `--quick` about 5 s. GPU: not needed.

    python examples/01_data.py [--isbi PATH/isbi2012-em] [--out examples_output]
"""

import argparse
import pathlib

import keras
import numpy as np

from keras_unet import figures
from keras_unet.data import isbi2012, stream, synthetic, weight_cache

"""## Read the data"""


def load(isbi, quick):
    if isbi:
        imageset = isbi2012.load_isbi2012(isbi)
        return imageset.subset(range(2 if quick else 6)), "binary"
    n, size = (2, 256) if quick else (6, 512)
    return synthetic.load_synthetic(n, size=size, seed=0), "instances"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--isbi", help="an ISBI 2012 folder instead of synthetic cells"
    )
    p.add_argument("--out", default="examples_output")
    p.add_argument("--quick", action="store_true", help="small and fast (CI)")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    imageset, label_type = load(args.isbi, args.quick)
    annotations = imageset.instances or imageset.labels
    print(f"{imageset.description}: {len(imageset)} images")

    """## Targets and weight maps (cached: computed once per label)"""
    pairs = weight_cache.cached_weight_maps(
        annotations,
        out / "weight_cache",
        return_targets=True,
        label_type=label_type,
    )
    targets = [t for t, _ in pairs]
    wmaps = [w for _, w in pairs]
    print(f"weight map range: {wmaps[0].min():.2f} .. {wmaps[0].max():.2f}")
    figures.weight_map_figure(
        imageset.images[0],
        annotations[0],
        out / "01_weight_map.png",
        label_type=label_type,
    )

    """## The training pipeline"""
    size = 252 if args.quick else 572
    ds = stream.make_training_dataset(
        imageset.images,
        targets,
        wmaps,
        input_size=size,
        depth=4,
        seed=0,
        batch_size=1,
    )
    panels, titles = [], []
    m = (size - (size - 184)) // 2
    # A tf.data.Dataset on TensorFlow, a keras.utils.PyDataset on JAX/torch:
    # both iterate (x, y, w) batches.
    for i, batch in zip(range(3), ds):
        x, y, w = (keras.ops.convert_to_numpy(a)[0] for a in batch)
        panels += [
            x[..., 0],
            figures.overlay(x[m:-m, m:-m, 0], y == 0),
            figures.colormap(w),
        ]
        titles += [f"tile {i}: input {size}", f"label {size - 184}", "weights"]
    figures.save_panels(out / "01_tiles.png", panels, titles, ncols=3)
    print(
        f"tiles: x {x.shape}, y {y.shape}, w {w.shape}; wrote "
        f"{out / '01_weight_map.png'} and {out / '01_tiles.png'}"
    )
    assert np.isfinite(x).all() and set(np.unique(y)) <= {0, 1}


if __name__ == "__main__":
    main()
