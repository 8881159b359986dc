"""Draw docs/figures/geometry.png: the paper's U-Net, sizes from the code.

Every box is one feature map of `keras_unet.build_unet()` (its spatial size
read from the built Keras model, its channels from the layer), laid out as
in the paper's Fig. 1; the skip connections show their crops
(`keras_unet.model.geometry.crop_per_side`).

Run: python docs/scripts/make_geometry_figure.py
"""

import os
import pathlib

import cv2
import numpy as np

from keras_unet import build_unet
from keras_unet.io.images import write_image
from keras_unet.model import geometry

OUT = (
    pathlib.Path(os.environ.get("KERAS_UNET_FIGURE_DIR", "")) / "geometry.png"
    if os.environ.get("KERAS_UNET_FIGURE_DIR")
    else pathlib.Path(__file__).resolve().parents[1]
    / "figures"
    / "geometry.png"
)


def main():
    model = build_unet()
    depth = 4
    stages = [s for s, _ in geometry.size_trace(572, depth)]
    maps = {"input": (572, 1)}
    for stage in stages[1:]:
        out = model.get_layer(f"unet_{stage}").output
        maps[stage] = (out.shape[1], out.shape[-1])
    w, h = 1280, 620
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    col_w = 34
    level_y = [40 + 118 * lv for lv in range(depth + 1)]

    def box(x, level, size, ch, color):
        bh = int(20 + 60 * size / 572)
        y = level_y[level]
        bw = max(6, int(6 + 5 * np.log2(ch)))
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, -1)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), (60, 60, 60), 1)
        cv2.putText(
            img,
            str(size),
            (x - 4, y + bh + 14),
            font,
            0.36,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        cv2.putText(
            img, str(ch), (x, y - 4), font, 0.34, (90, 90, 90), 1, cv2.LINE_AA
        )
        return x + bw, y + bh // 2

    x = 20
    ends = {}
    level = 0
    box(x, 0, 572, 1, (230, 230, 230))
    x += col_w
    for stage in stages[1:]:
        size, ch = maps[stage]
        if stage.startswith("down") and stage.endswith("pool"):
            level += 1
            x += 6
        elif stage.endswith("upconv"):
            level -= 1
            x += 6
        color = (
            (180, 210, 250)
            if stage.startswith("down")
            else (
                (200, 230, 200)
                if stage.startswith("bottom")
                else (250, 215, 180)
            )
        )
        end = box(x, level, size, ch, color)
        if stage.endswith("conv2") and stage.startswith("down"):
            ends[level] = end
        if stage.endswith("upconv"):
            lv = int(stage[2])
            sx, sy = ends[lv - 1]
            crop = geometry.crop_per_side(lv, depth)
            cv2.arrowedLine(
                img,
                (sx + 4, sy),
                (x - 4, sy),
                (120, 120, 120),
                1,
                cv2.LINE_AA,
                tipLength=0.01,
            )
            cv2.putText(
                img,
                f"copy, crop {crop}/side",
                ((sx + x) // 2 - 50, sy + 14),
                font,
                0.36,
                (90, 90, 90),
                1,
                cv2.LINE_AA,
            )
        x += col_w
    cv2.putText(
        img,
        f"keras_unet.build_unet(): 572 -> 388, margin "
        f"{geometry.margin(depth)} px, {model.count_params():,} parameters; "
        "valid inputs 188 + 16k",
        (20, h - 16),
        font,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    used = np.nonzero((img != 255).any(axis=(0, 2)))[0]
    write_image(OUT, img[:, : used.max() + 20])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
