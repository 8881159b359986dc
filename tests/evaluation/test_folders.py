"""Tests for keras_unet.evaluation: folder reports, and no Keras import.

Each image's row must equal `keras_unet.evaluation.isbi.isbi_scores` of the
arrays that were written, and the mean the best of the averaged curves.
"""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_unet.evaluation.folders import evaluate_folders
from keras_unet.evaluation.isbi import DEFAULT_THRESHOLDS, isbi_scores
from keras_unet.io.images import read_array, write_image
from tests.evaluation.isbi_cases import soft_proposal, synthetic_label

REPO = pathlib.Path(__file__).resolve().parents[2]


def _folders(tmp_path, n=3):
    probs, labels = tmp_path / "probs", tmp_path / "labels"
    probs.mkdir()
    labels.mkdir()
    expected = {}
    for i in range(n):
        label = synthetic_label(10 + i, size=48)
        prob = soft_proposal(label, i).astype(np.float32)
        write_image(labels / f"{i:02d}.png", label)
        if i == 0:
            np.save(probs / f"{i:02d}.npy", prob)
        else:
            write_image(probs / f"{i:02d}.tif", prob)
        expected[f"{i:02d}"] = isbi_scores(prob, label)
    return probs, labels, expected


def test_evaluate_folders_report(tmp_path):
    probs, labels, expected = _folders(tmp_path)
    write_image(labels / "99.png", synthetic_label(1, size=48))  # no map
    report = evaluate_folders(probs, labels, tmp_path / "out")
    assert [r["name"] for r in report["images"]] == ["00", "01", "02"]
    for row in report["images"]:
        for key, value in expected[row["name"]].items():
            assert row[key] == value
    assert report["labels_without_map"] == ["99"]
    mean = report["mean"]
    for name in ("pixel_error", "rand_error", "warping_error"):
        curve = np.mean([e["curves"][name] for e in expected.values()], 0)
        np.testing.assert_allclose(mean["curves"][name], curve)
        assert mean[name] == pytest.approx(curve.min())
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["mean"]["rand_error"] == pytest.approx(mean["rand_error"])
    assert saved["settings"]["thresholds"] == list(DEFAULT_THRESHOLDS)
    lines = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("name,pixel_error,pixel_error_threshold")
    assert [line.split(",")[0] for line in lines[1:]] == [
        "00",
        "01",
        "02",
        "mean",
    ]
    assert float(lines[-1].split(",")[1]) == pytest.approx(
        mean["pixel_error"], rel=1e-5
    )
    assert not [p for p in (tmp_path / "out").iterdir() if p.name[0] == "."]


def test_evaluate_folders_label_without_cells(tmp_path):
    probs, labels, expected = _folders(tmp_path, n=2)
    write_image(labels / "09.png", np.zeros((48, 48), np.uint8))
    write_image(probs / "09.tif", np.ones((48, 48), np.float32))
    seen = []
    report = evaluate_folders(
        probs, labels, tmp_path / "out", on_image=lambda *a: seen.append(a)
    )
    assert [(i, n, row["name"]) for i, n, row in seen] == [
        (0, 3, "00"),
        (1, 3, "01"),
        (2, 3, "09"),
    ]
    assert np.isnan(report["images"][2]["rand_error"])
    assert report["images"][2]["pixel_error"] == 0.0
    # the mean Rand curve skips the image without cells
    curve = np.mean([e["curves"]["rand_error"] for e in expected.values()], 0)
    np.testing.assert_allclose(report["mean"]["curves"]["rand_error"], curve)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["images"][2]["rand_error"] is None  # NaN -> null
    row = (tmp_path / "out" / "metrics.csv").read_text().splitlines()[3]
    assert row.startswith("09,0,") and ",," in row


def test_evaluate_folders_channels_invert_and_8bit(tmp_path):
    probs, labels = tmp_path / "p", tmp_path / "l"
    probs.mkdir()
    labels.mkdir()
    label = synthetic_label(4, size=48)
    membrane = soft_proposal(label, 4)
    write_image(labels / "a.png", label)
    softmax = np.stack([membrane, 1 - membrane], -1).astype(np.float32)
    write_image(probs / "a.tif", softmax)  # (H, W, 2), membrane first
    two = evaluate_folders(probs, labels, measures="pixel")
    cell = evaluate_folders(
        probs, labels, measures="pixel", channel=1, invert=True
    )
    want = isbi_scores(membrane, label, measures="pixel")["pixel_error"]
    assert two["mean"]["pixel_error"] == pytest.approx(want)
    assert cell["mean"]["pixel_error"] == pytest.approx(want)
    (probs / "a.tif").unlink()
    write_image(probs / "a.png", np.round(membrane * 255).astype(np.uint8))
    eight = evaluate_folders(probs, labels, measures="pixel")
    assert eight["mean"]["pixel_error"] == pytest.approx(want, abs=0.01)


