"""Export a U-Net to the BioImage Model Zoo format (bioimage.io).

The zip holds an ``rdf.yaml`` (model description, format 0.5), the network
as Keras 3 (``.keras``) and TensorFlow SavedModel weights, a test input and
the output the model computed for it at export, a cover image and a README.
deepImageJ (Fiji), ilastik, QuPath, the napari plugins and bioimageio.core
run it (docs/bioimageio.md).

The exported network is the U-Net with its soft-max (sigmoid for one
channel) inside and its output zero-padded back to the block size. The
description gives the consumer what `UNetGeometry` knows (`zoo_geometry`):
valid block sizes ``min + step * n`` and a ``halo`` that the consumer cuts
from every side of every output block, with the image mirrored at its
borders. Blocks then fall on the pooling grid of `predict_tiled` (for
depth >= 3 the network crops 4 px at the top and left to get there), so
the consumer's tiled result is `predict_tiled`'s, without seams.

Needs the optional extra: ``pip install "keras-unet-paper[bioimageio]"``.

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for
    Biomedical Image Segmentation. MICCAI 2015 (Fig. 2: overlap-tile).
"""

from __future__ import annotations

import dataclasses
import gc
import pathlib
import shutil
import string
import tempfile
import warnings

import numpy as np

import keras_unet
from keras_unet.checks import check_choice
from keras_unet.data.normalize import to_float_image
from keras_unet.export.formats import INPUT_DTYPES, WEIGHT_FORMATS
from keras_unet.inference.tiling_model import free_size_model
from keras_unet.io.atomic import atomic_path
from keras_unet.io.images import write_image
from keras_unet.model.spec import spec_of
from keras_unet.optional import import_extra

__all__ = [
    "PACKAGE_CITATION",
    "PAPER_CITATION",
    "ZooGeometry",
    "export_bioimageio",
    "zoo_geometry",
]

PAPER_CITATION = {
    "text": "Ronneberger, O., Fischer, P., Brox, T. U-Net: Convolutional "
    "Networks for Biomedical Image Segmentation. MICCAI 2015, LNCS 9351, "
    "pp. 234-241.",
    "doi": "10.1007/978-3-319-24574-4_28",
}
PACKAGE_CITATION = {
    "text": f"keras_unet {keras_unet.__version__} (keras-unet-paper): the "
    "original U-Net for Keras 3, with valid padding and overlap-tile "
    "prediction.",
    "url": "https://pypi.org/project/keras-unet-paper/",
}
_INPUT, _OUTPUT = "raw", "probabilities"
_TAGS = ["unet", "segmentation", "2d", "keras", "tensorflow", "keras_unet"]


@dataclasses.dataclass(frozen=True)
class ZooGeometry:
    """How a U-Net's geometry reads in the bioimage.io description.

    The consumer cuts blocks of ``min + step * n`` px at strides of
    ``block - 2 * halo`` (a multiple of `step`) and keeps the middle of
    each output block. The exported network crops `crop` px from the top
    and left of a block, runs the U-Net and zero-pads its output back to
    the block by `pad` (before, after). So every U-Net tile starts at
    ``-context`` plus a multiple of `step` from the image origin, exactly
    where `keras_unet.predict_tiled` puts it: the same pooling grid, the
    same numbers, no seams.

    Attributes:
        min: the smallest block a consumer may use (leaves `step` px).
        step: valid block sizes are ``min + step * n`` (``2**depth``).
        halo: px cut from each side of every output block: the context,
            plus `crop`.
        crop: px the network removes from the top and left of a block (4
            for depth >= 3, whose valid outputs are 4 px past a multiple
            of `step`; else 0).
        pad: ``(before, after)`` zero padding of the U-Net output back to
            the block size: ``(crop + margin, margin)``.
    """

    min: int
    step: int
    halo: int
    crop: int
    pad: tuple


