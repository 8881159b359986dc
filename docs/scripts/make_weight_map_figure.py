"""Make docs/figures/weight_map.png: the paper's Fig. 3 on real nuclei.

Reads the DSB 2018 nuclei image and its instance mask from
``../shared/data/stardist-dsb2018-nuclei-2d`` (or ``$KERAS_UNET_SHARED_DATA``),
picks the 160x160 window with the most touching nuclei, and draws image,
instances, separated target and weight map (w0=10, sigma=5, balanced w_c)
at 2x zoom. A second row shows an ISBI 2012 membrane label crop (binary
label, cells = 4-connected components). Takes about a second on CPU.

    python docs/scripts/make_weight_map_figure.py
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from keras_unet.data.weight_maps import separate_instances
from keras_unet.figures import weight_map_figure
from keras_unet.io.images import read_image, write_image

REPO = pathlib.Path(__file__).resolve().parents[2]
DATA = pathlib.Path(
    os.environ.get("KERAS_UNET_SHARED_DATA", REPO.parent / "shared" / "data")
)
OUT = (
    pathlib.Path(os.environ.get("KERAS_UNET_FIGURE_DIR", "")) / "weight_map.png"
    if os.environ.get("KERAS_UNET_FIGURE_DIR")
    else REPO / "docs" / "figures" / "weight_map.png"
)


def busiest_window(mask, size=160, stride=16):
    """Top-left corner of the window with the most separation-line pixels."""
    target = separate_instances(mask)
    lines = ((mask != 0) & (target == 0)).astype(np.int64)
    integral = np.pad(lines.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, corner = -1, (0, 0)
    h, w = mask.shape
    for y in range(0, h - size + 1, stride):
        for x in range(0, w - size + 1, stride):
            s = (
                integral[y + size, x + size]
                - integral[y, x + size]
                - integral[y + size, x]
                + integral[y, x]
            )
            if s > best:
                best, corner = s, (y, x)
    return corner


def main():
    folder = DATA / "stardist-dsb2018-nuclei-2d"
    image = read_image(folder / "image.tif")
    mask = read_image(folder / "mask.tif")
    y, x = busiest_window(mask)
    top = weight_map_figure(image, mask, crop=(y, x, 160, 160), scale=2)
    isbi = DATA / "isbi2012-em" / "train"
    em = read_image(isbi / "image" / "00.png")
    label = read_image(isbi / "label" / "00.png")
    bottom = weight_map_figure(
        em, label, label_type="binary", crop=(0, 0, 160, 160), scale=2
    )
    width = max(top.shape[1], bottom.shape[1])
    rows = [
        np.pad(
            r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255
        )
        for r in (top, bottom)
    ]
    gap = np.full((10, width, 3), 255, np.uint8)
    write_image(OUT, np.concatenate([rows[0], gap, rows[1]], axis=0))
    print(f"wrote {OUT} (DSB window at y={y}, x={x})")


if __name__ == "__main__":
    main()
