"""The ISBI 2012 EM segmentation data, read from a local folder."""

from __future__ import annotations

import numpy as np

from keras_unet.data.imageset import ImageSet
from keras_unet.io.files import files_by_stem, list_files, require_folder
from keras_unet.io.images import read_image

__all__ = ["load_isbi2012"]


def _isbi_binary(raw, what):
    values = np.unique(raw)
    if len(values) > 2:
        raise ValueError(
            f"{what} has {len(values)} distinct values; ISBI 2012 labels are "
            "binary (0 = membrane, 255 = cell)."
        )
    return (raw > 0).astype(np.int32)  # cell = 1, membrane = 0


def load_isbi2012(path, split="train") -> ImageSet:
    """Read the ISBI 2012 EM segmentation data from a local folder.

    Two layouts are understood:

    - PNG slices: ``train/image/*.png``, ``train/label/*.png`` and
      ``test/image/*.png`` (as in ``../shared/data/isbi2012-em``), images
      and labels paired by file name;
    - the challenge's multi-page TIFF stacks: ``train-volume.tif``,
      ``train-labels.tif`` and ``test-volume.tif``.

    Labels: 255 (cell) becomes class 1, 0 (membrane) class 0; the class of
    interest for prediction is the membrane (class 0), as the challenge
    scores membrane probabilities.

    Args:
        path: the folder holding either layout.
        split: "train" (images and labels) or "test" (images only).
    """
    import tifffile

    if split not in ("train", "test"):
        raise ValueError(
            f"`split` must be 'train' or 'test'. Received: {split!r}"
        )
    root = require_folder(
        path,
        "an ISBI 2012 folder with train/image, train/label, test/image "
        "PNG folders or train-volume.tif/train-labels.tif/test-volume.tif",
    )
    desc = f"ISBI 2012 {split} ({root})"
    volume = root / f"{split}-volume.tif"
    image_dir = root / split / "image"
    if image_dir.is_dir():
        files = list_files(image_dir)
        if not files:
            raise FileNotFoundError(f"{image_dir} holds no image files.")
        images = [read_image(f) for f in files]
        names = [f.stem for f in files]
        labels = None
        if split == "train":
            label_dir = root / "train" / "label"
            if not label_dir.is_dir():
                raise FileNotFoundError(
                    f"Expected the labels in {label_dir} (same file names as "
                    f"{image_dir})."
                )
            by_stem = files_by_stem(list_files(label_dir), label_dir, "label")
            missing = [n for n in names if n not in by_stem]
            if missing:
                raise FileNotFoundError(
                    f"No label in {label_dir} for image(s) {missing[:5]}."
                )
            labels = [
                _isbi_binary(read_image(by_stem[n]), f"label {by_stem[n]}")
                for n in names
            ]
    elif volume.is_file():
        stack = np.asarray(tifffile.imread(volume))
        images = list(stack if stack.ndim == 3 else stack[None])
        names = [f"{i:02d}" for i in range(len(images))]
        labels = None
        if split == "train":
            label_file = root / "train-labels.tif"
            if not label_file.is_file():
                raise FileNotFoundError(f"Found {volume} but not {label_file}.")
            lab = np.asarray(tifffile.imread(label_file))
            lab = lab if lab.ndim == 3 else lab[None]
            if lab.shape != np.shape(np.stack(images)):
                raise ValueError(
                    f"{label_file} has shape {lab.shape} but {volume} has "
                    f"{np.shape(np.stack(images))}."
                )
            labels = [
                _isbi_binary(s, f"{label_file} slice {i}")
                for i, s in enumerate(lab)
            ]
    else:
        raise FileNotFoundError(
            f"{root} has neither {split}/image/ (PNG slices) nor "
            f"{split}-volume.tif (TIFF stack): expected the ISBI 2012 layout."
        )
    for name, image in zip(names, images):
        if image.ndim != 2:
            raise ValueError(
                f"ISBI image {name} is not a grey image: {image.shape}"
            )
    return ImageSet(
        images=images,
        labels=labels,
        names=names,
        num_classes=2,
        class_of_interest=0,
        description=desc,
    )
