"""Tests for keras_unet.training.run: a trained run, read once."""

import json

import keras
import numpy as np
import pytest

from keras_unet.model.saving import load_model, save_model
from keras_unet.model.unet import build_unet
from keras_unet.training.run import Run


def _run_folder(tmp_path, record, classes=2):
    run = tmp_path / "run"
    model = build_unet((None, None, 1), classes, depth=2, filters=2, seed=0)
    save_model(model, run / "best.keras")
    save_model(model, run / "last.keras")
    (run / "config.json").write_text(json.dumps(record))
    return run


def test_the_other_class_of_two_is_read_at_one_minus_the_threshold(tmp_path):
    calibration = {
        "decision_threshold": 0.3,
        "class_of_interest": 0,
        "model": "best.keras",
    }
    run = _run_folder(
        tmp_path, {"class_of_interest": 0, "calibration": calibration}
    )
    best = Run.load(run)  # a run folder is read at its best.keras
    assert best.path == run / "best.keras"
    assert best.class_of_interest == 0 and best.meaning() == "membrane"
    assert best.threshold() == 0.3 and best.threshold(0) == 0.3
    assert best.threshold(1) == 0.7  # p1 >= 1 - t is p0 <= t
    assert best.meaning(1) == "cells"
    # last.keras of the same run was not calibrated
    assert Run.load(run / "last.keras").threshold() == 0.5
    decision = best.decision(1)
    assert (decision.class_of_interest, decision.threshold) == (1, 0.7)
    probs = np.array([[[0.75, 0.25], [0.2, 0.8]]], np.float32)
    np.testing.assert_array_equal(decision.chosen(probs), [[False, True]])
    assert best.decision(1, threshold=0.2).threshold == 0.2


def test_a_model_without_a_run_has_the_defaults(tmp_path):
    model = build_unet((None, None, 1), 1, depth=2, filters=2)
    run = Run.of(model)
    assert run.name == "<in memory>" and run.record == {}
    assert run.class_of_interest == 0 and run.meaning() == "cells"
    assert run.threshold() == 0.5
    assert Run.of(run) is run
    three = Run.of(build_unet((None, None, 1), 3, depth=2, filters=2))
    assert three.class_of_interest == 1 and three.meaning(2) == "class 2"
    save_model(model, tmp_path / "alone.keras")
    alone = Run.of(str(tmp_path / "alone.keras"))
    assert alone.record == {} and alone.threshold() == 0.5


def test_bad_classes_and_thresholds_are_refused(tmp_path):
    run = Run.of(build_unet((None, None, 1), 2, depth=2, filters=2))
    with pytest.raises(ValueError, match="class_of_interest=2 but the model"):
        run.decision(2)
    with pytest.raises(ValueError, match=r"probability in \[0, 1\]"):
        run.decision(threshold=1.5)
    with pytest.raises(FileNotFoundError, match="No such model file"):
        Run.load(tmp_path / "nothing.keras").model  # noqa: B018


def test_the_model_is_loaded_once_and_carries_its_spec(tmp_path):
    run = Run.load(_run_folder(tmp_path, {}))
    assert run.model is run.model
    assert run.spec.depth == 2 and run.spec.filters == 2
    assert isinstance(run.model, keras.Model)
    assert load_model(run.path).count_params() == run.model.count_params()