def zoo_geometry(spec) -> ZooGeometry:
    """The `ZooGeometry` of a `UNetSpec` (see `keras_unet.inspect_unet`).

    Examples:
        >>> from keras_unet.model.geometry import UNetGeometry
        >>> from keras_unet.model.spec import UNetSpec
        >>> zoo_geometry(UNetSpec(UNetGeometry(4), 1, 2))
        ZooGeometry(min=208, step=16, halo=96, crop=4, pad=(96, 92))
    """
    g = spec.geometry
    crop = (g.min_tile - 2 * g.context) % g.step  # valid outputs: crop + k step
    halo = g.context + crop
    pad = (crop + g.margin, g.margin)
    return ZooGeometry(2 * halo + g.step, g.step, halo, crop, pad)


def _require_bioimageio():
    """The bioimageio.spec module (with its model format 0.5), or an
    ImportError naming the ``[bioimageio]`` extra."""
    import_extra("bioimageio.spec.model.v0_5", "bioimageio")
    return import_extra("bioimageio.spec", "bioimageio")


def _check_text(value, name, example):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"`{name}` is required by the BioImage Model Zoo and must be a "
            f"non-empty string, e.g. {name}={example!r}. Received: "
            f"{name}={value!r}"
        )
    return value.strip()


def _check_name(name):
    """The zoo's rule: 5-128 letters, digits, spaces and ``_+-()``."""
    name = _check_text(name, "name", "U-Net HeLa cells")
    allowed = set(string.ascii_letters + string.digits + "_+- ()")
    if not 5 <= len(name) <= 128 or not set(name) <= allowed:
        raise ValueError(
            "`name` must have 5 to 128 characters, only letters, digits, "
            "spaces and _ + - ( ) (the BioImage Model Zoo's rule), e.g. "
            f"'U-Net HeLa cells'. Received: name={name!r}"
        )
    return name


def _check_authors(authors):
    """A list of {"name": ...} dicts from names or dicts."""
    example = "authors=['Ada Lovelace'] or [{'name': ..., 'affiliation': ...}]"
    if isinstance(authors, (str, dict)):
        authors = [authors]
    entries = []
    for a in authors or []:
        entry = {"name": a} if isinstance(a, str) else a
        named = isinstance(entry, dict) and str(entry.get("name", "")).strip()
        if not named:
            entries = []
            break
        entries.append(dict(entry))
    if not entries:
        raise ValueError(
            "`authors` is required by the BioImage Model Zoo: give at least "
            f"one author with a name, e.g. {example}. Received: "
            f"authors={authors!r}"
        )
    return entries


def _check_output(path, overwrite):
    path = pathlib.Path(path)
    if path.suffix != ".zip":
        raise ValueError(
            "A bioimage.io package is a .zip file; name the output e.g. "
            f"unet.zip. Received: path={str(path)!r}"
        )
    if path.exists() and (path.is_dir() or not overwrite):
        raise FileExistsError(
            f"{path} exists; choose a new file name or pass overwrite=True "
            f"(files only). Received: path={str(path)!r}"
        )
    return path


def _network(model, spec, zoo, from_logits):
    """The U-Net with the soft-max inside and its output padded back."""
    import keras

    free = free_size_model(model)
    if free is None:
        raise ValueError(
            "The model could not be rebuilt with free input sizes; build it "
            "with input_shape=(None, None, C). Received: "
            f"model.input_shape={model.input_shape}"
        )
    x = keras.Input((None, None, spec.input_channels), name=_INPUT)
    y = x
    if zoo.crop:  # onto the pooling grid of predict_tiled
        y = keras.layers.Cropping2D(
            ((zoo.crop, 0), (zoo.crop, 0)), name=f"{model.name}_grid"
        )(y)
    y = free(y)
    if from_logits:
        y = keras.layers.Activation(
            "sigmoid" if spec.num_classes == 1 else "softmax",
            name=f"{model.name}_probabilities",
        )(y)
    if any(zoo.pad):  # back to the block size; the consumer cuts the halo
        y = keras.layers.ZeroPadding2D(
            (zoo.pad, zoo.pad), name=f"{model.name}_halo"
        )(y)
    return keras.Model(x, y, name=f"{model.name}_bioimageio")


