"""Images and masks from two folders, paired by file name."""

from __future__ import annotations

import numpy as np

from keras_unet.checks import check_choice
from keras_unet.data.imageset import ImageSet
from keras_unet.io.files import files_by_stem, list_files, require_folder
from keras_unet.io.images import read_image

__all__ = ["load_folders"]


def _mask_files(mask_dir, mask_suffix):
    """{image stem: mask file} of a mask folder."""
    found = {}
    for f in list_files(mask_dir):
        stem = f.stem
        if mask_suffix:
            if not stem.endswith(mask_suffix):
                continue
            stem = stem[: -len(mask_suffix)]
        if stem in found:
            raise ValueError(
                f"Two masks in {mask_dir} belong to '{stem}': "
                f"{found[stem].name} and {f.name}. Keep one."
            )
        found[stem] = f
    return found


def _read_mask(path, image_path, image_shape):
    """A single-channel integer mask of the image's size, as int32."""
    mask = read_image(path)
    if mask.ndim == 3:
        if not np.all(mask == mask[..., :1]):
            raise ValueError(
                f"Mask {path} has colour channels that differ; masks must "
                "be single-channel label images."
            )
        mask = mask[..., 0]
    if mask.shape != image_shape:
        raise ValueError(
            f"Mask {path} is {mask.shape} but image {image_path} is "
            f"{image_shape}."
        )
    if not np.issubdtype(mask.dtype, np.integer):
        whole = np.isfinite(mask).all() and (mask == np.round(mask)).all()
        if not whole:  # a float mask of whole numbers (0.0/1.0) is fine
            raise ValueError(
                f"Mask {path} holds fractional values ({mask.dtype}); masks "
                "hold class or object ids: save it as an integer image."
            )
    return mask.astype(np.int32)


_MAX_INFERRED_CLASSES = 32


def _class_masks(masks, num_classes):
    """Class-index masks (0/255 becomes 0/1) and the number of classes.

    Without `num_classes`, the values must be the classes 0..K-1 with no
    gap: a mask of 0 and 128 (a binary mask saved with another foreground
    value) or of hundreds of object ids would otherwise become a task of
    129 or hundreds of classes, silently.
    """
    values = np.unique(np.concatenate([np.unique(m) for m in masks]))
    if set(values.tolist()) <= {0, 255}:
        masks = [(m > 0).astype(np.int32) for m in masks]
        values = np.array([0, 1])
    if num_classes is None:
        _check_inferred_classes(values)
    k = int(values.max()) + 1 if num_classes is None else int(num_classes)
    if values.min() < 0 or values.max() >= k:
        raise ValueError(
            f"Masks hold class values {values.tolist()[:10]} but "
            f"num_classes={k}."
        )
    return masks, max(k, 2)


def _check_inferred_classes(values):
    shown = values.tolist()[:8] + (["..."] if len(values) > 8 else [])
    if len(values) < values.max() - values.min() + 1:  # a gap
        raise ValueError(
            f"Masks hold the values {shown}, not the classes 0..K-1: for a "
            "binary mask with another foreground value convert it "
            "(mask > 0), or keep them as classes in Python: "
            "load_folders(..., num_classes=K)."
        )
    if values.min() >= 0 and values.max() + 1 > _MAX_INFERRED_CLASSES:
        raise ValueError(
            f"Masks hold {len(values)} values up to {values.max()} "
            f"({shown}): object ids? Use mask_type='instances' (--mask-type "
            "instances), or, if they are classes, load_folders(..., "
            "num_classes=K) in Python."
        )


def load_folders(
    images, masks, mask_suffix="", mask_type="classes", num_classes=None
) -> ImageSet:
    """Read images and masks from two folders, paired by file name.

    Files are read with `keras_unet.io.images.read_image` (PNG, JPEG, BMP, TIFF;
    8 or 16 bit; grey or RGB). A mask belongs to the image whose stem equals
    the mask's stem without `mask_suffix` (e.g. ``cell1.png`` and
    ``cell1_mask.png`` with ``mask_suffix="_mask"``).

    Args:
        images: folder of images.
        masks: folder of masks.
        mask_suffix: suffix of the mask stems.
        mask_type: "classes" (class-index masks; a 0/255 mask becomes 0/1),
            or "instances" (an id per object, e.g. 16-bit label images).
        num_classes: number of classes (default: largest class + 1, at
            least 2).
    """
    check_choice(mask_type, "mask_type", ("classes", "instances"))
    image_dir = require_folder(images, "a folder of image files")
    mask_dir = require_folder(masks, "a folder of mask files")
    image_files = list_files(image_dir)
    if mask_suffix and image_dir.resolve() == mask_dir.resolve():
        # images and masks in one folder: the masks are not images
        image_files = [
            f for f in image_files if not f.stem.endswith(mask_suffix)
        ]
    if not image_files:
        raise FileNotFoundError(
            f"{image_dir} holds no image files (.png, .tif, .jpg, .bmp)."
        )
    files_by_stem(image_files, image_dir)
    mask_files = _mask_files(mask_dir, mask_suffix)
    missing = [f.name for f in image_files if f.stem not in mask_files]
    if missing:
        raise FileNotFoundError(
            f"No mask in {mask_dir} for {len(missing)} image(s), e.g. "
            f"{missing[:3]} (looked for '<stem>{mask_suffix}.<ext>')."
        )
    imgs = [read_image(f) for f in image_files]
    masks_ = [
        _read_mask(mask_files[f.stem], f, im.shape[:2])
        for f, im in zip(image_files, imgs)
    ]
    names = [f.stem for f in image_files]
    description = f"folders {image_dir} + {mask_dir}"
    if mask_type == "instances":
        return ImageSet(
            images=imgs, instances=masks_, names=names, description=description
        )
    masks_, k = _class_masks(masks_, num_classes)
    return ImageSet(
        images=imgs,
        labels=masks_,
        names=names,
        num_classes=k,
        description=description,
    )
