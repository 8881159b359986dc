import os
import subprocess
import sys

import pytest

import keras_unet
from keras_unet.cli import errors
from keras_unet.cli.main import build_parser, main
from keras_unet.jobs import predict, prediction_folder


def test_version_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "keras_unet.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"keras-unet {keras_unet.__version__}"


def test_summary_prints_layers_and_geometry(capsys):
    assert main(["summary", "--input-size", "572"]) == 0
    out = capsys.readouterr().out
    assert "31,030,658" in out
    assert "unet_up1_crop" in out
    assert "input tile 572 px -> output tile 388 px" in out
    assert "margin 92 px" in out
    assert "556, 572, 588" in out


def test_summary_table_is_whole_when_piped(capsys, monkeypatch):
    # capsys is not a terminal, like `keras-unet summary | less`: rich would
    # crop the table at 80 columns, cutting the "Connected to" column.
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["summary", "--depth", "2", "--filters", "4"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r[:1] in "│┃"]
    assert rows and all(r.rstrip()[-1] in "│┃" for r in rows)
    assert any("Connected to" in r for r in rows)
    assert "COLUMNS" not in os.environ


def test_summary_small_model(capsys):
    assert (
        main(
            [
                "summary",
                "--input-size",
                "60",
                "--depth",
                "2",
                "--filters",
                "4",
                "--channels",
                "3",
                "--classes",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "input tile 60 px -> output tile 20 px" in out


def test_invalid_size_is_one_line_error(capsys):
    assert main(["summary", "--input-size", "570"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-unet: error: input size 570 is not valid")
    assert "556 and 572" in err
    assert "Traceback" not in err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "summary" in capsys.readouterr().out


def test_bad_option_value_exits_2():
    with pytest.raises(SystemExit) as e:
        main(["summary", "--depth", "0"])
    assert e.value.code == 2


# ---------------------------------------------------------------------------
# The end-to-end commands on small data

import json  # noqa: E402

import numpy as np  # noqa: E402

from keras_unet.io.images import read_image, write_image  # noqa: E402

SMALL = [
    "--depth",
    "2",
    "--filters",
    "4",
    "--input-size",
    "60",
    "--steps",
    "2",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--quiet",
    "--no-tensorboard",
]


def _folders(tmp_path, n=3, size=(64, 72)):
    from keras_unet.data.synthetic import synthetic_cells
    from keras_unet.data.weight_maps import separate_instances

    images, instances = synthetic_cells(n, size=size, seed=3)
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for i, (im, ins) in enumerate(zip(images, instances)):
        write_image(tmp_path / f"img/c{i}.png", im)
        write_image(
            tmp_path / f"msk/c{i}.png",
            separate_instances(ins).astype(np.uint8) * 255,
        )
    return tmp_path / "img", tmp_path / "msk"


def test_train_predict_evaluate_export(tmp_path, capsys):
    img, msk = _folders(tmp_path)
    run = tmp_path / "run"
    train_argv = [
        "train",
        "--data",
        str(img),
        "--format",
        "folders",
        "--masks",
        str(msk),
        "--output",
        str(run),
        *SMALL,
    ]
    assert main(train_argv) == 0
    assert (run / "best.keras").is_file() and (run / "config.json").is_file()
    # a second run into the same folder is refused, nothing overwritten
    assert main(train_argv) == 2
    assert "already holds a training run" in capsys.readouterr().err
    # continue the run with its stored settings, two more epochs
    assert (
        main(
            [
                "train",
                "--output",
                str(run),
                "--resume",
                "--epochs",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["steps_done"] == 4
    # repeat from the resolved config, into another folder
    assert (
        main(
            [
                "train",
                "--config",
                str(run / "config.json"),
                "--output",
                str(tmp_path / "run2"),
                "--quiet",
            ]
        )
        == 0
    )

    pred = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(run / "best.keras"),
                "--input",
                str(img),
                "--output",
                str(pred),
            ]
        )
        == 0
    )
    for i in range(3):
        prob = read_image(pred / f"c{i}.tif")
        assert prob.dtype == np.float32 and prob.shape == (64, 72)
        assert 0 <= prob.min() and prob.max() <= 1
        shown = read_image(pred / "overlays" / f"c{i}.png")
        assert shown.shape[0] > 64 and shown.shape[1:] == (72, 3)  # + legend
    record = json.loads((pred / "predictions.json").read_text())
    assert (
        record["class_of_interest"] == 1 and record["meaning"] == "foreground"
    )

    report_dir = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--predictions",
                str(pred),
                "--labels",
                str(msk),
                "--output",
                str(report_dir),
            ]
        )
        == 0
    )
    report = json.loads((report_dir / "metrics.json").read_text())
    assert len(report["images"]) == 3
    assert 0 <= report["mean"]["pixel_error"] <= 1
    assert (report_dir / "metrics.csv").is_file()

    export = tmp_path / "serving" / "1"
    assert (
        main(
            [
                "export",
                "--model",
                str(run / "best.keras"),
                "--output",
                str(export),
            ]
        )
        == 0
    )
    assert (export / "saved_model.pb").is_file()
    said = capsys.readouterr().out
    # how to serve it, runnable as printed (no pointer to a file that only
    # exists in a clone of the repository)
    assert f"source={export.parent.resolve()},target=/models/serving" in said
    assert "/v1/models/serving:predict" in said and "docs/" not in said
    assert (
        main(
            [
                "export",
                "--model",
                str(run / "best.keras"),
                "--output",
                str(export),
            ]
        )
        == 2
    )  # refuses to overwrite


def test_predict_with_tta_single_file(tmp_path):
    img, msk = _folders(tmp_path, n=2)
    run = tmp_path / "run"
    main(
        [
            "train",
            "--data",
            str(img),
            "--format",
            "folders",
            "--masks",
            str(msk),
            "--output",
            str(run),
            *SMALL,
        ]
    )
    out = tmp_path / "p"
    assert (
        main(
            [
                "predict",
                "--model",
                str(run / "last.keras"),
                "--input",
                str(img / "c0.png"),
                "--output",
                str(out),
                "--tta",
                "--no-overlay",
                "--class",
                "0",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "c0.tif",
        "predictions.json",
    ]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "--data", "/nonexistent/isbi"], "not a folder"),
        (["train", "--format", "folders", "--data", "/tmp"], "masks"),
        (["train", "--input-size", "570"], "556 and 572"),
        (
            [
                "predict",
                "--model",
                "/nonexistent.keras",
                "--input",
                ".",
                "--output",
                "o",
            ],
            "No such model file",
        ),
        (["evaluate", "--predictions", "/nonexistent", "--labels", "/x"], ""),
        (["train", "--config", "/nonexistent.json"], "No such config file"),
    ],
)
def test_bad_input_is_a_one_line_error(argv, match, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-unet: error:") and match in err
    assert "Traceback" not in err


def test_every_option_is_explained():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {
        "summary",
        "demo",
        "train",
        "predict",
        "evaluate",
        "export",
    }
    for name, p in sub.choices.items():
        assert p.description, name
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings}"


