"""Images larger than memory: lazy readers and a chunk-wise OME-Zarr writer.

`open_volume` gives a Dask array of a Zarr array, an OME-Zarr image (its
full-resolution level), a TIFF read through tifffile's Zarr store
(``aszarr=True``) or a folder of slices (a Z stack, one file a slice),
without reading the pixels. `write_ome_zarr` writes a Dask array as an
OME-Zarr image (NGFF 0.5, written with ome-zarr-py) chunk by chunk, with
its multiscale pyramid and optionally a label image, into a temporary
sibling folder renamed into place at the end: a killed run leaves no
output, never a partial one (it does not resume; run it again).
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np

from keras_unet.io.atomic import atomic_folder
from keras_unet.io.files import list_files
from keras_unet.io.images import IMAGE_SUFFIXES, read_image
from keras_unet.optional import import_extra

__all__ = ["is_zarr", "open_volume", "write_ome_zarr"]

MIN_LEVEL_SIZE = 256  # a pyramid stops before a level smaller than this
DEFAULT_READ_CHUNK = 1024


def is_zarr(path) -> bool:
    """Whether `path` is a Zarr array or group (v2 or v3) on disk."""
    path = pathlib.Path(path)
    marks = ("zarr.json", ".zarray", ".zgroup")
    return path.is_dir() and any((path / m).is_file() for m in marks)


def open_volume(path, chunks=DEFAULT_READ_CHUNK):
    """A lazy Dask array of an image on disk, read chunk by chunk.

    Args:
        path: a Zarr array, an OME-Zarr image (level 0; its axes ``t`` of
            length 1 dropped and ``c`` moved last: ``([z,] y, x[, c])``),
            a ``.tif``/``.tiff`` file (tifffile's Zarr store, any size), or
            a folder of 2-D image files of one shape (a ``(Z, H, W[, C])``
            stack in file-name order).
        chunks: read chunk side for TIFF files (Zarr keeps its own chunks).

    Returns:
        A `dask.array.Array` with the file's dtype (not scaled).

    Raises:
        FileNotFoundError: nothing readable at `path`.
        ValueError: an OME-Zarr image with several time points.
    """
    da = import_extra("dask.array", "dask")
    path = pathlib.Path(path)
    if is_zarr(path):
        return _open_zarr(path)
    if path.is_file() and path.suffix.lower() in (".tif", ".tiff"):
        tiff = _TiffArray(path)
        return da.from_array(tiff, chunks=_tiff_chunks(tiff.shape, chunks))
    if path.is_dir():
        return _open_slices(path)
    raise FileNotFoundError(
        f"{path} is no Zarr array or group, TIFF file or folder of slices; "
        f"give one of those. Received: path={str(path)!r}"
    )


def _open_zarr(path):
    """A Zarr array, or level 0 of an OME-Zarr image as ``([z,] y, x[, c])``."""
    import zarr

    da = import_extra("dask.array", "dask")
    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return da.from_zarr(node)
    attrs = node.attrs.asdict()
    multiscales = attrs.get("ome", attrs).get("multiscales")
    if not multiscales:
        raise FileNotFoundError(
            f"{path} is a Zarr group without OME-Zarr multiscales metadata; "
            "give the path of its image array instead. "
            f"Received: path={str(path)!r}"
        )
    first = multiscales[0]
    array = da.from_zarr(node[first["datasets"][0]["path"]])
    names = [a["name"] if isinstance(a, dict) else a for a in first["axes"]]
    if "t" in names:
        if array.shape[names.index("t")] != 1:
            raise ValueError(
                f"{path} has {array.shape[names.index('t')]} time points; "
                "predict one at a time (e.g. write one to its own Zarr). "
                f"Received: shape={array.shape}, axes={names}"
            )
        array = array[(slice(None),) * names.index("t") + (0,)]
        names.remove("t")
    if "c" in names:
        array = da.moveaxis(array, names.index("c"), -1)
        array = array[..., 0] if array.shape[-1] == 1 else array
    return array


class _TiffArray:
    """A TIFF's first series through tifffile's Zarr store; pickled by path,
    so Dask workers open the file themselves (once per process)."""

    def __init__(self, path):
        import tifffile

        self.path = str(pathlib.Path(path).resolve())
        with tifffile.TiffFile(self.path) as tif:
            series = tif.series[0]
            self.shape, self.dtype = tuple(series.shape), series.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        return _tiff_store(self.path)[key]


def _tiff_chunks(shape, side):
    """Read chunks: `side` px in y and x, one slice, all channels (<= 4)."""
    channels = len(shape) > 2 and shape[-1] <= 4
    leading = len(shape) - 2 - channels
    return (1,) * leading + (side, side) + (-1,) * channels


@functools.lru_cache(maxsize=8)
def _tiff_store(path):
    import tifffile
    import zarr

    node = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    return node if isinstance(node, zarr.Array) else node["0"]


def _open_slices(folder):
    """A folder of 2-D image files as a lazy ``(Z, H, W[, C])`` stack."""
    da, dask = import_extra("dask.array", "dask"), import_extra("dask", "dask")
    files = list_files(folder, IMAGE_SUFFIXES + (".npy",))
    if not files:
        raise FileNotFoundError(
            f"{folder} holds no image slices ({', '.join(IMAGE_SUFFIXES)}); "
            f"give a folder of 2-D images. Received: path={str(folder)!r}"
        )
    first = _read_slice(files[0], None, None)
    read = dask.delayed(_read_slice, pure=True)
    slices = [
        da.from_delayed(
            read(f, first.shape, first.dtype), first.shape, first.dtype
        )
        for f in files
    ]
    return da.stack(slices)


def _read_slice(path, shape, dtype):
    """One slice of a folder stack; every slice has the first's shape."""
    image = np.load(path) if path.suffix == ".npy" else read_image(path)
    if shape is not None and (image.shape, image.dtype) != (shape, dtype):
        raise ValueError(
            f"Slice {path.name} is {image.shape} {image.dtype} but the first "
            f"slice is {shape} {dtype}; a stack needs slices of one shape "
            f"and type. Received: path={str(path)!r}"
        )
    return image


def _check_output(path, inputs):
    """Refuse an existing output and one inside or holding an input."""
    path = pathlib.Path(path).resolve()
    if path.suffix != ".zarr":
        raise ValueError(
            "An OME-Zarr output is a folder ending in .zarr; name it e.g. "
            f"out.zarr. Received: path={str(path)!r}"
        )
    if path.exists():
        raise FileExistsError(
            f"{path} exists; keras_unet never writes over a path, choose a "
            f"new one or remove it. Received: path={str(path)!r}"
        )
    for source in inputs:
        source = pathlib.Path(source).resolve()
        if path == source or source in path.parents or path in source.parents:
            raise ValueError(
                f"The output {path} would overlap the input {source}; write "
                f"elsewhere. Received: path={str(path)!r}"
            )
    return path


def _pyramid(shape, levels):
    """The number of levels: halve y and x while both stay >= 256 px."""
    count, (h, w) = 1, shape[-2:]
    while (levels is None or count < levels) and min(h, w) // 2 >= (
        MIN_LEVEL_SIZE
    ):
        count, h, w = count + 1, h // 2, w // 2
    return count


