"""Datasets: the built-in synthetic cells, and readers for local data folders.

Nothing here downloads anything: every reader takes a local path.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import numpy as np
from scipy import ndimage, spatial

from keras_unet.checks import check_int, check_pair

__all__ = [
    "ImageSet",
    "load_ctc",
    "load_folders",
    "load_isbi2012",
    "load_synthetic",
    "synthetic_cells",
]


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


# --------------------------------------------------------------------------
# Readers for local data. None of them downloads anything.


@dataclasses.dataclass
class ImageSet:
    """Images with their annotations, as read from a local dataset.

    Attributes:
        images: list of images (H, W) or (H, W, C), as stored (uint8, ...).
        labels: list of class-index images (int32), or None when the
            annotation is given as instances (derive labels with
            `keras_unet.weights.separate_instances`).
        instances: list of instance-id images (int32, 0 = background), or
            None.
        ignore: list of bool masks, True where the image is not annotated
            (train with weight 0 there), or None.
        names: a name per image (the file stem), used for output files.
        num_classes: number of classes of `labels`.
        class_of_interest: the class whose probability `keras-unet predict`
            writes (1 = cells; 0 = membrane for ISBI 2012).
        description: where the data came from.
    """

    images: list
    labels: list | None = None
    instances: list | None = None
    ignore: list | None = None
    names: list = dataclasses.field(default_factory=list)
    num_classes: int = 2
    class_of_interest: int = 1
    description: str = ""

    def __len__(self):
        return len(self.images)

    def subset(self, indices) -> ImageSet:
        """The images at `indices` (a list of ints), with their annotations."""
        indices = list(indices)

        def pick(items):
            return None if items is None else [items[i] for i in indices]

        return dataclasses.replace(
            self,
            images=pick(self.images),
            labels=pick(self.labels),
            instances=pick(self.instances),
            ignore=pick(self.ignore),
            names=pick(self.names),
        )


def _require_dir(path, expected):
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder. Expected {expected}.")
    return path


def _image_files(folder):
    from keras_unet.io import list_files

    return list_files(folder)


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

    from keras_unet.io import files_by_stem, read_image

    if split not in ("train", "test"):
        raise ValueError(
            f"`split` must be 'train' or 'test'. Received: {split!r}"
        )
    root = _require_dir(
        path,
        "an ISBI 2012 folder with train/image, train/label, test/image "
        "PNG folders or train-volume.tif/train-labels.tif/test-volume.tif",
    )
    desc = f"ISBI 2012 {split} ({root})"
    volume = root / f"{split}-volume.tif"
    image_dir = root / split / "image"
    if image_dir.is_dir():
        files = _image_files(image_dir)
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
            by_stem = files_by_stem(_image_files(label_dir), label_dir, "label")
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


_CTC_SEG = re.compile(r"man_seg_?(\d+)\.tiff?$")
_CTC_TRA = re.compile(r"man_track_?(\d+)\.tiff?$")
_CTC_FRAME = re.compile(r"t(\d+)\.tiff?$")


def load_ctc(path, sequences=None, ignore_unannotated=True) -> ImageSet:
    """Read a Cell Tracking Challenge 2D dataset (e.g. PhC-C2DH-U373).

    Layout: ``<seq>/tNNN.tif`` frames with ``<seq>_GT/SEG/man_segNNN.tif``
    16-bit instance labels, for sequences "01", "02", ... The SEG ground
    truth is partial: only frames with a SEG file are returned. Where
    ``<seq>_GT/TRA/man_trackNNN.tif`` markers exist, cells that have a
    tracking marker but no segmentation are marked in `ignore` (their
    marker region, dilated by the typical annotated cell radius), so that
    training does not learn them as background.

    Args:
        path: the dataset folder (holding ``01``, ``01_GT``, ...).
        sequences: which sequences to read (default: every ``NN`` folder
            that has ``NN_GT/SEG``).
        ignore_unannotated: build the `ignore` masks from TRA markers.
    """
    from keras_unet.io import read_image

    root = _require_dir(
        path,
        "a Cell Tracking Challenge folder with 01/t000.tif and "
        "01_GT/SEG/man_seg000.tif",
    )
    if sequences is None:
        sequences = sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir()
            and re.fullmatch(r"\d+", p.name)
            and (root / f"{p.name}_GT" / "SEG").is_dir()
        )
    if not sequences:
        raise FileNotFoundError(
            f"No annotated sequence in {root}: expected folders like 01/ "
            "(frames t000.tif, ...) and 01_GT/SEG/ (man_seg000.tif, ...)."
        )
    images, instances, ignore, names = [], [], [], []
    for seq in sequences:
        frames_dir = _require_dir(root / seq, f"frames {root / seq}/tNNN.tif")
        seg_dir = _require_dir(
            root / f"{seq}_GT" / "SEG",
            f"{root / (seq + '_GT')}/SEG/man_segNNN.tif",
        )
        frames = {}
        for f in frames_dir.iterdir():
            m = _CTC_FRAME.match(f.name)
            if m:
                frames[int(m.group(1))] = f
        tra_dir = root / f"{seq}_GT" / "TRA"
        tra = {}
        if ignore_unannotated and tra_dir.is_dir():
            for f in tra_dir.iterdir():
                m = _CTC_TRA.match(f.name)
                if m:
                    tra[int(m.group(1))] = f
        segs = sorted(
            (int(m.group(1)), f)
            for f in seg_dir.iterdir()
            if (m := _CTC_SEG.match(f.name))
        )
        if not segs:
            raise FileNotFoundError(f"{seg_dir} holds no man_segNNN.tif file.")
        for t, seg_file in segs:
            if t not in frames:
                raise FileNotFoundError(
                    f"{seg_file.name} annotates frame {t}, but {frames_dir} "
                    f"has no t{t:03d}.tif."
                )
            image = read_image(frames[t])
            inst = np.asarray(read_image(seg_file)).astype(np.int32)
            if inst.shape != image.shape[:2]:
                raise ValueError(
                    f"{seg_file} has shape {inst.shape} but {frames[t]} has "
                    f"{image.shape[:2]}."
                )
            mask = np.zeros(inst.shape, bool)
            if t in tra:
                mask = _unannotated(inst, np.asarray(read_image(tra[t])))
            images.append(image)
            instances.append(inst)
            ignore.append(mask)
            names.append(f"{seq}_t{t:03d}")
    return ImageSet(
        images=images,
        instances=instances,
        ignore=ignore if ignore_unannotated else None,
        names=names,
        num_classes=2,
        class_of_interest=1,
        description=f"Cell Tracking Challenge ({root}, sequences {sequences})",
    )


def _unannotated(instances, markers):
    """Regions of tracking markers that no segmented cell overlaps."""
    markers = markers.astype(np.int64)
    ids = np.unique(markers[markers > 0])
    if not len(ids):
        return np.zeros(instances.shape, bool)
    sizes = np.bincount(instances.ravel())[1:]
    sizes = sizes[sizes > 0]
    radius = (
        max(2, int(np.sqrt(np.median(sizes) / np.pi))) if len(sizes) else 10
    )
    mask = np.zeros(instances.shape, bool)
    for i in ids:
        region = markers == i
        if not np.any(instances[region] > 0):
            mask |= region
    if mask.any():
        mask = ndimage.binary_dilation(mask, iterations=radius)
        mask &= instances == 0
    return mask


def _mask_files(mask_dir, mask_suffix):
    """{image stem: mask file} of a mask folder."""
    found = {}
    for f in _image_files(mask_dir):
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
    from keras_unet.io import read_image

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

    Files are read with `keras_unet.io.read_image` (PNG, JPEG, BMP, TIFF;
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
    from keras_unet.checks import check_choice
    from keras_unet.io import files_by_stem, read_image

    check_choice(mask_type, "mask_type", ("classes", "instances"))
    image_dir = _require_dir(images, "a folder of image files")
    mask_dir = _require_dir(masks, "a folder of mask files")
    image_files = _image_files(image_dir)
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
        return ImageSet(images=imgs, instances=masks_, names=names,
                        description=description)  # fmt: skip
    masks_, k = _class_masks(masks_, num_classes)
    return ImageSet(images=imgs, labels=masks_, names=names, num_classes=k,
                    description=description)  # fmt: skip


def load_synthetic(n=12, size=256, seed=0) -> ImageSet:
    """The built-in synthetic cells (`synthetic_cells`) as an ImageSet."""
    images, instances = synthetic_cells(n, size=size, seed=seed)
    return ImageSet(
        images=list(images),
        instances=list(instances),
        names=[f"synthetic_{i:03d}" for i in range(n)],
        description=f"synthetic cells (n={n}, size={size}, seed={seed})",
    )
