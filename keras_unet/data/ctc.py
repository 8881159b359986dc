"""Cell Tracking Challenge 2D datasets, read from a local folder."""

from __future__ import annotations

import re

import numpy as np
from scipy import ndimage

from keras_unet.data.imageset import ImageSet
from keras_unet.io.files import require_folder
from keras_unet.io.images import read_image

__all__ = ["load_ctc"]

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
    root = require_folder(
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
        frames_dir = require_folder(root / seq, f"frames {root / seq}/tNNN.tif")
        seg_dir = require_folder(
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
