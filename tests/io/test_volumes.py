"""Lazy readers, the OME-Zarr writer and `keras-unet predict` to OME-Zarr."""

import json

import keras
import numpy as np
import pytest
import tifffile

from keras_unet import build_unet
from keras_unet.cli.main import main
from keras_unet.inference.tiled import predict_tiled
from keras_unet.io.images import write_image
from keras_unet.io.volumes import open_volume, write_ome_zarr

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")


def _ramp(shape, dtype=np.uint8):
    return (np.arange(np.prod(shape)) % 251).reshape(shape).astype(dtype)


def test_zarr_array_reads_lazily(tmp_path):
    image = _ramp((70, 90))
    z = zarr.create_array(
        tmp_path / "a.zarr", shape=image.shape, chunks=(32, 32), dtype="u1"
    )
    z[:] = image
    lazy = open_volume(tmp_path / "a.zarr")
    assert isinstance(lazy, da.Array) and lazy.chunksize == (32, 32)
    np.testing.assert_array_equal(lazy.compute(), image)


def test_tiff_through_its_zarr_store(tmp_path):
    image = _ramp((300, 260), np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(64, 64))
    lazy = open_volume(tmp_path / "big.tif", chunks=128)
    assert lazy.dtype == np.uint16 and lazy.chunksize == (128, 128)
    np.testing.assert_array_equal(
        lazy[100:200, 7:250].compute(), image[100:200, 7:250]
    )


@pytest.mark.parametrize("shape", [(3, 50, 40), (50, 40, 3)])
def test_tiff_stack_and_colour(tmp_path, shape):
    image = _ramp(shape)
    tifffile.imwrite(tmp_path / "s.tif", image, photometric="minisblack")
    lazy = open_volume(tmp_path / "s.tif", chunks=32)
    assert lazy.chunksize == ((1, 32, 32) if shape[0] == 3 else (32, 32, 3))
    np.testing.assert_array_equal(lazy.compute(), image)


def test_folder_of_slices_is_a_stack(tmp_path):
    stack = _ramp((3, 20, 30))
    for i, s in enumerate(stack):
        write_image(tmp_path / f"z{i:02d}.png", s)
    lazy = open_volume(tmp_path)
    assert lazy.shape == (3, 20, 30)
    np.testing.assert_array_equal(lazy.compute(), stack)
    write_image(tmp_path / "z03.png", np.zeros((20, 31), np.uint8))
    with pytest.raises(ValueError, match="z03.png is .* one shape"):
        open_volume(tmp_path).compute()


def test_nothing_readable_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Zarr array"):
        open_volume(tmp_path / "missing.zarr")
    with pytest.raises(FileNotFoundError, match="no image slices"):
        open_volume(tmp_path)


