"""Validation tiles: exact crops covering every image once.

`make_validation_dataset` yields tiles that cover every pixel exactly once,
without augmentation (pixels of the last tiles that lie outside the image
get weight 0): exact integer crops in numpy, the same on every backend.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np

from keras_unet.checks import check_int
from keras_unet.data.mirror import mirror_index
from keras_unet.data.sources import make_source
from keras_unet.data.tiles import tile_shapes

__all__ = ["ValidationTiles", "make_validation_dataset", "validation_tiles"]


def validation_tiles(image_shapes, output_shape):
    """Origins ``(image_index, row, col)`` of output tiles covering images.

    Tiles are laid out on a grid with the output tile's stride, starting at
    the top-left corner; the last row/column of tiles may extend beyond the
    image.

    Examples:
        >>> validation_tiles([(30, 20)], (20, 20)).tolist()
        [[0, 0, 0], [0, 20, 0]]
    """
    out_h, out_w = output_shape
    origins = []
    for index, (h, w) in enumerate(image_shapes):
        for r in range(math.ceil(h / out_h)):
            for c in range(math.ceil(w / out_w)):
                origins.append((index, r * out_h, c * out_w))
    return np.asarray(origins, np.int64).reshape(-1, 3)


class ValidationTiles(keras.utils.PyDataset):
    """Finite batches of exact tiles covering every image once (numpy).

    Args:
        source: the checked images, labels and weights.
        origins: from `validation_tiles`.
        input_shape: ``(h, w)`` of the input tile.
        output_shape: ``(h, w)`` of the output tile.
        batch_size: tiles per batch (the last batch may be smaller).
    """

    def __init__(self, source, origins, input_shape, output_shape, batch_size):
        super().__init__(workers=1, use_multiprocessing=False)
        self.source = source
        self.origins = np.asarray(origins, np.int64).reshape(-1, 3)
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.batch_size = int(batch_size)
        self.load = functools.lru_cache(maxsize=1)(source.get)

    def __len__(self):
        return math.ceil(len(self.origins) / self.batch_size)

    @property
    def num_batches(self):
        return len(self)

    def tile(self, index, row, col):
        """``(x, y, w)`` numpy tile with the output tile at (row, col)."""
        image, labels, weights = self.load(int(index))
        (h, w), (in_h, in_w) = image.shape[:2], self.input_shape
        out_h, out_w = self.output_shape
        top, left = row - (in_h - out_h) // 2, col - (in_w - out_w) // 2
        rows = mirror_index(np.arange(top, top + in_h), h)
        cols = mirror_index(np.arange(left, left + in_w), w)
        x = image[rows[:, None], cols[None, :]]
        out_rows, out_cols = (
            np.arange(row, row + out_h),
            np.arange(col, col + out_w),
        )
        at = (
            mirror_index(out_rows, h)[:, None],
            mirror_index(out_cols, w)[None, :],
        )
        inside = (out_rows < h)[:, None] & (out_cols < w)[None, :]
        return x, labels[at], weights[at] * inside

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"batch {index} is out of range: there are {len(self)}."
            )
        first = index * self.batch_size
        tiles = [
            self.tile(*origin)
            for origin in self.origins[first : first + self.batch_size]
        ]
        x, y, w = (np.stack(t) for t in zip(*tiles))
        return x, y.astype(np.int32), w.astype(np.float32)


def make_validation_dataset(
    images,
    labels=None,
    weights=None,
    input_size=572,
    depth=4,
    *,
    padding="valid",
    model=None,
    spec=None,
    num_classes=None,
    batch_size=1,
):
    """Tiles covering every image once, without augmentation.

    Output tiles lie on a grid over each image; their context is mirrored at
    the image border, and the label pixels of the last tiles that fall
    outside the image get weight 0, so every labelled pixel lies in exactly
    one tile. (With `keras_unet.model.losses.WeightedCrossentropy`, normalized
    per batch, pixels of small edge tiles weigh more in the validation loss
    than pixels of full tiles; the pixel-counting metrics count every pixel
    once.) The images are always read once up front: their sizes lay out
    the tiles. Tiles are exact integer crops (numpy), so they are the same
    on every backend.

    Args:
        images: as `make_training_dataset`.
        labels: as `make_training_dataset`.
        weights: as `make_training_dataset`.
        input_size: as `make_training_dataset`.
        depth: as `make_training_dataset`.
        padding: as `make_training_dataset`.
        model: as `make_training_dataset`.
        spec: as `make_training_dataset`.
        num_classes: as `make_training_dataset`.
        batch_size: as `make_training_dataset`.

    Returns:
        A finite `ValidationTiles` (`keras.utils.PyDataset`) of numpy
        ``(x, y, w)`` batches; pass it as ``validation_data`` or to
        `model.evaluate`.

    Examples:
        >>> images = np.zeros((2, 50, 70), "float32")
        >>> labels = np.zeros((2, 50, 70), "int32")
        >>> val = make_validation_dataset(images, labels, input_size=60,
        ...                               depth=2, batch_size=4)
        >>> len(val), val[0][0].shape
        (6, (4, 60, 60, 1))
    """
    in_hw, out_hw = tile_shapes(input_size, depth, padding, model, spec)
    batch_size = check_int(batch_size, "batch_size", 1, "tiles per batch")
    source = make_source(images, labels, weights, num_classes, validate=True)
    shapes = [source.shapes[i] for i in range(len(source))]
    origins = validation_tiles(shapes, out_hw)
    return ValidationTiles(source, origins, in_hw, out_hw, batch_size)