def test_evaluate_folders_errors(tmp_path):
    probs, labels, _ = _folders(tmp_path, n=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_folders(tmp_path / "nope", labels)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No probability maps"):
        evaluate_folders(empty, labels)
    write_image(probs / "07.tif", np.zeros((48, 48), np.float32))
    with pytest.raises(ValueError, match=r"no label.*07"):
        evaluate_folders(probs, labels)
    write_image(labels / "07.png", np.full((40, 40), 255, np.uint8))
    with pytest.raises(ValueError, match=r"07\.tif / 07\.png: .*same"):
        evaluate_folders(probs, labels)
    write_image(labels / "07.tif", np.full((48, 48), 255, np.uint8))
    with pytest.raises(ValueError, match="same name stem"):
        evaluate_folders(probs, labels)
    (labels / "07.tif").unlink()
    write_image(labels / "07.png", np.full((48, 48), 255, np.uint8))
    write_image(probs / "07.tif", np.full((48, 48), 3.0, np.float32))
    with pytest.raises(ValueError, match=r"07\.tif.*soft-max"):
        evaluate_folders(probs, labels, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_evaluation_imports_neither_keras_nor_tensorflow(tmp_path):
    # `keras-unet evaluate` must start fast: scoring is numpy work.
    code = textwrap.dedent(
        f"""
        import json, pathlib, sys
        import numpy as np
        import keras_unet
        from keras_unet.evaluation.folders import evaluate_folders
        from keras_unet.io.images import write_image

        folder = pathlib.Path({str(tmp_path)!r})
        label = np.full((16, 16), 255, np.uint8)
        label[:, 7] = 0
        write_image(folder / "labels" / "a.png", label)
        write_image(folder / "pred" / "a.tif", (label == 0) * np.float32(1))
        report = evaluate_folders(
            folder / "pred", folder / "labels", folder / "out"
        )
        heavy = ("keras", "tensorflow", "jax", "torch")
        print(json.dumps({{
            "package": keras_unet.__file__,
            "rand_error": report["mean"]["rand_error"],
            "loaded": sorted(
                m for m in sys.modules if m.split(".")[0] in heavy
            ),
        }}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.splitlines()[-1])
    assert pathlib.Path(result["package"]).parent == REPO / "keras_unet"
    assert result["rand_error"] == 0.0
    assert (tmp_path / "out" / "metrics.csv").is_file()
    assert result["loaded"] == []


def test_scores_at_the_decision_threshold(tmp_path):
    pred, lab, _ = _folders(tmp_path)
    report = evaluate_folders(pred, lab, decision_threshold=0.35)
    assert report["settings"]["decision_threshold"] == 0.35
    for i, row in enumerate(report["images"]):
        label = synthetic_label(10 + i, size=48)
        prob = soft_proposal(label, i).astype(np.float32)
        # by hand: membrane where prob >= 0.35, label 0 = membrane
        wrong = np.count_nonzero((prob >= 0.35) != (label == 0))
        assert row["pixel_error_at_decision"] == wrong / label.size
        assert 0 <= row["rand_error_at_decision"] <= 1
    mean = np.mean([r["pixel_error_at_decision"] for r in report["images"]])
    assert report["mean"]["pixel_error_at_decision"] == pytest.approx(mean)
    assert "pixel_error_at_decision" not in evaluate_folders(pred, lab)["mean"]


def test_evaluate_predictions_reads_the_record(tmp_path):
    """Cell maps are inverted, their threshold too (p_cell >= t is
    membrane < 1 - t)."""
    from keras_unet.jobs.evaluate import evaluate_predictions

    pred, lab, _ = _folders(tmp_path)
    cells = tmp_path / "cells"
    cells.mkdir()
    for path in sorted(pred.iterdir()):
        prob = np.load(path) if path.suffix == ".npy" else read_array(path)
        write_image(cells / f"{path.stem}.tif", (1 - prob).astype(np.float32))
    record = {
        "meaning": "foreground",
        "decision_threshold": 0.3,
        "complete": True,
    }
    (cells / "predictions.json").write_text(json.dumps(record))
    report = evaluate_predictions(cells, lab)
    assert report["settings"]["invert"] is True
    assert report["settings"]["decision_threshold"] == pytest.approx(0.7)
    direct = evaluate_folders(pred, lab, decision_threshold=0.7)
    for a, b in zip(report["images"], direct["images"]):
        assert a["pixel_error_at_decision"] == pytest.approx(
            b["pixel_error_at_decision"], abs=2 / 48**2
        )  # maps equal up to float rounding of 1 - p


def test_the_report_never_lands_among_inputs_or_over_a_report(tmp_path):
    pred, lab, _ = _folders(tmp_path)
    with pytest.raises(ValueError, match="same folder"):
        evaluate_folders(lab, lab)
    for folder, what in ((pred, "maps"), (lab, "labels")):
        with pytest.raises(ValueError, match=f"is the {what} folder"):
            evaluate_folders(pred, lab, folder)
    with pytest.raises(NotADirectoryError, match="is a file"):
        evaluate_folders(next(pred.iterdir()), lab)
    out = tmp_path / "report"
    first = evaluate_folders(pred, lab, out)
    with pytest.raises(FileExistsError, match="overwrite"):
        evaluate_folders(pred, lab, out)
    again = evaluate_folders(pred, lab, out, overwrite=True)
    assert again["mean"] == first["mean"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="never replaced"):
        evaluate_folders(pred, lab, out, overwrite=True)
