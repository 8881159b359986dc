import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unet.export.saved_model import METADATA_FILE, export_saved_model
from keras_unet.inference.tiled import predict_tiled
from keras_unet.model.unet import build_unet

# A TF-only process: loads the SavedModel and runs it on the images saved by
# the test, without keras_unet (and without importing Keras itself).
FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    model_dir, work = sys.argv[1], sys.argv[2]
    served = tf.saved_model.load(model_dir)
    cases = [
        ("serving_default", "u8_small"),
        ("serving_default", "u8_large"),
        ("predict_float32", "f32_batched"),
        ("predict_uint16", "u16_channel"),
    ]
    for signature, name in cases:
        image = np.load(f"{work}/{name}.npy")
        fn = served.signatures[signature]
        out = fn(image=tf.constant(image))["probabilities"].numpy()
        np.save(f"{work}/{name}_out.npy", out)
    assert "keras_unet" not in sys.modules, "keras_unet was imported"
    print("keras imported:", "keras" in sys.modules)
    """
)


def fresh_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    # The script itself asserts that it never imports keras_unet.
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def model():
    return build_unet((None, None, 1), depth=2, filters=2, seed=3)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    # 92 px tiles: many tiles even for the 300x517 image.
    path = tmp_path_factory.mktemp("models") / "unet" / "1"
    return export_saved_model(model, path, tile_size=92)


def images():
    rng = np.random.default_rng(0)
    return {
        "u8_small": rng.integers(0, 256, (300, 517), dtype=np.uint8),
        "u8_large": rng.integers(0, 256, (1100, 900), dtype=np.uint8),
        "f32_batched": rng.random((2, 97, 130, 1), dtype=np.float32),
        "u16_channel": rng.integers(0, 65536, (41, 7, 1), dtype=np.uint16),
    }


def test_round_trip_in_a_fresh_tensorflow_only_process(
    model, exported, tmp_path
):
    cases = images()
    for name, image in cases.items():
        np.save(tmp_path / f"{name}.npy", image)
    script = tmp_path / "serve.py"
    script.write_text(FRESH_PROCESS)
    result = subprocess.run(
        [sys.executable, str(script), str(exported), str(tmp_path)],
        cwd=tmp_path,
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name, image in cases.items():
        got = np.load(tmp_path / f"{name}_out.npy")
        if image.ndim == 4:  # a batch in, a batch out
            want = np.stack([predict_tiled(model, im) for im in image])
        else:
            want = predict_tiled(model, image)
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=name)


def test_saved_model_cli_run(model, exported, tmp_path):
    image = images()["u8_small"]
    np.save(tmp_path / "image.npy", image)
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    command = (
        [str(cli)]
        if cli.exists()
        else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    )
    result = subprocess.run(
        [
            *command,
            "run",
            "--dir",
            str(exported),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"image={tmp_path / 'image.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        cwd=tmp_path,
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.load(tmp_path / "out" / "probabilities.npy")
    np.testing.assert_allclose(
        got, predict_tiled(model, image), atol=1e-5, rtol=0
    )


def test_export_metadata_and_signatures(exported):
    meta = json.loads((exported / METADATA_FILE).read_text())
    assert meta["tile_size"] == [92, 92] and meta["margin"] == 20
    assert meta["serving_default_dtype"] == "uint8"
    served = tf.saved_model.load(str(exported))
    assert set(served.signatures) == {
        "serving_default",
        "predict_uint8",
        "predict_uint16",
        "predict_float32",
    }
    spec = served.signatures["serving_default"].structured_input_signature
    assert spec[1]["image"].dtype == tf.uint8
    # Readable by other users (TF Serving often runs as another user).
    assert exported.stat().st_mode & 0o055 == 0o055 & ~_umask() & 0o777


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


RGB_TTA = ["rot90", "flip_lr", "transpose"]


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """A 3-channel, 3-class depth-3 model exported with TTA, float32 input.

    Depth 3 (unlike depth 2) has output tiles that are not multiples of the
    offset step, so the in-graph tile alignment is put to the test.
    """
    model = build_unet(
        (None, None, 3), num_classes=3, depth=3, filters=2, seed=1
    )
    path = export_saved_model(
        model,
        tmp_path_factory.mktemp("rgb") / "1",
        tta=RGB_TTA,
        tile_size=(108, 124),
        batch_size=3,
        input_dtype="float32",
        mirror="symmetric",
    )
    return model, path


def test_tta_multichannel_in_graph(rgb):
    model, path = rgb
    image = np.random.default_rng(1).random((45, 131, 3), dtype=np.float32)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    got = fn(image=tf.constant(image))["probabilities"].numpy()
    want = predict_tiled(model, image, tta=RGB_TTA, mirror="symmetric")
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert json.loads((path / METADATA_FILE).read_text())["tta"] == RGB_TTA


def test_same_padded_one_class_model_in_graph(tmp_path):
    same = build_unet(
        (None, None, 1),
        num_classes=1,
        depth=2,
        filters=2,
        padding="same",
        seed=2,
    )
    path = export_saved_model(same, tmp_path / "same", tile_size=64)
    image = np.random.default_rng(2).integers(0, 256, (70, 33), np.uint8)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    got = fn(image=tf.constant(image))["probabilities"].numpy()
    assert got.shape == (70, 33, 1)
    np.testing.assert_allclose(
        got, predict_tiled(same, image), atol=1e-5, rtol=0
    )


def test_bad_images_are_rejected_in_the_graph(exported, rgb):
    served = tf.saved_model.load(str(exported))
    u8 = served.signatures["predict_uint8"]
    f32 = served.signatures["predict_float32"]
    bad = [
        (u8, np.zeros(5, np.uint8), "must have shape"),
        (u8, np.zeros((1, 1, 4, 4, 1), np.uint8), "must have shape"),
        (u8, np.zeros((1, 4, 4, 3), np.uint8), "1 channel"),
        (u8, np.zeros((0, 4), np.uint8), "empty"),
        (f32, np.full((9, 9), np.nan, np.float32), "NaN or infinite"),
    ]
    for fn, image, message in bad:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(image=tf.constant(image))
    fn = tf.saved_model.load(str(rgb[1])).signatures["predict_uint8"]
    for shape in [(20, 30), (20, 30, 4)]:
        image = tf.zeros(shape, tf.uint8)
        with pytest.raises(tf.errors.InvalidArgumentError, match="3 channel"):
            fn(image=image)


def test_writing_is_atomic_and_never_replaces_the_users_folders(
    model, tmp_path, monkeypatch
):
    target = tmp_path / "unet" / "1"
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="never replaced"):
        export_saved_model(model, target, tile_size=92)
    # not even with overwrite=True: only an earlier export is replaced
    with pytest.raises(FileExistsError, match=r"\(keep\.txt\); it is never"):
        export_saved_model(model, target, tile_size=92, overwrite=True)
    assert (target / "keep.txt").read_text() == "user data"
    (target / "keep.txt").unlink()

    # A crash while writing leaves neither a partial model nor temp folders.
    def crash(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, target, tile_size=92)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["1"]
    assert not any(target.iterdir())

    export_saved_model(model, target, tile_size=92)  # into the empty folder
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, target, tile_size=92)
    before = (target / "keras_unet.json").read_text()
    export_saved_model(model, target, tile_size=188, overwrite=True)
    assert (target / "keras_unet.json").read_text() != before  # replaced
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["1"]


def test_export_argument_errors(model, tmp_path):
    with pytest.raises(ValueError, match="nearest valid sizes are 92 and 96"):
        export_saved_model(model, tmp_path / "a", tile_size=94)
    deep = build_unet((None, None, 1), depth=4, filters=2)
    with pytest.raises(ValueError, match="at least 204"):
        export_saved_model(deep, tmp_path / "b", tile_size=188)
    with pytest.raises(ValueError, match="input_dtype"):
        export_saved_model(model, tmp_path / "c", input_dtype="int8")
    with pytest.raises(ValueError, match="Unknown test-time transform"):
        export_saved_model(model, tmp_path / "d", tta=["spin"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        export_saved_model(model, tmp_path / "file")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_fixed_size_model_exports_for_any_size(tmp_path):
    # build_unet() makes fixed-size models (572x572 by default); the export
    # re-wires them to free sizes, as predict_tiled does.
    fixed = build_unet((92, 92, 1), depth=2, filters=2, seed=4)
    path = export_saved_model(fixed, tmp_path / "fixed", input_dtype="float32")
    image = np.random.default_rng(4).random((130, 201), dtype=np.float32)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    got = fn(image=tf.constant(image))["probabilities"].numpy()
    np.testing.assert_allclose(
        got, predict_tiled(fixed, image, tile_size=92), atol=1e-5, rtol=0
    )


def test_labels_are_read_at_the_decision_threshold(model, tmp_path):
    path = export_saved_model(
        model,
        tmp_path / "t",
        tile_size=92,
        threshold=0.47,
        class_of_interest=0,
    )
    meta = json.loads((path / METADATA_FILE).read_text())
    assert meta["decision_threshold"] == 0.47 and meta["class_of_interest"] == 0
    image = np.random.default_rng(5).integers(0, 256, (70, 90), np.uint8)
    out = tf.saved_model.load(str(path)).signatures["serving_default"](
        image=tf.constant(image)
    )
    probs = predict_tiled(model, image, tile_size=92)
    # class 0 where its probability reaches 0.47, class 1 elsewhere; pixels
    # within round-off of the threshold may go either way
    want = np.where(probs[..., 0] >= 0.47, 0, 1)
    clear = np.abs(probs[..., 0] - 0.47) > 1e-5
    labels = out["labels"].numpy()
    assert labels.dtype == np.uint8 and labels.shape == (70, 90)
    np.testing.assert_array_equal(labels[clear], want[clear])
    with pytest.raises(ValueError, match="class_of_interest"):
        export_saved_model(model, tmp_path / "u", class_of_interest=2)
    with pytest.raises(ValueError, match="threshold"):
        export_saved_model(model, tmp_path / "v", threshold=1.5)
