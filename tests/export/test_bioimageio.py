"""BioImage Model Zoo export: the zoo's own validator and tiled prediction.

`bioimageio.core.test_model` is what ``bioimageio test <zip>`` (the zoo's
CI) runs: format validation, each weight format reproducing the test
output, and inference at several valid sizes and batch sizes.
"""

import json
import os
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")
# bioimageio.spec/core 0.5.12/0.11 leave the package files they read open
# until garbage collection; that is theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")

from keras_unet import build_unet, predict_tiled  # noqa: E402
from keras_unet.cli.main import main  # noqa: E402
from keras_unet.data.synthetic import synthetic_cells  # noqa: E402
from keras_unet.export.bioimageio import export_bioimageio, zoo_geometry  # noqa: E402
from keras_unet.model.geometry import UNetGeometry  # noqa: E402
from keras_unet.model.spec import UNetSpec  # noqa: E402

META = {
    "name": "Tiny U-Net",
    "description": "A depth-2 test model.",
    "authors": ["Ada Lovelace"],
    "license": "MIT",
}


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """bioimageio.core unzips SavedModel weights into the working folder,
    and sets KERAS_BACKEND (default "torch") for the rest of the process
    when it first loads Keras weights: keep both inside the test."""
    import keras

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_BACKEND", keras.backend.backend())


@pytest.fixture(scope="module")
def model():
    return build_unet((None, None, 1), depth=2, filters=4, seed=0)


@pytest.fixture(scope="module")
def package(model, tmp_path_factory):
    """Both weight formats (Keras 3 and SavedModel)."""
    path = tmp_path_factory.mktemp("zoo") / "unet.zip"
    return export_bioimageio(model, path, **META)


def _summary_text(summary):
    lines = [f"status: {summary.status}"]
    for d in summary.details:
        lines.append(f"{d.status}: {d.name}")
        lines += [f"    error {e.loc}: {e.msg}" for e in d.errors]
    return "\n".join(lines)


def test_bioimageio_test_passes(package):
    from bioimageio.core import test_model

    summary = test_model(str(package))
    assert summary.status == "passed", _summary_text(summary)
    tested = {d.loc[1] for d in summary.details if d.loc[:1] == ("weights",)}
    assert tested == {"keras_v3", "tensorflow_saved_model_bundle"}


@pytest.mark.parametrize(
    "dtype", ["uint16", pytest.param("float32", marks=pytest.mark.slow)]
)
def test_input_dtypes_pass_bioimageio_test(model, dtype, tmp_path):
    """The package's preprocessing scales as training did (uint16 / 65535,
    float32 as it is): bioimageio.core reproduces the test output."""
    from bioimageio.core import test_model

    image = (synthetic_cells(1, size=64, seed=2)[0][0] / 255.0).astype(dtype)
    if dtype == "uint16":
        image = (image * 65535).astype(np.uint16)
    path = export_bioimageio(
        model,
        tmp_path / f"{dtype}.zip",
        input_dtype=dtype,
        test_image=image,
        weight_formats="keras_v3",
        **META,
    )
    summary = test_model(str(path))
    assert summary.status == "passed", _summary_text(summary)
    expected = np.load(zipfile.ZipFile(path).open("test_output.npy"))
    probs = np.asarray(
        model(
            image[None, :64, :64, None].astype(np.float32)
            / (65535.0 if dtype == "uint16" else 1.0)
        )
    )
    exp = np.exp(probs - probs.max(-1, keepdims=True))
    np.testing.assert_allclose(
        expected[0, 20:-20, 20:-20],
        (exp / exp.sum(-1, keepdims=True))[0],
        atol=1e-5,
    )


