"""# Prediction, evaluation and export

What it shows: overlap-tile prediction of images of any size (exact: no
seams), test-time augmentation over the 8 rotations/flips, the ISBI 2012
measures and the Cell Tracking Challenge SEG IoU, and the export of a
SavedModel for TensorFlow Serving, reloaded with TensorFlow alone.

Needs a model: by default the one `02_training.py` wrote
(`examples_output/02_run/best.keras`); with `--quick` it trains a tiny one
itself. Time: about 20 s on 2 CPU cores (`--quick` about 15 s). GPU: not
needed.

    python examples/03_prediction.py [--model FILE] [--out examples_output]
"""

import argparse
import pathlib

import numpy as np
from scipy import ndimage

import keras_unet
from keras_unet import figures
from keras_unet.data import synthetic, weight_maps
from keras_unet.evaluation.isbi import isbi_scores
from keras_unet.evaluation.seg import seg_iou

"""## A model"""


def get_model(path, quick, out):
    if path:
        return keras_unet.load_model(path, compile=False)
    default = out / "02_run" / "best.keras"
    if default.is_file() and not quick:
        return keras_unet.load_model(default, compile=False)
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "training", pathlib.Path(__file__).with_name("02_training.py")
    )
    training = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(training)
    training.main(["--quick", "--out", str(out / "03_tmp")])
    return keras_unet.load_model(
        out / "03_tmp" / "02_run" / "best.keras", compile=False
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a .keras model (default: 02_training.py's)")
    p.add_argument("--out", default="examples_output")
    p.add_argument("--quick", action="store_true", help="small and fast (CI)")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    model = get_model(args.model, args.quick, out)

    """## Held-out images of an odd size, segmented tile by tile"""
    images, instances = synthetic.synthetic_cells(2, size=(300, 417), seed=99)
    for i, (image, inst) in enumerate(zip(images, instances)):
        probs = keras_unet.predict_tiled(model, image, tta="d4", verbose=0)
        cells = probs[..., 1] > 0.5
        """### Scores: ISBI 2012 measures and SEG IoU"""
        target = weight_maps.separate_instances(inst)  # cells 1, borders 0
        scores = isbi_scores(probs[..., 0], target)
        segmented, _ = ndimage.label(cells)
        seg = seg_iou(segmented, inst)
        print(
            f"image {i}: pixel {scores['pixel_error']:.4f} rand "
            f"{scores['rand_error']:.4f} warping {scores['warping_error']:.5f} "
            f"SEG {seg:.3f}"
        )
        figures.save_panels(
            out / f"03_prediction_{i}.png",
            [
                image,
                figures.colormap(probs[..., 1], 0, 1),
                figures.color_instances(segmented),
            ],
            ["image", "cell probability (TTA)", "segmented cells"],
        )

    """## Export for TensorFlow Serving and reload with TensorFlow only"""
    export_dir = out / "03_serving" / "unet" / "1"
    keras_unet.export_saved_model(model, export_dir, overwrite=True)
    import tensorflow as tf

    served = tf.saved_model.load(str(export_dir))
    result = served.signatures["serving_default"](image=tf.constant(images[0]))
    served_probs = result["probabilities"].numpy()
    local = keras_unet.predict_tiled(model, images[0], verbose=0)
    print(
        f"SavedModel output {served_probs.shape}, max difference to "
        f"predict_tiled {np.abs(served_probs - local).max():.2e}"
    )
    assert np.abs(served_probs - local).max() < 1e-4


if __name__ == "__main__":
    main()
