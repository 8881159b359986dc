"""Make docs/figures/overlap_tile.png: the overlap-tile strategy (paper Fig. 2).

Reads ISBI 2012 training slice 00 (512x512) from
``../shared/data/isbi2012-em`` (or ``$KERAS_UNET_SHARED_DATA``; synthetic
cells if it is missing) and a depth-4 U-Net with random weights (8 filters:
the geometry is the paper's, 92 px margin; the values only have to be
deterministic). Panels:

1. the slice mirror-padded by `predict_tiled` for 284 px tiles (100 px
   output), with the input tile (blue) and output tile (green) of one tile
   and the image border (red);
2. |p - p_untiled| (colour scale 0 to its 99th percentile) for naive
   tiling that puts 284 -> 100 tiles at offsets
   0, 100, 200, ... (not multiples of 16: the pooling grid shifts from tile
   to tile);
3. the same for `predict_tiled` with the same tiles at offsets 0, 96, 192,
   ... (multiples of 16): zero up to float round-off.

Takes a few seconds on CPU.

    python docs/scripts/make_tiling_figure.py
"""

from __future__ import annotations

import os
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = pathlib.Path(
    os.environ.get("KERAS_UNET_SHARED_DATA", REPO.parent / "shared" / "data")
)
OUT = (
    pathlib.Path(os.environ.get("KERAS_UNET_FIGURE_DIR", ""))
    / "overlap_tile.png"
    if os.environ.get("KERAS_UNET_FIGURE_DIR")
    else REPO / "docs" / "figures" / "overlap_tile.png"
)
TILE = 284  # depth 4: 284 - 2 * 92 = 100 px output


def load_image():
    from keras_unet.io.images import read_image

    path = DATA / "isbi2012-em" / "train" / "image" / "00.png"
    if path.is_file():
        return read_image(path), "ISBI 2012 slice 00"
    from keras_unet.data.synthetic import synthetic_cells

    images, _ = synthetic_cells(1, size=512, seed=0)
    return images[0], "synthetic cells"


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def naive(model, x, tile, out):
    """Tiles at offsets that are multiples of the output size."""
    m = (tile - out) // 2
    h, w = x.shape
    nh, nw = -(-h // out), -(-w // out)
    padded = np.pad(
        x, ((m, nh * out - h + m), (m, nw * out - w + m)), mode="reflect"
    )
    result = np.zeros((nh * out, nw * out, 2), np.float32)
    for i in range(nh):
        for j in range(nw):
            t = padded[i * out : i * out + tile, j * out : j * out + tile]
            logits = model.predict_on_batch(t[None, ..., None])[0]
            result[i * out : (i + 1) * out, j * out : (j + 1) * out] = softmax(
                logits
            )
    return result[:h, :w]


def main():
    import cv2

    from keras_unet.figures import colormap, save_panels, to_display
    from keras_unet.inference.tile_plan import tile_layout
    from keras_unet.inference.tiled import mirror_pad, predict_tiled
    from keras_unet.model import geometry
    from keras_unet.model.unet import build_unet

    image, name = load_image()
    x = image.astype(np.float32) / 255.0
    h, w = x.shape
    model = build_unet((None, None, 1), depth=4, filters=8, seed=0)
    margin = geometry.margin(4)

    # Reference: one pass over the whole mirror-padded image.
    size = geometry.input_size_for_output(max(h, w))
    padded = mirror_pad(x, ((margin, size - h - margin),) * 2)
    untiled = softmax(model.predict_on_batch(padded[None, ..., None])[0])
    untiled = untiled[:h, :w]

    tiled = predict_tiled(model, image, tile_size=TILE)
    bad = naive(model, x, TILE, TILE - 2 * margin)
    d_naive = np.abs(bad - untiled).max(-1)
    d_tiled = np.abs(tiled - untiled).max(-1)
    print(f"max |naive - untiled| = {d_naive.max():.3g}")
    print(f"max |predict_tiled - untiled| = {d_tiled.max():.3g}")

    layout = tile_layout((h, w), TILE, margin, 16)
    (top, bottom), (left, right) = layout.pad
    panel = to_display(mirror_pad(image, layout.pad))
    cv2.rectangle(
        panel, (left, top), (left + w - 1, top + h - 1), (220, 30, 30), 3
    )
    tile = list(layout)[layout.counts[1] + 1]  # second row, second column
    (rs, cs), _, (rd, cd) = tile.source, tile.crop, tile.destination
    cv2.rectangle(
        panel,
        (cs.start, rs.start),
        (cs.stop - 1, rs.stop - 1),
        (40, 90, 230),
        3,
    )
    cv2.rectangle(
        panel,
        (cd.start + left, rd.start + top),
        (
            cd.start + left + layout.output_tile_shape[1] - 1,
            rd.start + top + layout.output_tile_shape[0] - 1,
        ),
        (40, 180, 60),
        3,
    )
    vmax = float(np.percentile(d_naive, 99))  # colour scale of panels 2, 3
    panels = [
        panel,
        colormap(d_naive, 0, vmax, "magma"),
        colormap(d_tiled, 0, vmax, "magma"),
    ]
    panels = [
        cv2.resize(
            p,
            (round(p.shape[1] * 420 / p.shape[0]), 420),
            interpolation=cv2.INTER_AREA,
        )
        for p in panels
    ]
    titles = [
        f"{name}, mirror-padded; tile {TILE} in, 100 out",
        f"naive, offsets 0,100,200..: max |dp| {d_naive.max():.2g}",
        f"predict_tiled, offsets 0,96,192..: {d_tiled.max():.1g}",
    ]
    save_panels(OUT, panels, titles)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
