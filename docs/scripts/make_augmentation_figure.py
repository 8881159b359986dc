"""Draw docs/figures/augmentation.png from the real augmentation code.

Shows an ISBI 2012 slice (or synthetic cells when the shared data is not
next to the repository) and several random training tiles of it as the
pipeline produces them: elastic deformation (3x3 grid, sigma 10 px),
rotation, flips and gray-value variation, with the label tile outlined in
the input tile and shown next to it.

Run: python docs/scripts/make_augmentation_figure.py
"""

import os
import pathlib
import sys

import cv2
import keras
import numpy as np

from keras_unet import figures
from keras_unet.data import stream
from keras_unet.data.normalize import to_float_image
from keras_unet.data.synthetic import synthetic_cells
from keras_unet.io.images import read_image, write_image

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = (
    pathlib.Path(os.environ.get("KERAS_UNET_FIGURE_DIR", ""))
    / "augmentation.png"
    if os.environ.get("KERAS_UNET_FIGURE_DIR")
    else ROOT / "docs" / "figures" / "augmentation.png"
)
ISBI = ROOT.parent / "shared" / "data" / "isbi2012-em" / "train"


def load():
    if (ISBI / "image" / "00.png").is_file():
        image = read_image(ISBI / "image" / "00.png")
        labels = (read_image(ISBI / "label" / "00.png") > 0).astype(np.int32)
        return image, labels, "ISBI 2012 slice 00"
    images, instances = synthetic_cells(1, 512, seed=0)
    return images[0], (instances[0] > 0).astype(np.int32), "synthetic cells"


def main():
    image, labels, name = load()
    panels = [image, figures.overlay(image, labels == 0)]
    titles = [name, "label (membrane red)"]
    # the paper's augmentation, as the training pipeline makes it
    ds = stream.make_training_dataset(
        [to_float_image(image)], [labels], seed=0, pipeline="py_dataset"
    )
    m = (572 - 388) // 2
    for i in range(3):
        tx, ty, _ = (keras.ops.convert_to_numpy(t)[0] for t in ds[i])
        tile = figures.to_display(tx[..., 0])
        tile[m, m : m + 388] = tile[m + 387, m : m + 388] = (255, 200, 0)
        tile[m : m + 388, m] = tile[m : m + 388, m + 387] = (255, 200, 0)
        panels += [
            tile,
            figures.overlay(tx[m : m + 388, m : m + 388, 0], ty == 0),
        ]
        titles += [f"input tile 572, sample {i}", "its 388 label tile"]
    grid = figures.panel_grid(panels, titles, ncols=4)
    half = cv2.resize(grid, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    write_image(OUT, half)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