def test_ome_zarr_round_trip_with_pyramid_and_labels(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    probs = np.random.default_rng(0).random((600, 520, 1)).astype("f4")
    labels = (probs[..., 0] > 0.5).astype(np.uint8)
    out = write_ome_zarr(
        da.from_array(probs, chunks=(256, 256, 1)),
        tmp_path / "o.zarr",
        labels=da.from_array(labels, chunks=256),
        metadata={"k": 1},
    )
    image, label = list(Reader(parse_url(str(out)))())[:3:2]
    assert [a["name"] for a in image.metadata["axes"]] == ["c", "y", "x"]
    assert [d.shape for d in image.data] == [(1, 600, 520), (1, 300, 260)]
    scales = [
        t[0]["scale"] for t in image.metadata["coordinateTransformations"]
    ]
    assert scales == [[1, 1, 1], [1, 2, 2]]
    np.testing.assert_array_equal(np.asarray(image.data[0])[0], probs[..., 0])
    down = probs[:600, :520, 0].reshape(300, 2, 260, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(np.asarray(image.data[1])[0], down, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(label.data[0]), labels)
    np.testing.assert_array_equal(np.asarray(label.data[1]), labels[::2, ::2])
    assert open_volume(out).shape == (600, 520)  # c of 1 dropped


def test_stack_writes_czyx(tmp_path):
    chunks = ((1, 2), (32, 8), (16, 20, 14), (2,))  # irregular: made regular
    probs = da.ones((3, 40, 50, 2), dtype="f4", chunks=chunks)
    out = write_ome_zarr(probs, tmp_path / "s.zarr")
    meta = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]
    axes = [a["name"] for a in meta["multiscales"][0]["axes"]]
    assert axes == ["c", "z", "y", "x"] and meta["version"] == "0.5"
    level0 = zarr.open_group(out)["0"]
    assert level0.shape == (2, 3, 40, 50) and level0.chunks == (2, 1, 32, 16)
    assert (level0[:] == 1).all()
    assert open_volume(out).shape == (3, 40, 50, 2)


def test_never_overwrites(tmp_path):
    probs = da.zeros((8, 8, 1), dtype="f4")
    (tmp_path / "taken.zarr").mkdir()
    with pytest.raises(FileExistsError, match="never writes over"):
        write_ome_zarr(probs, tmp_path / "taken.zarr")
    source = tmp_path / "in.zarr"
    with pytest.raises(ValueError, match="overlap the input"):
        write_ome_zarr(probs, source / "out.zarr", inputs=[source])
    with pytest.raises(ValueError, match="ending in .zarr"):
        write_ome_zarr(probs, tmp_path / "out")


def test_a_failed_run_leaves_no_output(tmp_path):
    calls = []

    def fail_on_third(block):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return block

    probs = da.zeros((64, 64, 1), dtype="f4", chunks=(16, 16, 1))
    probs = probs.map_blocks(fail_on_third, dtype="f4")
    with pytest.raises(RuntimeError, match="killed"):
        write_ome_zarr(
            probs,
            tmp_path / "o.zarr",
            compute=lambda *d: __import__("dask").compute(*d, scheduler="sync"),
        )
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder


def test_cli_predicts_a_zarr_to_ome_zarr(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 1), depth=2, filters=4)
    model.save(tmp_path / "m.keras")
    image = np.random.default_rng(1).integers(0, 256, (130, 150), np.uint8)
    z = zarr.create_array(
        tmp_path / "in.zarr", shape=image.shape, chunks=(64, 64), dtype="u1"
    )
    z[:] = image
    args = [
        "predict",
        "--model",
        str(tmp_path / "m.keras"),
        "--input",
        str(tmp_path / "in.zarr"),
        "--output",
        str(tmp_path / "o.zarr"),
        "--chunk-size",
        "64",
        "--labels",
        "--quiet",
    ]
    assert main(args) == 0
    out = zarr.open_group(tmp_path / "o.zarr", mode="r")
    expected = predict_tiled(model, image)[..., 1]
    np.testing.assert_allclose(out["0"][0], expected, atol=1e-5)
    np.testing.assert_array_equal(out["labels/labels/0"][:], expected >= 0.5)
    assert main(args) == 2  # the output exists: refused, left as it was
    assert "never writes over" in capsys.readouterr().err
    np.testing.assert_allclose(out["0"][0], expected, atol=1e-5)
    bad = [*args[:6], str(tmp_path / "p.zarr"), "--chunk-size", "66"]
    assert main(bad) == 2
    assert "not a multiple of 4" in capsys.readouterr().err


def test_cli_predicts_a_folder_of_slices_as_a_stack(tmp_path):
    from keras_unet.inference.tiled import predict_tiled_batch

    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 1), depth=2, filters=4)
    model.save(tmp_path / "m.keras")
    stack = np.random.default_rng(2).integers(0, 256, (3, 40, 50), np.uint8)
    for i, s in enumerate(stack):
        write_image(tmp_path / "slices" / f"s{i}.png", s)
    args = [
        "predict",
        "--model",
        str(tmp_path / "m.keras"),
        "--input",
        str(tmp_path / "slices"),
        "--output",
        str(tmp_path / "o.zarr"),
        "--quiet",
    ]
    assert main(args) == 0
    out = zarr.open_group(tmp_path / "o.zarr", mode="r")
    assert out["0"].shape == (1, 3, 40, 50)
    expected = predict_tiled_batch(model, stack)[..., 1]
    np.testing.assert_allclose(out["0"][0], expected, atol=1e-5)