def test_demo_quick_console_script(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_unet.cli",
            "demo",
            "--quick",
            "--output",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Held-out images" in out.stdout and "seg_iou" in out.stdout
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert set(report["mean"]) == {
        "pixel_error",
        "rand_error",
        "warping_error",
        "seg_iou",
    }
    assert (
        tmp_path / "demo" / "predictions" / "overlays" / "heldout_0.png"
    ).is_file()
    assert "E0000" not in out.stderr and "UserWarning" not in out.stderr


def test_demo_reruns_into_its_folder_and_refuses_foreign_runs(tmp_path):
    from keras_unet.jobs.demo import run_demo

    out = tmp_path / "demo"
    first = run_demo(out, quick=True)
    again = run_demo(out, quick=True)
    assert first["mean"] == again["mean"]  # same seed, same result
    record = json.loads((out / "predictions" / "predictions.json").read_text())
    assert record["meaning"] == "foreground" and record["complete"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "best.keras").write_text("my model")
    with pytest.raises(FileExistsError, match="not made by keras-unet demo"):
        run_demo(foreign, quick=True)
    assert (foreign / "best.keras").read_text() == "my model"


@pytest.mark.slow
def test_demo_on_isbi_holds_out_the_last_slices(tmp_path, shared_data):
    from keras_unet.jobs.demo import run_demo

    report = run_demo(
        tmp_path / "d", data=shared_data / "isbi2012-em", quick=True
    )
    assert [r["image"] for r in report["held_out"]] == ["20", "21", "22", "23"]
    used = report["training"]["train_images"] + report["training"]["val_images"]
    assert len(used) == 20 and not set(used) & {"20", "21", "22", "23"}
    record = json.loads(
        (tmp_path / "d" / "predictions" / "predictions.json").read_text()
    )
    assert record["meaning"] == "membrane"


def test_train_options_are_generated_from_the_config():
    import dataclasses

    from keras_unet.training.config import TrainConfig
    from keras_unet.training.recipes import PRESETS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    actions = {a.dest: a for a in sub.choices["train"]._actions}
    for field in dataclasses.fields(TrainConfig):
        if not field.metadata["cli"]:
            continue
        action = actions[field.name]
        assert field.metadata["help"] in action.help
        assert action.default is None  # config files and presets fill in
        if field.metadata["choices"]:
            want = [c for c in field.metadata["choices"] if c is not None]
            assert list(action.choices) == want, field.name
    assert list(actions["preset"].choices) == list(PRESETS)
    args = parser.parse_args(
        [
            "train",
            "--learning-rate",
            "3e-4",
            "--holdout",
            "20",
            "21",
            "--no-tensorboard",
            "--warmup-steps",
            "0",
        ]
    )
    assert args.learning_rate == 3e-4 and args.holdout_names == ["20", "21"]
    assert args.tensorboard is False and args.warmup_steps == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--steps", "0"])


def test_diverging_training_exits_1_with_one_line(tmp_path, capsys):
    argv = [
        "train",
        "--output",
        str(tmp_path / "run"),
        "--synthetic-count",
        "4",
        "--synthetic-size",
        "64",
        *SMALL,
        "--optimizer",
        "sgd",
        "--learning-rate",
        "1e30",
        "--warmup-steps",
        "0",
    ]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("keras-unet: error: training diverged")
    assert len(captured.err.strip().splitlines()) == 1
    assert "Done" not in captured.out


def test_building_the_parser_does_not_import_tensorflow():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from keras_unet.cli.main import build_parser; "
            "build_parser(); print('tensorflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_holdout_val_names_and_several_inputs(tmp_path):
    img, msk = _folders(tmp_path, n=4)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(img),
                "--masks",
                str(msk),
                "--output",
                str(run),
                "--val-names",
                "c1",
                "--holdout",
                "c2",
                "c3",
                *SMALL,
            ]
        )
        == 0
    )  # --masks implies folders
    info = json.loads((run / "config.json").read_text())
    assert info["train_names"] == ["c0"] and info["val_names"] == ["c1"]
    out = tmp_path / "p"
    assert (
        main(
            [
                "predict",
                "--model",
                str(run / "best.keras"),
                "--input",
                str(img / "c2.png"),
                str(img / "c3.png"),
                "--output",
                str(out),
                "--no-overlay",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.glob("*.tif")) == ["c2.tif", "c3.tif"]
    assert (
        main(
            [
                "predict",
                "--model",
                str(run / "best.keras"),
                "--input",
                str(img / "c2.png"),
                str(img / "nope.png"),
                "--output",
                str(out),
            ]
        )
        == 2
    )


CLI_WITHOUT_TENSORFLOW = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"blocked for this test: {name}")

sys.meta_path.insert(0, Block())
from keras_unet.cli.main import main
out = sys.argv[1]
small = ["--depth", "2", "--filters", "2", "--input-size", "60", "--steps",
         "2", "--epochs", "1", "--batch-size", "2", "--quiet",
         "--synthetic-count", "4", "--synthetic-size", "64"]
assert main(["train", "--output", out + "/run", *small]) == 0
import keras
assert (__import__("pathlib").Path(out) / "keras_home" / "keras.json").exists()
assert keras.backend.backend() == "jax", keras.backend.backend()
assert main(["predict", "--model", out + "/run/best.keras", "--input",
                 out + "/img", "--output", out + "/pred"]) == 0
assert "tensorflow" not in sys.modules
print("CLI-OK")
"""


@pytest.mark.slow
def test_train_and_predict_without_tensorflow(tmp_path):
    """No TensorFlow: the CLI picks JAX, trains, calibrates and predicts."""
    from keras_unet.data.synthetic import synthetic_cells

    (tmp_path / "img").mkdir()
    write_image(tmp_path / "img" / "a.png", synthetic_cells(1, size=70)[0][0])
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path / "keras_home")  # no keras.json there
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", CLI_WITHOUT_TENSORFLOW, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert "CLI-OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    assert (tmp_path / "pred" / "a.tif").is_file()
    # Keras has now written a keras.json naming TensorFlow: a second run in
    # the same KERAS_HOME must still pick JAX.
    again = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI_WITHOUT_TENSORFLOW.replace('"/run"', '"/run2"').replace(
                '"/pred"', '"/pred2"'
            ),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert "CLI-OK" in again.stdout, again.stderr[-3000:]
    record = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["versions"]["backend"] == "jax"
    assert (
        record["decision_threshold"]
        == (info["calibration"]["decision_threshold"])
    )


def test_evaluate_imports_neither_keras_nor_tensorflow(tmp_path):
    label = np.full((32, 32), 255, np.uint8)
    label[:, 15] = 0
    write_image(tmp_path / "labels" / "a.png", label)
    write_image(tmp_path / "pred" / "a.tif", (label == 0).astype(np.float32))
    pred, labels = str(tmp_path / "pred"), str(tmp_path / "labels")
    code = (
        "import sys; from keras_unet.cli import main; "
        f"assert main(['evaluate', '--predictions', {pred!r}, "
        f"'--labels', {labels!r}]) == 0; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "pixel_error 0" in out.stdout


@pytest.mark.parametrize("threshold", [1.5, -0.1, float("nan"), True, "0.5"])
def test_predict_files_refuses_a_threshold_outside_0_1(tmp_path, threshold):
    from keras_unet.jobs.predict import predict_files

    model = keras_unet.build_unet((None, None, 1), depth=2, filters=2)
    out = tmp_path / "pred"
    with pytest.raises(ValueError, match=r"probability in \[0, 1\]"):
        predict_files(model, tmp_path, out, threshold=threshold)
    assert not out.exists()  # refused before anything is written


def _tiny_model_file(tmp_path):
    model = keras_unet.build_unet((None, None, 1), depth=2, filters=2)
    path = tmp_path / "tiny.keras"
    model.save(path)
    image = np.random.default_rng(0).integers(0, 255, (40, 50), np.uint8)
    write_image(tmp_path / "images" / "a.png", image)
    write_image(tmp_path / "images" / "b.png", image[::-1])
    return path


def _predict(model, inputs, out, *extra):
    argv = ["predict", "--model", str(model), "--input", str(inputs)]
    return main([*argv, "--output", str(out), *extra])


def test_predict_never_mixes_results_in_one_folder(tmp_path, capsys):
    model = _tiny_model_file(tmp_path)
    out = tmp_path / "pred"
    assert _predict(model, tmp_path / "images" / "a.png", out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # a second run into it, with other images: refused, nothing changed
    assert _predict(model, tmp_path / "images" / "b.png", out) == 2
    assert "already holds predictions of" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # --overwrite replaces the folder whole: the old map a.tif is gone
    assert (
        _predict(model, tmp_path / "images" / "b.png", out, "--overwrite") == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == ["b.tif", "overlays", "predictions.json"]
    record = json.loads((out / "predictions.json").read_text())
    assert record["files"] == ["b.tif"] and record["complete"]
    # a folder with a file of the user's is never replaced
    (out / "notes.txt").write_text("mine")
    assert _predict(model, tmp_path / "images", out, "--overwrite") == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*names, "notes.txt"]
    )


def test_predict_reports_a_full_disk_in_one_line(tmp_path, capsys, monkeypatch):
    import errno

    model = _tiny_model_file(tmp_path)
    out = tmp_path / "pred"
    calls = []

    def full_disk(path, image):
        calls.append(path)
        if len(calls) == 2:  # the second file: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_image(path, image)

    monkeypatch.setattr(prediction_folder, "write_image", full_disk)
    assert _predict(model, tmp_path / "images", out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on the device" in err[0], err
    assert not out.exists()  # nothing half-written
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_out_of_memory_error_is_one_line(tmp_path, capsys, monkeypatch):

    model = _tiny_model_file(tmp_path)

    def no_memory(*args, **kwargs):
        raise MemoryError("a 3 GB tile")

    monkeypatch.setattr(predict, "predict_tiled", no_memory)
    assert _predict(model, tmp_path / "images", tmp_path / "pred") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory (a 3 GB tile)" in err[0], err


def test_evaluate_names_the_model_and_refuses_foreign_maps(tmp_path, capsys):
    model = _tiny_model_file(tmp_path)
    out = tmp_path / "pred"
    assert _predict(model, tmp_path / "images", out, "--no-overlay") == 0
    labels = tmp_path / "labels"
    for stem in ("a", "b"):
        write_image(labels / f"{stem}.png", np.full((40, 50), 255, np.uint8))
    argv = ["evaluate", "--predictions", str(out), "--labels", str(labels)]
    assert main([*argv, "--output", str(tmp_path / "m")]) == 0
    report = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert report["settings"]["model"] == str(model)
    assert [row["model"] for row in report["images"]] == [str(model)] * 2
    # a map copied in from elsewhere is not scored with the model's maps
    write_image(out / "c.tif", np.zeros((40, 50), np.float32))
    write_image(labels / "c.png", np.full((40, 50), 255, np.uint8))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "did not write (c.tif)" in err and str(model) in err


def test_machine_errors_and_bare_errnos_read_as_one_line(
    tmp_path, capsys, monkeypatch
):

    model = _tiny_model_file(tmp_path)

    def tf_disk_full(*args, **kwargs):  # TensorFlow's own exception type
        raise RuntimeError("ResourceExhaustedError: No space left on device")

    monkeypatch.setattr(predict, "write_prediction", tf_disk_full)
    assert _predict(model, tmp_path / "images", tmp_path / "p") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on the device" in err[0]
    # an existing file where a folder is needed: said in words
    assert _predict(model, tmp_path / "images", model) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a directory" in err and "Errno" not in err
    images = str(tmp_path / "images")
    argv = ["predict", "--model", images, "--input", images, "--output", "x"]
    assert main(argv) == 2
    assert "is a folder, not a .keras file" in capsys.readouterr().err


def test_predict_files_refuses_no_images_and_mixed_folders(tmp_path):
    from keras_unet.jobs.predict import predict_files

    model = keras_unet.build_unet((None, None, 1), depth=2, filters=2)
    with pytest.raises(ValueError, match="No images to segment"):
        predict_files(model, [], tmp_path / "p")
    write_image(tmp_path / "a.png", np.zeros((30, 30), np.uint8))
    with pytest.raises(ValueError, match="a folder among image files"):
        predict_files(model, [tmp_path / "a.png", tmp_path], tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_errors_name_the_users_path_not_a_temporary_sibling():
    import errno

    err = OSError(errno.EPERM, "Operation not permitted", "ro/.p38.x1y2.tmp")
    assert errors.user_message(err) == (
        "ro/p38 operation not permitted; choose another path."
    )
    full = OSError(errno.ENOSPC, "No space", "run/.last.abc.tmp.keras")
    assert "(run/last.keras)" in errors.resource_message(full)
