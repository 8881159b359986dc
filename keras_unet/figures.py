"""Figures drawn with OpenCV: panels of images, overlays and line plots.

keras_unet writes its pictures (data previews, weight maps, deformation
samples, overlays, training curves) without matplotlib, so that the package
stays within its small set of dependencies. All colour arrays are RGB uint8.
"""

from __future__ import annotations

import numpy as np

from keras_unet.io.images import write_image

__all__ = [
    "color_instances",
    "color_matched",
    "colormap",
    "line_plot",
    "overlay",
    "panel_grid",
    "save_panels",
    "to_display",
    "weight_map_figure",
    "with_legend",
]

RED = (255, 40, 40)  # the class of interest, in every overlay
UNMATCHED = (150, 150, 150)


def to_display(image, lo_pct=0.5, hi_pct=99.5) -> np.ndarray:
    """Grey image (any dtype, (H, W) or (H, W, C)) to RGB uint8.

    uint8 images are shown as they are; other types are stretched between
    the given percentiles.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]  # drop alpha
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        lo, hi = np.percentile(image, [lo_pct, hi_pct])
        image = np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)
        image = np.rint(image * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    elif image.shape[-1] != 3:
        image = np.repeat(image[..., :1], 3, axis=-1)
    return image


def _palette(ids, seed):
    """A bright colour per id (black for 0), the same for the same ids."""
    rng = np.random.default_rng(seed)
    colors = rng.integers(70, 256, size=(len(ids), 3), dtype=np.uint8)
    colors[ids == 0] = 0
    return colors


def color_instances(instances, seed=0) -> np.ndarray:
    """Random bright colour per instance id, black background."""
    instances = np.asarray(instances)
    ids, inverse = np.unique(instances, return_inverse=True)
    return _palette(ids, seed)[inverse.reshape(instances.shape)]


def color_matched(segmented, instances, seed=0) -> np.ndarray:
    """Segments in the colour of the true cell each one matches.

    A segment matches the true cell of which it covers more than half (the
    rule of `keras_unet.evaluation.seg.seg_iou`) and takes its colour in
    ``color_instances(instances, seed)``, so the two pictures compare by
    eye; a segment matching no cell is grey, the background black.
    """
    segmented = np.asarray(segmented)
    instances = np.asarray(instances)
    ids = np.unique(instances)
    palette = _palette(ids, seed)
    out = np.zeros((*segmented.shape, 3), np.uint8)
    out[segmented > 0] = UNMATCHED
    pairs, overlap = np.unique(
        np.stack([instances.ravel(), segmented.ravel()]),
        axis=1,
        return_counts=True,
    )
    sizes = dict(zip(*np.unique(instances, return_counts=True)))
    for (cell, segment), n in zip(pairs.T, overlap):
        if cell > 0 and segment > 0 and 2 * n > sizes[cell]:
            out[segmented == segment] = palette[np.searchsorted(ids, cell)]
    return out


def with_legend(image, entries=(), note="") -> np.ndarray:
    """`image` above a white band: a line per ``(colour, text)`` entry (a
    swatch and the text), then `note` (e.g. the scores)."""
    import cv2

    image = to_display(image)
    lines = [*entries] + ([(None, note)] if note else [])
    band = np.full((20 * len(lines) + 6, image.shape[1], 3), 255, np.uint8)
    for row, (color, text) in enumerate(lines):
        v = 20 * row + 16
        if color is not None:
            cv2.rectangle(band, (6, v - 10), (20, v + 2), color, -1)
        _text(band, text, (26 if color is not None else 6, v), 0.42)
    return np.concatenate([image, band], axis=0)


def colormap(values, vmin=None, vmax=None, name="viridis") -> np.ndarray:
    """Map a float array to RGB with an OpenCV colour map."""
    import cv2

    values = np.asarray(values, dtype=np.float64)
    vmin = np.nanmin(values) if vmin is None else vmin
    vmax = np.nanmax(values) if vmax is None else vmax
    scaled = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    maps = {
        "viridis": cv2.COLORMAP_VIRIDIS,
        "magma": cv2.COLORMAP_MAGMA,
        "inferno": cv2.COLORMAP_INFERNO,
        "jet": cv2.COLORMAP_JET,
    }
    bgr = cv2.applyColorMap(np.rint(scaled * 255).astype(np.uint8), maps[name])
    return bgr[..., ::-1]


def overlay(image, mask, color=RED, alpha=0.45) -> np.ndarray:
    """Blend `color` over a grey image where `mask` is true (or weighted)."""
    base = to_display(image).astype(np.float64)
    m = np.asarray(mask, dtype=np.float64)[..., None] * alpha
    out = base * (1 - m) + np.asarray(color, np.float64) * m
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _titled(panel, title, width):
    import cv2

    is_rgb = (
        panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[-1] == 3
    )
    panel = panel if is_rgb else to_display(panel)
    h, w = panel.shape[:2]
    bar = np.full((24, width, 3), 255, np.uint8)
    cv2.putText(
        bar,
        title,
        (4, 17),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    body = np.full((h, width, 3), 255, np.uint8)
    body[:, :w] = panel
    return np.concatenate([bar, body], axis=0)


def panel_grid(panels, titles=None, ncols=None, gap=6) -> np.ndarray:
    """Arrange RGB/grey panels of possibly different sizes in a grid."""
    panels = [np.asarray(p) for p in panels]
    titles = list(titles) if titles is not None else [""] * len(panels)
    if len(titles) != len(panels):
        raise ValueError("`titles` must have one entry per panel.")
    ncols = ncols or len(panels)
    width = max(p.shape[1] for p in panels)
    cells = [_titled(p, t, width) for p, t in zip(panels, titles)]
    height = max(c.shape[0] for c in cells)
    rows = []
    for r in range(0, len(cells), ncols):
        row = cells[r : r + ncols]
        row += [np.full((height, width, 3), 255, np.uint8)] * (ncols - len(row))
        padded = []
        for c in row:
            c = np.pad(
                c,
                ((0, height - c.shape[0]), (0, gap), (0, 0)),
                constant_values=255,
            )
            padded.append(c)
        rows.append(np.concatenate(padded, axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def save_panels(path, panels, titles=None, ncols=None):
    """Write a grid of panels to a PNG (atomically) and return the path."""
    return write_image(path, panel_grid(panels, titles, ncols))


_COLORS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
)


def _text(img, text, xy, scale=0.4):
    import cv2

    cv2.putText(
        img,
        text,
        xy,
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )


def _finite_series(series, log_y):
    """[(name, x, y)] with non-finite (and, on a log scale, <= 0) dropped."""
    data = []
    for name, (x, y) in series.items():
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        keep = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
        if keep.any():
            data.append(
                (name, x[keep], np.log10(y[keep]) if log_y else y[keep])
            )
    return data


def _data_range(data):
    """(xmin, xmax, ymin, ymax) of the series, never empty, y padded 5%."""
    xs = np.concatenate([d[1] for d in data])
    ys = np.concatenate([d[2] for d in data])
    xmin, xmax, ymin, ymax = xs.min(), xs.max(), ys.min(), ys.max()
    if xmax == xmin:
        xmax = xmin + 1
    if ymax == ymin:
        ymin, ymax = ymin - 0.5, ymax + 0.5
    pad = 0.05 * (ymax - ymin)
    return xmin, xmax, ymin - pad, ymax + pad


def _x_ticks(xmin, xmax):
    """Five ticks; whole numbers (epochs, steps) when the range is."""
    if float(xmin).is_integer() and float(xmax).is_integer():
        step = max(1, int(np.ceil((xmax - xmin) / 4)))
        return np.arange(xmin, xmax + 0.5, step)
    return xmin + (xmax - xmin) * np.arange(5) / 4


def line_plot(
    series, title="", xlabel="", ylabel="", size=(420, 640), log_y=False
) -> np.ndarray:
    """A small line plot: ``series`` maps a name to ``(x, y)`` sequences.

    Returns an RGB image with axes, tick labels (whole numbers on an
    integer x axis, e.g. epochs; "log scale" marked on the y axis) and a
    legend beside the plot area, never over the curves.
    """
    import cv2

    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    x0, x1, y0, y1 = 70, w - 150, h - 50, 34  # plot area; legend at right
    _text(img, title, (x0, 22), 0.55)
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    data = _finite_series(series, log_y)
    if not data:
        return img
    xmin, xmax, ymin, ymax = _data_range(data)
    if all(float(v).is_integer() for d in data for v in d[1]):
        xmin, xmax = np.floor(xmin), np.ceil(xmax)

    def px(x, y):
        u = x0 + (x - xmin) / (xmax - xmin) * (x1 - x0)
        v = y0 - (y - ymin) / (ymax - ymin) * (y0 - y1)
        return np.stack([u, v], -1)

    for k in range(5):
        fy = ymin + (ymax - ymin) * k / 4
        v = int(round(px(xmin, fy)[1]))
        cv2.line(img, (x0, v), (x1, v), (225, 225, 225), 1)
        _text(img, f"{10**fy:.3g}" if log_y else f"{fy:.3g}", (4, v + 4))
    for fx in _x_ticks(xmin, xmax):
        u = int(round(px(fx, ymin)[0]))
        cv2.line(img, (u, y0), (u, y0 + 4), (0, 0, 0), 1)
        _text(img, f"{fx:.4g}", (u - 8, y0 + 16))
    _text(img, xlabel, ((x0 + x1) // 2 - 30, h - 12), 0.45)
    _text(
        img,
        " ".join(filter(None, [ylabel, "(log scale)" * log_y])),
        (4, y1 - 8),
        0.45,
    )
    for i, (name, x, y) in enumerate(data):
        color = _COLORS[i % len(_COLORS)]
        pts = np.rint(px(x, y)).astype(np.int32)
        if len(pts) == 1:
            cv2.circle(
                img, tuple(int(v) for v in pts[0]), 3, color, -1, cv2.LINE_AA
            )
        else:
            cv2.polylines(
                img, [pts.reshape(-1, 1, 2)], False, color, 2, cv2.LINE_AA
            )
        ly = y1 + 12 + 18 * i
        cv2.line(img, (x1 + 10, ly - 4), (x1 + 32, ly - 4), color, 2)
        _text(img, name[:16], (x1 + 36, ly), 0.42)
    return img


def _colour_bar(h, vmin, vmax):
    """A vertical "jet" colour bar of height h with three labels."""
    bar_w, text_w = 14, 44
    ramp = np.linspace(vmax, vmin, h)[:, None].repeat(bar_w, axis=1)
    bar = np.full((h, bar_w + text_w, 3), 255, np.uint8)
    bar[:, :bar_w] = colormap(ramp, vmin, vmax, name="jet")
    for value, v in (
        (vmax, 10),
        ((vmin + vmax) / 2, h // 2 + 4),
        (vmin, h - 3),
    ):
        _text(bar, f"{value:.3g}", (bar_w + 3, v), 0.38)
    return bar


def _weight_map_inputs(image, labels, target, weights, label_type, kwargs):
    """(image, cells, target, weights) checked, the maps computed if needed."""
    from keras_unet.data import weight_maps

    image = np.asarray(image)
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if image.shape[:2] != labels.shape:
        raise ValueError(
            "`image` and `labels` must have the same height and width. "
            f"Received: image.shape={image.shape}, labels.shape="
            f"{labels.shape}"
        )
    if target is None or weights is None:
        target, weights = weight_maps.unet_weight_map(
            labels, label_type=label_type, return_target=True, **kwargs
        )
    cells = labels
    if label_type == "binary":
        cells = weight_maps.instances_from_binary(labels)
    return image, cells, np.asarray(target), np.asarray(weights, np.float64)


def weight_map_figure(
    image,
    labels,
    path=None,
    *,
    target=None,
    weights=None,
    crop=None,
    scale=1,
    label_type="instances",
    vmax=None,
    **weight_map_kwargs,
) -> np.ndarray:
    """A figure like the paper's Fig. 3: image, cells, target, weight map.

    Four panels: (a) the raw image, (b) the cells (instances, or the
    components of a binary label) in random colours over the image, (c)
    the training target (white = cell, black = background and separation
    lines) and (d) the weight map in the "jet" colours of the paper, with
    a colour bar. Use it to check a dataset's labels and weights before
    training.

    Args:
        image: (H, W) or (H, W, C) image, any dtype.
        labels: (H, W) instance image or binary label (see ``label_type``).
        path: optional PNG path, written atomically.
        target: precomputed target (e.g. from
            `keras_unet.data.weight_cache.cached_weight_maps`); computed with
            `keras_unet.data.weight_maps.unet_weight_map` when not given.
        weights: precomputed weight map; computed when not given.
        crop: optional ``(y, x, height, width)`` window to show.
        scale: integer zoom (nearest neighbour), for small crops.
        label_type: ``"instances"`` or ``"binary"``.
        vmax: top of the colour scale of the weight map (default: its max).
        **weight_map_kwargs: passed to `unet_weight_map` (w0, sigma, ...).

    Returns:
        RGB uint8 figure.

    Reference:
        Ronneberger et al. 2015, Fig. 3.
    """
    image, cells, target, weights = _weight_map_inputs(
        image, labels, target, weights, label_type, weight_map_kwargs
    )
    if crop is not None:
        y, x, h, w = (int(v) for v in crop)
        window = (slice(y, y + h), slice(x, x + w))
        image, cells = image[window], cells[window]
        target, weights = target[window], weights[window]
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(
            f"`scale` must be a positive integer. Received: scale={scale!r}"
        )

    def zoom(a):
        if scale == 1:
            return a
        return np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)

    vmax = float(weights.max()) if vmax is None else float(vmax)
    vmin = 0.0
    grey = to_display(image)
    colours = color_instances(cells)
    inside = (cells != 0)[..., None]
    blend = np.where(inside, 0.45 * grey + 0.55 * colours, grey)
    panels = [
        zoom(grey),
        zoom(np.clip(np.rint(blend), 0, 255).astype(np.uint8)),
        zoom(
            np.repeat((np.asarray(target) != 0)[..., None] * 255, 3, -1)
        ).astype(np.uint8),
        zoom(colormap(weights, vmin, vmax, name="jet")),
    ]
    h = panels[-1].shape[0]
    panels[-1] = np.concatenate(
        [
            panels[-1],
            np.full((h, 4, 3), 255, np.uint8),
            _colour_bar(h, vmin, vmax),
        ],
        axis=1,
    )
    n_cells = len(np.unique(cells)) - int((cells == 0).any())
    titles = [
        "a: image",
        f"b: {n_cells} cells",
        "c: target (lines separate)",
        f"d: weight map (max {weights.max():.1f})",
    ]
    figure = panel_grid(panels, titles)
    if path is not None:
        write_image(path, figure)
    return figure