def _default_test_image(zoo, channels, dtype):
    """Synthetic cells: the smallest block that keeps 128 px of output."""
    from keras_unet.data.synthetic import synthetic_cells

    size = zoo.min + zoo.step * max(
        0, -(-(2 * zoo.halo + 128 - zoo.min) // zoo.step)
    )
    image = synthetic_cells(1, size=size, seed=0)[0][0]
    image = np.repeat(image[..., None], channels, axis=-1)
    return _as_dtype(image, dtype)


def _as_dtype(image, dtype):
    """`image` (uint8 synthetic or any) in the input dtype of the package."""
    if dtype == "uint16" and image.dtype == np.uint8:
        return image.astype(np.uint16) * 257
    if dtype == "float32":
        return to_float_image(image)
    return image


def _test_input(image, zoo, spec, dtype):
    """``(1, H, W, C)`` test tensor of a valid block size, in `dtype`."""
    if image is None:
        image = _default_test_image(zoo, spec.input_channels, dtype)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] != spec.input_channels:
        raise ValueError(
            f"`test_image` must be (H, W) or (H, W, {spec.input_channels}) "
            f"for this model. Received: shape={image.shape}"
        )
    if image.dtype != np.dtype(dtype):
        raise ValueError(
            f"`test_image` must have the package's input dtype {dtype}; "
            "convert it or pass input_dtype=... Received: "
            f"dtype={image.dtype}"
        )
    hw = [
        zoo.min + (max(n - zoo.min, 0) // zoo.step) * zoo.step
        for n in image.shape[:2]
    ]
    if any(n < zoo.min for n in image.shape[:2]):
        raise ValueError(
            f"`test_image` must be at least {zoo.min}x{zoo.min} px, the "
            f"smallest block of this model. Received: shape={image.shape}"
        )
    return image[None, : hw[0], : hw[1]]


def _cover(path, test_input, probs, spec, zoo, interest):
    """A 2:1 cover: the test image beside the probability of `interest`,
    both without the margin (where the network gives no output)."""
    from keras_unet.figures import colormap, to_display

    k = spec.num_classes
    channel = 0 if k == 1 else min(interest, k - 1)
    inner = slice(zoo.halo, -zoo.halo)
    image = to_display(test_input[0, inner, inner])
    prob = colormap(probs[0, inner, inner, channel], vmin=0.0, vmax=1.0)
    return write_image(path, np.concatenate([image, prob], axis=1))


def _tensors(v0_5, spec, zoo, dtype, files, classes):
    """Input and output tensor descriptions from the geometry."""
    size = v0_5.ParameterizedSize(min=zoo.min, step=zoo.step)
    inp = v0_5.TensorId(_INPUT)
    # As keras_unet.data.normalize.to_float_image; the last step keeps float32
    # (the spec would otherwise cast back to the input dtype).
    as_float = v0_5.EnsureDtypeDescr(kwargs={"dtype": "float32"})
    scale = (
        [as_float]
        if dtype == "float32"
        else [
            as_float,
            v0_5.ScaleLinearDescr(
                kwargs={"gain": 1.0 / np.iinfo(np.dtype(dtype)).max}
            ),
            as_float,
        ]
    )
    hi = None if dtype == "float32" else float(np.iinfo(np.dtype(dtype)).max)
    channels = [f"channel{i}" for i in range(spec.input_channels)]
    input_axes = [
        v0_5.BatchAxis(),
        *(
            v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=size)
            for a in ("y", "x")
        ),
        v0_5.ChannelAxis(channel_names=channels),
    ]

    def out_axis(a):
        ref = v0_5.SizeReference(tensor_id=inp, axis_id=v0_5.AxisId(a))
        return v0_5.SpaceOutputAxisWithHalo(
            id=v0_5.AxisId(a), size=ref, halo=zoo.halo
        )

    source = v0_5.InputTensorDescr(
        id=inp,
        description=f"image, {dtype}; "
        + ("as in training" if hi is None else f"divided by {hi:g} to [0, 1]"),
        axes=input_axes,
        test_tensor=v0_5.FileDescr(source=files["test_input"]),
        sample_tensor=v0_5.FileDescr(source=files["sample_input"]),
        data=v0_5.IntervalOrRatioDataDescr(type=dtype, range=(0.0, hi)),
        pad=v0_5.ReflectPadding(mode="reflect"),  # set: else not written
        preprocessing=scale,
    )
    target = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(_OUTPUT),
        description="class probabilities (soft-max inside the network)",
        axes=[
            v0_5.BatchAxis(),
            out_axis("y"),
            out_axis("x"),
            v0_5.ChannelAxis(channel_names=classes),
        ],
        test_tensor=v0_5.FileDescr(source=files["test_output"]),
        sample_tensor=v0_5.FileDescr(source=files["sample_output"]),
        data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    return source, target