def write_ome_zarr(
    image,
    path,
    *,
    labels=None,
    levels=None,
    inputs=(),
    compute=None,
    metadata=None,
):
    """Write a lazy image (and labels) as OME-Zarr, chunk by chunk.

    Layout (NGFF 0.5): ``path/0`` the full-resolution image with axes
    ``c, [z,] y, x`` (the last axis of `image` becomes ``c``),
    ``path/1`` ... halved in y and x (means) while both sides stay at
    least 256 px; with `labels`, ``path/labels/labels/0 ...`` an
    ``image-label`` pyramid (``[z,] y, x``, every second pixel). All of it
    is written into a temporary sibling folder and renamed to `path` at the
    end: a failed or killed run leaves no output (no resume).

    Args:
        image: a Dask array ``([Z,] H, W, C)``, e.g. `predict_chunked`'s.
        path: a new folder ending in ``.zarr``; never an existing path.
        labels: an integer Dask array ``([Z,] H, W)``, or None.
        levels: pyramid levels at most (default: down to 256 px).
        inputs: paths that must not be overwritten (the input images).
        compute: ``compute(delayed)`` runs a list of Dask writes (default:
            ``dask.compute``); pass one with a progress bar or a client.
        metadata: a JSON-able dict stored under ``keras_unet`` in the
            image's attributes.

    Returns:
        The `pathlib.Path` written.
    """
    import zarr
    from ome_zarr.writer import write_multiscales_metadata

    da, dask = import_extra("dask.array", "dask"), import_extra("dask", "dask")
    path = _check_output(path, inputs)
    compute = compute or dask.compute
    image = da.moveaxis(image, -1, 0)  # c first
    count = _pyramid(image.shape, levels)
    with atomic_folder(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        targets = [(image, root, "0")]
        if labels is not None:
            group = root.create_group("labels").create_group("labels")
            targets.append((labels, group, "0"))
        compute(*[_store(a, g, name) for a, g, name in targets])
        for level in range(1, count):
            down = [_halve(root, level, mean=True)]
            if labels is not None:
                down.append(_halve(group, level, mean=False))
            compute(*down)
        axes = ["c", "z", "y", "x"] if image.ndim == 4 else ["c", "y", "x"]
        extra = {"metadata": {"keras_unet": metadata}} if metadata else {}
        datasets = _datasets(count, image.ndim)
        write_multiscales_metadata(
            root, datasets, axes=axes, name="probabilities", **extra
        )
        if labels is not None:
            _label_metadata(root, group, count, axes[1:])
    return path


def _label_metadata(root, group, count, axes):
    """The ``image-label`` pyramid's metadata and the ``labels`` list."""
    from ome_zarr.writer import write_multiscales_metadata

    datasets = _datasets(count, len(axes))
    write_multiscales_metadata(group, datasets, axes=axes, name="labels")
    label = {"image-label": {"source": {"image": "../../"}}}
    group.attrs["ome"] = {**group.attrs["ome"], **label}
    root["labels"].attrs["ome"] = {
        "version": root.attrs["ome"]["version"],
        "labels": ["labels"],
    }


def _store(array, group, name):
    """A delayed write of `array` into a new array `name` of `group`, its
    Dask chunks made regular so that no two tasks write one Zarr chunk."""
    chunks = tuple(c[0] for c in array.chunks)
    array = array.rechunk(chunks)
    target = group.create_array(
        name, shape=array.shape, chunks=chunks, dtype=array.dtype
    )
    return array.store(target, lock=False, compute=False)


def _halve(group, level, mean):
    """A delayed write of level `level` from level ``level - 1``."""
    da = import_extra("dask.array", "dask")
    above = da.from_zarr(group[str(level - 1)])
    if mean:
        axes = {above.ndim - 2: 2, above.ndim - 1: 2}
        down = da.coarsen(np.mean, above, axes, trim_excess=True)
        down = down.astype(above.dtype)
    else:
        h, w = above.shape[-2:]
        down = above[..., : h // 2 * 2 : 2, : w // 2 * 2 : 2]
    return _store(down.rechunk(above.chunksize), group, str(level))


def _datasets(count, ndim):
    """The multiscales ``datasets`` entries: scale 2**level in y and x."""
    return [
        {
            "path": str(level),
            "coordinateTransformations": [
                {
                    "type": "scale",
                    "scale": [1.0] * (ndim - 2) + [2.0**level] * 2,
                }
            ],
        }
        for level in range(count)
    ]
