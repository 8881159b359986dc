"""What keras_unet 0.1 users have keeps working: its import paths and runs.

The run in tests/fixtures/release_0_1_0 was saved by 0.1.0 (the flat
layout), with a prediction that release made (its README says how).
"""

import importlib
import json
import pathlib
import shutil
import subprocess
import sys
import warnings
import zipfile

import keras
import numpy as np
import pytest

import keras_unet
from keras_unet import _moved
from keras_unet.inference.tiled import predict_tiled
from keras_unet.model.saving import SPEC_ENTRY, load_model
from keras_unet.training.run import Run

OLD = pathlib.Path(__file__).parent / "fixtures" / "release_0_1_0"


@pytest.mark.parametrize(
    "old, name, new",
    [
        ("keras_unet.tiling", "predict_tiled", "keras_unet.inference.tiled"),
        ("keras_unet.tiling", "plan_axis", "keras_unet.inference.tile_plan"),
        (
            "keras_unet.losses",
            "WeightedCrossentropy",
            "keras_unet.model.losses",
        ),
        (
            "keras_unet.weights",
            "unet_weight_map",
            "keras_unet.data.weight_maps",
        ),
        ("keras_unet.geometry", "output_size", "keras_unet.model.geometry"),
        ("keras_unet.scores", "seg_iou", "keras_unet.evaluation.seg"),
        ("keras_unet.metrics", "isbi_scores", "keras_unet.evaluation.isbi"),
        ("keras_unet.train", "train", "keras_unet.training.train"),
        ("keras_unet.data", "make_training_dataset", "keras_unet.data.stream"),
        ("keras_unet.io", "to_float_image", "keras_unet.data.normalize"),
        ("keras_unet.model", "UNetSpec", "keras_unet.model.spec"),
        ("keras_unet.workflows", "predict_files", "keras_unet.jobs.predict"),
    ],
)
def test_old_paths_import_the_same_object_and_name_the_new_place(
    old, name, new
):
    code = (
        "import importlib, warnings, json\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        f"    old = getattr(importlib.import_module({old!r}), {name!r})\n"
        f"new = getattr(importlib.import_module({new!r}), {name!r})\n"
        "print(json.dumps([old is new, [str(w.message) for w in caught]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    same, messages = json.loads(out.stdout.strip().splitlines()[-1])
    assert same
    assert len(messages) == 1 and f"is now {new}.{name}" in messages[0]


def test_old_paths_in_this_process_warn_once(recwarn):
    from keras_unet.tta import resolve_tta  # an old path

    from keras_unet.inference.tta import resolve_tta as new

    assert resolve_tta is new
    assert [w.category for w in recwarn] == [DeprecationWarning]


def test_removed_and_unknown_names_say_what_to_do():
    with pytest.raises(ImportError, match=r"Run.load\(model_file\).thresh"):
        from keras_unet.calibration import decision_threshold  # noqa: F401
    with pytest.raises(AttributeError, match="moved keras_unet.tiling to"):
        keras_unet.tiling.no_such_name  # noqa: B018
    assert {n.rsplit(".", 1)[0] for n in _moved.REMOVED} <= set(_moved.MOVED)


def test_every_old_public_name_has_a_place():
    """Each name a 0.1 module exported resolves (or is listed as removed)."""
    exported = json.loads((OLD / "exported_names.json").read_text())
    missing = []
    for old, names in exported.items():
        module = importlib.import_module(old)
        for name in names:
            if f"{old}.{name}" in _moved.REMOVED:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                if not hasattr(module, name):
                    missing.append(f"{old}.{name}")
    assert missing == []


def test_a_model_saved_by_0_1_loads_and_predicts_what_0_1_predicted():
    best = OLD / "run" / "best.keras"
    assert SPEC_ENTRY not in zipfile.ZipFile(best).namelist()  # no spec
    model = load_model(best, compile=False)
    image = np.load(OLD / "image.npy")
    np.testing.assert_allclose(
        predict_tiled(model, image),
        np.load(OLD / "probabilities.npy"),
        atol=1e-6,
    )
    plain = keras.saving.load_model(OLD / "run" / "last.keras")
    assert plain.optimizer is not None  # compiled objects are registered
    run = Run.load(OLD / "run")
    assert run.spec.depth == 2 and run.class_of_interest == 1
    assert (
        run.threshold()
        == json.loads((OLD / "run" / "config.json").read_text())["calibration"][
            "decision_threshold"
        ]
    )


def test_a_run_saved_by_0_1_resumes_after_being_moved(tmp_path):
    run = tmp_path / "moved_run"
    shutil.copytree(OLD / "run", run)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_unet.cli",
            "train",
            "--output",
            str(run),
            "--resume",
            "--epochs",
            "3",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 3 and state["steps_done"] == 6
    assert SPEC_ENTRY in zipfile.ZipFile(run / "last.keras").namelist()
    rows = (run / "log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"]