def _weights(v0_5, network, folder, formats, authors):
    """Write the weights in `formats`; their description."""
    import keras

    backend = keras.backend.backend()
    entries = {}
    if "keras_v3" in formats:
        network.save(folder / "weights.keras")
        entries["keras_v3"] = v0_5.KerasV3WeightsDescr(
            source=folder / "weights.keras",
            keras_version=keras.__version__,
            backend=(backend, _backend_version(backend)),
            authors=authors,
        )
    if "tensorflow_saved_model_bundle" in formats:
        import tensorflow as tf

        _write_saved_model(network, folder / "tf_saved_model", tf)
        zipped = shutil.make_archive(
            str(folder / "tf_saved_model"), "zip", folder / "tf_saved_model"
        )
        entries["tensorflow_saved_model_bundle"] = (
            v0_5.TensorflowSavedModelBundleWeightsDescr(
                source=pathlib.Path(zipped),
                tensorflow_version=tf.__version__,
                parent="keras_v3" if "keras_v3" in entries else None,
                comment="keras.export.ExportArchive of the keras_v3 network; "
                "endpoint 'serve' returns {'probabilities': ...}",
            )
        )
    return v0_5.WeightsDescr(**entries)


def _backend_version(backend):
    import importlib

    return importlib.import_module(backend).__version__


def _write_saved_model(network, path, tf):
    """SavedModel whose 'serve' endpoint returns a dict (bioimageio.core's
    TensorFlow 2 adapter reads the outputs from a dict)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(network)
    spec = tf.TensorSpec(network.input.shape, tf.float32, name=_INPUT)
    archive.add_endpoint(
        "serve",
        lambda x: {_OUTPUT: network(x, training=False)},
        input_signature=[spec],
    )
    archive.write_out(str(path), verbose=False)


def _check_license(license):
    from bioimageio.spec.model.v0_5 import LicenseId

    _check_text(license, "license", "MIT")
    try:
        return LicenseId(license.strip())
    except ValueError:
        raise ValueError(
            "`license` must be an SPDX license identifier "
            "(https://spdx.org/licenses/), e.g. 'MIT', 'CC-BY-4.0' or "
            f"'BSD-3-Clause'. Received: license={license!r}"
        ) from None


def _check_formats(formats):
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    for f in formats:
        check_choice(f, "weight_formats", WEIGHT_FORMATS)
    if not formats:
        raise ValueError(
            f"`weight_formats` needs at least one of {WEIGHT_FORMATS}. "
            f"Received: weight_formats={formats!r}"
        )
    if "tensorflow_saved_model_bundle" in formats:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise ValueError(
                "The SavedModel weights need the TensorFlow backend of Keras: "
                "run with KERAS_BACKEND=tensorflow, or export "
                "weight_formats=['keras_v3'] (CLI: --weight-format keras_v3). "
                "Received: "
                f"backend={keras.backend.backend()!r}"
            )
    return formats


def _check_spec(model, spec):
    """The model's `UNetSpec`, refusing what is not a U-Net of ours."""
    try:
        spec = spec_of(model) if spec is None else spec
    except (TypeError, ValueError) as e:
        raise type(e)(
            "export_bioimageio exports U-Nets of keras_unet (build_unet, or "
            f"a model loaded with keras_unet.load_model): {e}"
        ) from None
    return spec


