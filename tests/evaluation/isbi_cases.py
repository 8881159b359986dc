"""Hand-made ISBI-style labels and membrane maps for the measure tests.

Shared by test_topology, test_scores and test_evaluation. Labels follow the
ISBI 2012 files: 0 = membrane, 255 = cell.
"""

import numpy as np
from scipy import ndimage

# 4-connectivity (cells) and 8-connectivity (membranes) for ndimage.label
CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])
SQUARE = np.ones((3, 3), int)


def wobbly_grid(shape=(96, 96), width=1, shift=(0, 0), period=24):
    """A grid of wavy lines, one pixel per row (column) for width 1, away
    from the image border. `shift` translates the pattern by (dy, dx)."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    y, x = y - shift[0], x - shift[1]
    vertical = (x - 12 + 3 * np.sin(y / 7)) % period < width
    horizontal = (y - 12 + 3 * np.sin(x / 9)) % period < width
    return np.where(vertical | horizontal, 0, 255).astype(np.uint8)


def straight_grid(shape=(96, 96), width=1, shift=(0, 0), period=16):
    """Rectangular cells between straight lines (no acute corners)."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    y, x = y - shift[0], x - shift[1]
    lines = ((x - 8) % period < width) | ((y - 8) % period < width)
    return np.where(lines, 0, 255).astype(np.uint8)


def two_cells(size=16):
    """Two cells side by side, split by a vertical 1-pixel membrane."""
    label = np.full((size, size), 255, np.uint8)
    label[:, size // 2] = 0
    return label


def synthetic_label(seed, size=64):
    """A binary ISBI-style label from keras_unet's synthetic cells."""
    from keras_unet.data.synthetic import synthetic_cells

    _, inst = synthetic_cells(1, size=size, seed=seed)
    inst = inst[0]
    edge = np.zeros(inst.shape, bool)
    edge[:-1] |= inst[:-1] != inst[1:]
    edge[:, :-1] |= inst[:, :-1] != inst[:, 1:]
    return np.where((inst > 0) & ~edge, 255, 0).astype(np.uint8)


def soft_proposal(label, seed, noise=1.0, sigma=1.5):
    """A blurred, noisy membrane probability map near the label."""
    rng = np.random.default_rng(seed)
    mem = (label == 0).astype(float)
    field = ndimage.gaussian_filter(rng.normal(0, noise, mem.shape), sigma)
    return np.clip(ndimage.gaussian_filter(mem, sigma) + field, 0, 1)
