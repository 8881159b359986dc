"""Lazy chunked prediction on Dask equals predict_tiled in memory."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_unet import build_unet
from keras_unet.inference.chunked import predict_chunked
from keras_unet.inference.tiled import predict_tiled, predict_tiled_batch
from keras_unet.model.geometry import UNetGeometry

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_unet((None, None, 1), depth=2, filters=4)


def _image(shape, dtype, seed=1):
    x = np.random.default_rng(seed).random(shape)
    if dtype == "float32":
        return x.astype(np.float32)
    return (x * np.iinfo(dtype).max).astype(dtype)


@pytest.mark.parametrize(
    "shape, chunk, dtype",
    [
        ((300, 517), 64, "uint8"),  # many chunks, ragged last ones
        ((37, 90), (16, 32), "uint16"),  # odd shape, rectangular chunks
        ((5, 7), None, "float32"),  # smaller than one chunk and the margin
        ((130, 64), 64, "uint8"),  # exactly two chunks along the rows
    ],
)
def test_equals_predict_tiled_2d(model, shape, chunk, dtype):
    image = _image(shape, dtype)
    lazy = predict_chunked(model, da.from_array(image, chunks=50), chunk)
    assert lazy.shape == (*shape, 2) and lazy.dtype == np.float32
    got = lazy.compute(scheduler="threads")
    np.testing.assert_allclose(got, predict_tiled(model, image), atol=1e-5)


def test_equals_one_pass_over_the_mirrored_image(model):
    """An independent reference: the model run once on the whole image,
    mirror-padded by numpy to a valid size, soft-max by hand."""
    image = _image((61, 83), "float32", seed=4)
    c, geometry = 20, UNetGeometry(2)  # depth 2: context 6 * 4 - 4
    size = [geometry.round_up(n + 2 * c) for n in image.shape]
    pad = [(c, s - n - c) for s, n in zip(size, image.shape)]
    padded = np.pad(image, pad, mode="reflect")[None, ..., None]
    logits = np.asarray(model(padded))[0, : image.shape[0], : image.shape[1]]
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    got = predict_chunked(model, image, 32).compute()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_equals_predict_tiled_with_tta_and_a_deeper_net():
    keras.utils.set_random_seed(1)
    deep = build_unet((None, None, 1), depth=3, filters=2)
    image = _image((150, 131), "uint8", seed=2)
    got = predict_chunked(deep, image, 64, tta="d4").compute()
    expected = predict_tiled(deep, image, tta="d4")
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_multichannel_input():
    keras.utils.set_random_seed(2)
    rgb = build_unet((None, None, 3), depth=2, filters=2, num_classes=3)
    image = _image((70, 90, 3), "uint8", seed=3)
    got = predict_chunked(rgb, image, 32).compute()
    np.testing.assert_allclose(got, predict_tiled(rgb, image), atol=1e-5)


@pytest.mark.parametrize("z_chunk", [1, 3])
def test_stack_slice_by_slice(model, z_chunk):
    stack = _image((5, 45, 70), "uint16", seed=5)
    lazy = predict_chunked(model, stack, 32, z_chunk=z_chunk)
    assert lazy.chunks[0] == ((1,) * 5 if z_chunk == 1 else (3, 2))
    expected = predict_tiled_batch(model, stack)
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-5)


def test_chunks_scale_by_dtype_not_by_chunk(model):
    """A dark chunk next to a bright one is scaled by 1/255, not stretched."""
    image = np.zeros((64, 128), np.uint8)
    image[:, 64:] = 200
    image[:, :64] = np.arange(64, dtype=np.uint8)[None] % 7
    got = predict_chunked(model, image, 64).compute()
    np.testing.assert_allclose(got, predict_tiled(model, image), atol=1e-5)


def test_chunk_size_must_sit_on_the_tile_grid(model):
    with pytest.raises(ValueError, match="not a multiple of 4.*use 100 or 104"):
        predict_chunked(model, np.zeros((300, 300), np.uint8), 102)
    with pytest.raises(ValueError, match="chunk_size"):
        predict_chunked(model, np.zeros((300, 300), np.uint8), 0)


def test_wrong_layout_is_refused_before_computing(model):
    with pytest.raises(ValueError, match=r"\(Z, H, W, C\).*shape=\(2, 3,"):
        predict_chunked(model, np.zeros((2, 3, 40, 40, 1), np.uint8))
    with pytest.raises(ValueError, match="stack=True/False"):
        predict_chunked(model, np.zeros((4, 40, 40, 2), np.uint8))
    with pytest.raises(ValueError, match="1 channel"):
        predict_chunked(model, np.zeros((40, 40), np.uint8), stack=True)
    one = predict_chunked(model, np.zeros((40, 50, 1), np.uint8))
    assert one.shape == (40, 50, 2)  # (H, W, 1): an image, not a stack
    assert predict_chunked(model, np.zeros((3, 40, 50))).shape[0] == 3


def test_missing_extra_names_the_install(monkeypatch):
    model = build_unet((None, None, 1), depth=2, filters=2)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"keras-unet-paper\[dask\]"):
        predict_chunked(model, np.zeros((40, 40), np.uint8))


def test_import_keras_unet_does_not_import_dask():
    code = (
        "import sys, keras_unet, keras_unet.inference.chunked; "
        "import keras_unet.io.volumes; "
        "keras_unet.predict_chunked; "
        "sys.exit('dask' in sys.modules or 'zarr' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.slow  # two processes importing TensorFlow: ~40 s on 2 cores
def test_local_cluster_two_worker_processes(model, tmp_path):
    """The model travels as its path; each worker process loads it once."""
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "model.keras"
    model.save(path)
    image = _image((150, 260), "uint8", seed=6)
    lazy = predict_chunked(path, da.from_array(image, chunks=64), 64)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = client.compute(lazy).result()
        workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2
    np.testing.assert_allclose(got, predict_tiled(model, image), atol=1e-5)