def _training_lines(training):
    """README lines on the training run (its ``config.json``), if known."""
    if not training:
        return ["Training settings were not given to the export."]
    config, recipe = training.get("config", {}), training.get("recipe", {})
    keys = (
        "depth",
        "filters",
        "padding",
        "input_size",
        "preset",
        "epochs",
        "steps",
        "seed",
        "w0",
        "sigma",
    )
    lines = [f"- data: {training.get('data', 'unknown')}"]
    lines += [f"- {k}: {config[k]}" for k in keys if k in config]
    lines += [f"- recipe: {recipe}"] if recipe else []
    record = training.get("calibration") or {}
    if "decision_threshold" in record:
        lines.append(
            f"- decision threshold (calibrated on the validation images): "
            f"{record['decision_threshold']:g} on the probability of class "
            f"{record.get('class_of_interest', 1)}"
        )
    return lines


def _readme(name, description, spec, zoo, dtype, classes, training):
    """The package's README.md (documentation)."""
    g = spec.geometry
    scale = (
        "as they are"
        if dtype == "float32"
        else (f"divided by {np.iinfo(np.dtype(dtype)).max} (to [0, 1])")
    )
    return "\n".join(
        [
            f"# {name}",
            "",
            description,
            "",
            "A U-Net (Ronneberger, Fischer, Brox, MICCAI 2015) exported by "
            f"keras_unet {keras_unet.__version__}.",
            "",
            "## Input and output",
            "",
            f"- input `{_INPUT}`: (batch, y, x, channel) {dtype} images with "
            f"{spec.input_channels} channel(s), values {scale}.",
            f"- output `{_OUTPUT}`: (batch, y, x, channel) probabilities of "
            f"the classes {', '.join(classes)} (soft-max inside the network).",
            "",
            "## Tiling (the paper's overlap-tile strategy)",
            "",
            f"Depth {g.depth}, {g.padding} padding: each output pixel depends "
            f"on {g.context} px of context on each side. Blocks are "
            f"{zoo.min} + {zoo.step}n px; consumers cut a halo of {zoo.halo} "
            "px from every side of every output block (the context"
            + (
                f", plus the {zoo.crop} px the network crops at the top and "
                "left to put its tiles on the pooling grid"
                if zoo.crop
                else ""
            )
            + "), and the image is mirrored (reflect) at its borders: the "
            "result is that of keras_unet's `predict_tiled`, without seams. "
            "Use large blocks: each one computes "
            f"{2 * zoo.halo} px per axis that it throws away.",
            "",
            "## Training",
            "",
            *_training_lines(training),
            "",
            "## Validation",
            "",
            "The package's test tensors are the network's own output at "
            "export; `bioimageio test` checks that every weight format "
            "reproduces them. To validate on your data, predict annotated "
            "images and score them "
            "(e.g. `keras-unet evaluate`: ISBI 2012 pixel, Rand and warping "
            "errors, or the Cell Tracking Challenge SEG).",
            "",
            "## Citation",
            "",
            f"- {PAPER_CITATION['text']} doi:{PAPER_CITATION['doi']}",
            f"- {PACKAGE_CITATION['text']}",
            "",
        ]
    )