@pytest.mark.slow
def test_bioimageio_test_command(package):
    """The command the zoo's CI runs (``bioimageio test``), in a fresh
    process."""
    import subprocess

    command = [sys.executable, "-m", "bioimageio.core", "test"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [*command, str(package.resolve())],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_package_contents_and_geometry(package):
    from bioimageio.spec import load_model_description

    names = set(zipfile.ZipFile(package).namelist())
    assert {
        "rdf.yaml",
        "README.md",
        "cover.png",
        "weights.keras",
        "tf_saved_model.zip",
        "test_input.npy",
        "test_output.npy",
    } <= names
    descr = load_model_description(package)
    y_in, y_out = descr.inputs[0].axes[1], descr.outputs[0].axes[1]
    # depth 2: margin 6 * 4 - 4 = 20; valid sizes 44 + 4k; 44 - 40 = 4
    # leaves whole steps, so the halo is the margin itself.
    assert (y_in.size.min, y_in.size.step) == (44, 4)
    assert y_out.halo == 20 and y_out.size.offset == 0
    assert descr.inputs[0].pad.mode == "reflect"
    assert [p.id for p in descr.inputs[0].preprocessing] == [
        "ensure_dtype",
        "scale_linear",
        "ensure_dtype",
    ]
    assert descr.inputs[0].preprocessing[1].kwargs.gain == 1 / 255
    assert descr.config.keras_unet["margin"] == 20
    readme = zipfile.ZipFile(package).read("README.md").decode()
    assert "halo of 20 px" in readme and "## Validation" in readme


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_zoo_geometry_tiles_like_predict_tiled(depth, padding):
    """Followed pixel by pixel for blocks of the first few sizes: the
    U-Net gets a valid size, its output lands where the consumer keeps
    it, and every tile starts on predict_tiled's grid (-context + k step)."""
    g = UNetGeometry(depth, padding)
    zoo = zoo_geometry(UNetSpec(g, 1, 2))
    assert zoo.step == g.step and zoo.halo >= g.context
    for n in range(4):
        block = zoo.min + n * zoo.step
        inner = block - 2 * zoo.halo
        assert inner > 0 and inner % g.step == 0  # strides on the grid
        size = block - zoo.crop
        assert g.is_valid(size), (block, size)
        out = g.output_size(size)
        first = zoo.crop + g.margin  # block position of output pixel 0
        assert zoo.pad == (first, block - first - out)
        assert first <= zoo.halo and first + out >= block - zoo.halo
        for j in range(3):  # block j starts at j * inner - halo
            tile_start = j * inner - zoo.halo + zoo.crop
            assert (tile_start + g.context) % g.step == 0
            # each kept pixel sees its full context inside the tile
            assert tile_start <= j * inner - g.context


def _core_predict(package, image, blocksize_parameter):
    from bioimageio.core import Tensor, predict

    # Named axes: a bare array would have to be a valid block itself.
    dims = ("batch", "y", "x", "channel")
    sample = predict(
        model=str(package),
        inputs={"raw": Tensor(image[None, :, :, None], dims=dims)},
        blocksize_parameter=blocksize_parameter,
    )
    return sample.members["probabilities"].data.values[0]


def _reference(model, depth, image):
    g = UNetGeometry(depth)
    pad = [
        (g.margin, g.round_up(n + 2 * g.margin) - n - g.margin)
        for n in image.shape
    ]
    padded = np.pad(image / 255.0, pad, mode="reflect")[None, ..., None]
    logits = np.asarray(model(padded.astype(np.float32)))[0].astype(float)
    logits = logits[: image.shape[0], : image.shape[1]]
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


@pytest.mark.parametrize("depth", [2, 3])
def test_tiled_prediction_matches_predict_tiled(
    package, model, depth, tmp_path
):
    """bioimageio.core tiles an image larger than one block with the halo
    (4 x 4 or 5 x 6 blocks here); it agrees with predict_tiled and with one
    pass of the network over the whole mirrored image (an independent
    reference).
    Depth 3 exercises the network's crop onto the pooling grid."""
    if depth != 2:
        model = build_unet((None, None, 1), depth=depth, filters=4, seed=1)
        package = export_bioimageio(
            model, tmp_path / "d3.zip", weight_formats="keras_v3", **META
        )
    image = synthetic_cells(1, size=(152, 176), seed=1)[0][0]
    ours = _core_predict(package, image, {2: 10, 3: 3}[depth])
    assert ours.shape == (152, 176, 2)
    np.testing.assert_allclose(ours, _reference(model, depth, image), atol=1e-5)
    np.testing.assert_allclose(ours, predict_tiled(model, image), atol=1e-5)


def test_tiled_prediction_last_block_off_grid(package, model):
    """Sides that are not multiples of 2**depth: bioimageio.core shifts
    the last block of a row or column back onto the image end, off the
    pooling grid; everything before it still matches exactly."""
    image = synthetic_cells(1, size=(150, 171), seed=1)[0][0]
    ours = _core_predict(package, image, 10)  # 84 px blocks, 44 px inner
    reference = _reference(model, 2, image)
    np.testing.assert_allclose(
        ours[: 150 - 44, : 171 - 44],
        reference[: 150 - 44, : 171 - 44],
        atol=1e-5,
    )
    assert np.abs(ours - reference).max() > 1e-4  # the shifted blocks


def _error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line
    return err


def test_cli_export(model, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    info = {
        "data": "synthetic cells (test)",
        "class_of_interest": 1,
        "config": {"depth": 2, "epochs": 3},
        "calibration": {
            "model": "best.keras",
            "decision_threshold": 0.4,
            "class_of_interest": 1,
        },
    }
    (run / "config.json").write_text(json.dumps(info))
    out = tmp_path / "unet.zip"
    argv = [
        "export",
        "--format",
        "bioimageio",
        "--model",
        str(run / "best.keras"),
        "--output",
        str(out),
        "--name",
        "Cells",
        "--description",
        "Cells.",
        "--author",
        "Ada",
        "--author",
        "Bob",
        "--license",
        "CC-BY-4.0",
    ]
    assert main(argv) == 0
    readme = zipfile.ZipFile(out).read("README.md").decode()
    assert "synthetic cells (test)" in readme and "threshold" in readme
    rdf = zipfile.ZipFile(out).read("rdf.yaml").decode()
    assert "name: Bob" in rdf and "license: CC-BY-4.0" in rdf
    before = out.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2  # refuses to overwrite
    assert "exists" in _error(capsys)
    assert out.read_bytes() == before
    keras_only = tmp_path / "keras_only.zip"
    argv[argv.index(str(out))] = str(keras_only)
    assert main([*argv, "--weight-format", "keras_v3"]) == 0
    assert "tf_saved_model.zip" not in zipfile.ZipFile(keras_only).namelist()
    assert main([*argv[:-2], "--tta"]) == 2  # SavedModel-only option
    assert "--tta applies to --format savedmodel" in _error(capsys)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": None}, "`name` is required"),
        ({"name": "U4"}, "5 to 128 characters"),
        ({"name": "U-Net/cells"}, "only letters"),
        ({"authors": ["A/B"]}, "format refuses `authors.name`"),
        ({"description": "  "}, "`description` is required"),
        ({"authors": []}, "`authors` is required"),
        ({"authors": [{"affiliation": "x"}]}, "`authors` is required"),
        ({"license": None}, "`license` is required"),
        ({"license": "MIT-ish"}, "SPDX license identifier"),
        ({"input_dtype": "int8"}, "input_dtype"),
        ({"test_image": np.zeros((50, 50), np.uint16)}, "input dtype uint8"),
        ({"test_image": np.zeros((30, 60), np.uint8)}, "at least 44x44"),
        ({"class_names": ["a"]}, "`class_names` must give 2"),
    ],
)
def test_bad_metadata(model, tmp_path, change, message):
    with pytest.raises(ValueError, match=message) as info:
        export_bioimageio(model, tmp_path / "unet.zip", **{**META, **change})
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_not_a_unet(tmp_path):
    import keras

    dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.raises((TypeError, ValueError), match="U-Nets of keras_unet"):
        export_bioimageio(dense, tmp_path / "unet.zip", **META)
    with pytest.raises(TypeError, match="U-Nets of keras_unet"):
        export_bioimageio("model.keras", tmp_path / "unet.zip", **META)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_and_suffix(model, tmp_path):
    out = tmp_path / "unet.zip"
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match="choose a new file name"):
        export_bioimageio(model, out, **META)
    assert out.read_text() == "keep me"
    with pytest.raises(ValueError, match=r"\.zip file"):
        export_bioimageio(model, tmp_path / "unet", **META)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.zip"]


def test_missing_extra_names_pip(model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(ImportError, match=r"keras-unet-paper\[bioimageio\]"):
        export_bioimageio(model, tmp_path / "unet.zip", **META)


def test_import_does_not_load_bioimageio():
    import subprocess

    code = (
        "import sys, keras_unet, keras_unet.export.bioimageio; "
        "print(any(m.startswith('bioimageio') for m in sys.modules))"
    )
    env = {**os.environ, "KERAS_BACKEND": "numpy"}  # no TensorFlow: fast
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.strip() == "False"
