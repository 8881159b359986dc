"""The built-in synthetic cells: touching cells with faint membranes.

No download, deterministic for a seed: the default data of the demo and of
the tests.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, spatial

from keras_unet.checks import check_int, check_pair
from keras_unet.data.imageset import ImageSet

__all__ = ["load_synthetic", "synthetic_cells"]


def _size_hw(size) -> tuple[int, int]:
    return check_pair(size, "size", minimum=32)


def _smooth_noise(rng, shape, sigma, amplitude=1.0):
    """Zero-mean Gaussian-filtered noise with unit std, times `amplitude`."""
    field = ndimage.gaussian_filter(
        rng.standard_normal(shape), sigma, mode="wrap"
    )
    std = field.std()
    return amplitude * field / (std if std > 0 else 1.0)


def _one_cell_image(rng, hw):
    h, w = hw
    # 1. Seeds on a jittered grid; some dropped, so cell sizes vary.
    spacing = rng.uniform(26.0, 40.0)
    gy = np.arange(-spacing, h + spacing, spacing)
    gx = np.arange(-spacing, w + spacing, spacing)
    seeds = np.stack(np.meshgrid(gy, gx, indexing="ij"), -1).reshape(-1, 2)
    seeds += rng.uniform(-0.45, 0.45, seeds.shape) * spacing
    seeds = seeds[rng.random(len(seeds)) > 0.15]

    # 2. Irregular Voronoi cells: nearest seed in smoothly warped coordinates.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    warp = 0.25 * spacing
    wy = yy + _smooth_noise(rng, hw, spacing / 2, warp)
    wx = xx + _smooth_noise(rng, hw, spacing / 2, warp)
    pts = np.stack([wy.ravel(), wx.ravel()], -1)
    dist, idx = spatial.cKDTree(seeds).query(pts, k=2)
    owner = idx[:, 0].reshape(hw)
    # Half the gap between the two nearest seeds: ~distance to the boundary.
    to_boundary = (0.5 * (dist[:, 1] - dist[:, 0])).reshape(hw)

    # 3. Most cells fill their region and touch their neighbours; some pull
    #    back (extracellular space); a few are missing (background holes).
    n = len(seeds)
    shrink = np.where(rng.random(n) < 0.8, 0.0, rng.uniform(1.5, 6.0, n))
    alive = rng.random(n) > 0.05
    inside = alive[owner] & (to_boundary >= shrink[owner])
    labels = np.where(inside, owner + 1, 0)
    # Keep each cell's largest piece only, and number cells 1..k.
    labels = _relabel_largest_piece(labels)

    # 4. Render: membranes are dark lines on every cell edge.
    edges = np.zeros(hw, bool)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[1:] |= labels[:-1] != labels[1:]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    d_edge = ndimage.distance_transform_edt(~edges)
    width = rng.uniform(0.9, 1.6)
    membrane = np.exp(-(d_edge**2) / (2 * width**2))
    # Membrane contrast fades in and out along the borders, as in real
    # sections: in places two cells are told apart by a faint line only.
    strength = np.clip(0.55 + _smooth_noise(rng, hw, 6.0, 0.3), 0.12, 0.9)

    k = labels.max()
    cell_level = np.concatenate(
        [[rng.uniform(0.42, 0.5)], rng.uniform(0.58, 0.8, k)]
    )
    img = cell_level[labels]
    # Interior texture: fine grain plus dark "organelles" that a plain
    # threshold would mistake for membrane.
    img = img + _smooth_noise(rng, hw, 1.5, 0.04)
    blobs = _smooth_noise(rng, hw, 2.5, 1.0)
    img = img - 0.3 * np.clip(blobs - 1.5, 0, None) * (labels > 0)
    img = img * (1.0 - strength * membrane)
    # Uneven illumination: a tilted plane times a slow smooth field.
    ramp = rng.uniform(-1, 1) * (yy / h - 0.5) + rng.uniform(-1, 1) * (
        xx / w - 0.5
    )
    illum = 1.0 + 0.4 * ramp + _smooth_noise(rng, hw, min(hw) / 6, 0.1)
    img = ndimage.gaussian_filter(img * illum, 0.7)
    img = img + rng.normal(0.0, 0.035, hw)
    image = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return image, labels.astype(np.int32)


def _relabel_largest_piece(labels):
    """Keep the largest 4-connected piece of every id; ids become 1..k."""
    out = np.zeros_like(labels)
    objects = ndimage.find_objects(labels)
    next_id = 1
    for i, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        cell = labels[sl] == i
        pieces, count = ndimage.label(cell)
        if count > 1:
            sizes = np.bincount(pieces.ravel())
            sizes[0] = 0
            cell = pieces == sizes.argmax()
        if cell.sum() < 20:  # slivers at the image border
            continue
        out[sl][cell] = next_id
        next_id += 1
    return out


def synthetic_cells(n, size=512, seed=0):
    """Generate synthetic microscopy images of densely packed cells.

    Irregular cells, most of them touching their neighbours, some separated by
    extracellular space, imaged with dark membrane-like borders, textured
    interiors with dark organelles, uneven illumination, blur and noise. The
    borders between touching cells are visible only as thin dark lines, so a
    network has to learn boundaries, not a grey-value threshold. This is the
    built-in default data of keras_unet: no download, deterministic for a
    seed, and about 0.1-0.2 s per 512x512 image.

    Image ``i`` depends only on ``(seed, i)``, so ``synthetic_cells(10)[0][:3]``
    equals ``synthetic_cells(3)[0]``.

    Args:
        n: number of images.
        size: an int (square) or ``(height, width)``, at least 32.
        seed: integer seed.

    Returns:
        ``(images, instances)``: ``images`` uint8 of shape ``(n, H, W)``;
        ``instances`` int32 of shape ``(n, H, W)``, 0 for background and
        ``1..k`` for the cells of each image (touching cells have different
        ids and share a border).

    Examples:
        >>> images, instances = synthetic_cells(2, size=128, seed=0)
        >>> images.shape, images.dtype, instances.dtype
        ((2, 128, 128), dtype('uint8'), dtype('int32'))
    """
    n = check_int(n, "n", 1, "the number of images")
    seed = check_int(seed, "seed", 0)
    hw = _size_hw(size)
    images = np.empty((int(n), *hw), np.uint8)
    instances = np.empty((int(n), *hw), np.int32)
    for i in range(int(n)):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, i])
        images[i], instances[i] = _one_cell_image(rng, hw)
    return images, instances


def load_synthetic(n=12, size=256, seed=0) -> ImageSet:
    """The built-in synthetic cells (`synthetic_cells`) as an ImageSet."""
    images, instances = synthetic_cells(n, size=size, seed=seed)
    return ImageSet(
        images=list(images),
        instances=list(instances),
        names=[f"synthetic_{i:03d}" for i in range(n)],
        description=f"synthetic cells (n={n}, size={size}, seed={seed})",
    )