def _write_files(folder, network, spec, zoo, dtype, test_image, interest):
    """Test tensors and the cover; their paths by name."""
    x = _test_input(test_image, zoo, spec, dtype)
    probs = np.asarray(network.predict(to_float_image(x), verbose=0))
    files = {
        "test_input": folder / "test_input.npy",
        "test_output": folder / "test_output.npy",
        "sample_input": folder / "sample_input.tif",
        "sample_output": folder / "sample_output.tif",
        "cover": folder / "cover.png",
    }
    np.save(files["test_input"], x)
    np.save(files["test_output"], probs.astype(np.float32))
    write_image(files["sample_input"], x[0])  # for people: TIFF images
    write_image(files["sample_output"], probs[0].astype(np.float32))
    _cover(files["cover"], x, probs, spec, zoo, interest)
    return files


def export_bioimageio(
    model,
    path,
    *,
    name=None,
    description=None,
    authors=None,
    license=None,
    input_dtype="uint8",
    test_image=None,
    training=None,
    class_names=None,
    class_of_interest=1,
    from_logits=True,
    weight_formats=WEIGHT_FORMATS,
    tags=None,
    cite=(),
    overwrite=False,
    spec=None,
):
    """Write a U-Net as a BioImage Model Zoo package (a bioimage.io zip).

    The package describes the model in the zoo's format 0.5 (the installed
    bioimageio.spec's latest): valid block sizes, the halo to cut from
    every output block, the scaling of the input to [0, 1] and the
    soft-max, all read from the model's spec (`keras_unet.model.spec.spec_of`),
    never typed by hand; Keras 3 and TensorFlow SavedModel weights; a test input
    and the output computed for it now; a cover and a README. `bioimageio test
    <zip>` (bioimageio.core) passes on it, and deepImageJ, ilastik, napari
    and bioimageio.core tile large images with it (docs/bioimageio.md).
    The zip is written under a temporary name and renamed: never half a
    package.

    Args:
        model: a U-Net of keras_unet (`build_unet`, or loaded with
            `keras_unet.load_model`) outputting logits.
        path: the ``.zip`` to write; it must not exist (unless
            `overwrite`).
        name: the model's name in the zoo (required).
        description: one or two sentences on what it segments (required).
        authors: names, or dicts with ``"name"`` (and ``"affiliation"``,
            ``"orcid"``, ``"github_user"``) (required).
        license: an SPDX identifier, e.g. "MIT" or "CC-BY-4.0" (required).
        input_dtype: dtype of the images the consumer gives: "uint8" or
            "uint16" (scaled to [0, 1] as in training by the package's
            preprocessing) or "float32" (given as they are).
        test_image: ``(H, W)`` or ``(H, W, C)`` image of `input_dtype`,
            cropped to a valid block size; default: a synthetic cells
            image.
        training: the run's ``config.json`` (`keras_unet.training.config.
            read_run_info`), summarised in the README and stored in the
            description's ``config``.
        class_names: a name per output channel (default class0, ...).
        class_of_interest: the channel shown on the cover.
        from_logits: the model outputs logits (soft-max added).
        weight_formats: some of `WEIGHT_FORMATS`; the SavedModel needs
            Keras' TensorFlow backend.
        tags: zoo tags (default: unet, segmentation, 2d, keras, ...).
        cite: more citations, dicts with "text" and "doi" or "url" (the
            paper and keras_unet are always cited).
        overwrite: replace an existing zip.
        spec: the model's `UNetSpec` (default: the one the model carries).

    Returns:
        The `pathlib.Path` of the zip.

    Raises:
        ImportError: bioimageio.spec is missing (the pip command is named).
        ValueError: missing or invalid metadata, a wrong suffix, ...
        TypeError: `model` is not a Keras model.
        FileExistsError: `path` exists and `overwrite` is False.

    Examples:
        >>> import tempfile
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> zip_path = export_bioimageio(
        ...     model, f"{tempfile.mkdtemp()}/unet.zip", name="Tiny U-Net",
        ...     description="A demo.", authors=["Ada"], license="MIT",
        ...     weight_formats=["keras_v3"])
        >>> zip_path.name
        'unet.zip'

    Reference:
        Ronneberger, Fischer, Brox. U-Net (MICCAI 2015), Fig. 2.
    """
    lib = _require_bioimageio()
    from bioimageio.spec.model import v0_5

    meta = {
        "name": _check_name(name),
        "description": _check_text(
            description, "description", "Segments HeLa cells in DIC images."
        ),
        "authors": [
            _validated(v0_5.Author, "authors", **a)
            for a in _check_authors(authors)
        ],
        "license": _check_license(license),
    }
    path = _check_output(path, overwrite)
    check_choice(input_dtype, "input_dtype", INPUT_DTYPES)
    formats = _check_formats(weight_formats)
    spec = _check_spec(model, spec)
    zoo = zoo_geometry(spec)
    classes = _class_names(class_names, spec.num_classes)
    network = _network(model, spec, zoo, from_logits)
    parts = (spec, zoo, classes, input_dtype, training)
    # bioimageio.spec 0.5.12 leaves the package files it reads open until
    # they are garbage-collected: collected here, their ResourceWarnings
    # silenced (not ours to fix).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with atomic_path(path) as out:
            _write_package(
                lib,
                v0_5,
                out,
                network,
                meta,
                parts,
                formats,
                test_image,
                class_of_interest,
                tags,
                cite,
            )
        gc.collect()
    return path


def _write_package(
    lib,
    v0_5,
    out,
    network,
    meta,
    parts,
    formats,
    test_image,
    interest,
    tags,
    cite,
):
    """Write the files in a temporary folder and zip them to `out`."""
    spec, zoo, classes, dtype, training = parts
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        files = _write_files(
            folder, network, spec, zoo, dtype, test_image, interest
        )
        readme = _readme(
            meta["name"],
            meta["description"],
            spec,
            zoo,
            dtype,
            classes,
            training,
        )
        (folder / "README.md").write_text(readme)
        source, target = _tensors(v0_5, spec, zoo, dtype, files, classes)
        descr = _validated(
            v0_5.ModelDescr,
            "",
            **meta,
            cite=[PAPER_CITATION, PACKAGE_CITATION, *cite],
            documentation=v0_5.FileDescr(source=folder / "README.md"),
            covers=[v0_5.FileDescr(source=files["cover"])],
            tags=list(tags or _TAGS),
            inputs=[source],
            outputs=[target],
            weights=_weights(v0_5, network, folder, formats, meta["authors"]),
            config={"keras_unet": _config(spec, zoo, training)},
        )
        lib.save_bioimageio_package(descr, output_path=out)


def _validated(descr_class, field, **fields):
    """The description (of `field`), or a one-line ValueError with the
    spec's reason."""
    import pydantic

    try:
        return descr_class(**fields)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in (field, *first["loc"]) if part)
        raise ValueError(
            f"The BioImage Model Zoo format refuses `{where}`: "
            f"{first['msg']}. Received: {str(first.get('input'))[:80]!r}"
        ) from None


def _class_names(names, k):
    if names is None:
        return [f"class{i}" for i in range(k)]
    names = [str(n) for n in names]
    if len(names) != k or len(set(names)) != k:
        raise ValueError(
            f"`class_names` must give {k} distinct names, one per output "
            f"channel of the model. Received: class_names={names!r}"
        )
    return names


def _config(spec, zoo, training):
    """The description's ``config.keras_unet``: geometry and training."""
    g = spec.geometry
    return {
        "version": keras_unet.__version__,
        "depth": g.depth,
        "padding": g.padding,
        "margin": g.margin,
        "step": g.step,
        "block_min": zoo.min,
        "halo": zoo.halo,
        "crop": zoo.crop,
        "pad": list(zoo.pad),
        "input_channels": spec.input_channels,
        "num_classes": spec.num_classes,
        "mirror": "reflect",
        "training": training or {},
    }
