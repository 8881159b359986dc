"""Resume is exact, whenever the run stopped; one run per folder.

The reference is an uninterrupted run with ``deterministic=True``: a run
stopped at any moment (Ctrl-C between or inside steps, ``kill -9`` mid
epoch, inside the checkpoint write, between ``last.keras`` and
``state.json``) and resumed must end with the same step count and
bit-identical weights, dropout included.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_unet.io.lock import folder_lock
from keras_unet.training import callbacks, fit, train
from keras_unet.training.config import TrainConfig


def config(tmp_path, **kw):
    """Three epochs of three steps, dropout on, deterministic kernels."""
    base = dict(
        format="synthetic",
        synthetic_count=4,
        synthetic_size=64,
        depth=2,
        filters=4,
        input_size=60,
        steps=3,
        epochs=3,
        batch_size=2,
        output=str(tmp_path / "run"),
        tensorboard=False,
        verbose=0,
        val_fraction=0.25,
        dropout=0.5,
        deterministic=True,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The weights and state of the uninterrupted run."""
    result = train.train(config(tmp_path_factory.mktemp("reference")))
    state = json.loads((result.output / "state.json").read_text())
    return [np.array(w) for w in result.model.get_weights()], state


def assert_same_run(result, reference):
    weights, ref_state = reference
    state = json.loads((result.output / "state.json").read_text())
    for key in ("steps_done", "samples_drawn", "epochs_done"):
        assert state[key] == ref_state[key], key
    assert int(result.model.optimizer.iterations.numpy()) == 9
    got = result.model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(got, weights))
    rows = (result.output / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]


class Stop(keras.callbacks.Callback):
    """Ctrl-C after `at` optimizer steps, at the end of that batch."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at:
            raise KeyboardInterrupt


@pytest.mark.backend
@pytest.mark.parametrize("at, first", [(4, False), (7, True)])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(
    tmp_path, monkeypatch, reference, at, first
):
    """`first`: the interrupt lands after the optimizer step but before the
    checkpoint counted it (the 301-of-300-steps bug)."""
    real = fit.training_callbacks

    def with_stop(*args, **kwargs):
        standard = real(*args, **kwargs)
        return [Stop(at), *standard] if first else [*standard, Stop(at)]

    monkeypatch.setattr(fit, "training_callbacks", with_stop)
    with pytest.raises(KeyboardInterrupt):
        train.train(config(tmp_path))
    state = callbacks.read_checkpoint_state(tmp_path / "run" / "last.keras")
    assert state["steps_done"] == at and state["interrupted"]
    monkeypatch.setattr(fit, "training_callbacks", real)
    assert_same_run(train.train(config(tmp_path, resume=True)), reference)


KILLED_RUN = """
import os, signal, sys, json
from keras_unet.training import callbacks
from keras_unet.training import fit, train
from keras_unet.training.config import TrainConfig

moment, n = sys.argv[2], int(sys.argv[3])
calls = {"n": 0}

def kill_on_nth():
    calls["n"] += 1
    if calls["n"] == n:
        os.kill(os.getpid(), signal.SIGKILL)

if moment == "in-step":  # mid epoch, after step n
    class Kill(callbacks.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            kill_on_nth()
    extra = [Kill()]
elif moment == "in-checkpoint":  # inside the n-th last.keras write
    real_save = callbacks.UNetCheckpoint._save
    def save(self, path, model, state=None):
        if state is not None:
            model.save(path.with_name(".last.x.tmp.keras"))  # a temporary
            kill_on_nth()
        return real_save(self, path, model, state)
    callbacks.UNetCheckpoint._save = save
    extra = []
elif moment == "before-state":  # last.keras replaced, state.json not yet
    real_path = callbacks.atomic_path
    def atomic_path(path):
        if path.name == "state.json":
            kill_on_nth()
        return real_path(path)
    callbacks.atomic_path = atomic_path
    extra = []
else:  # "none": not killed
    extra = []
train.train(TrainConfig.from_json(sys.argv[1]), callbacks=extra)
print("FINISHED")
"""


def _run(tmp_path, moment="none", n=0, **kw):
    """`train` in a fresh process (killed at `moment` unless "none")."""
    cfg = config(tmp_path, **kw)
    path = tmp_path / "config_in.json"
    path.write_text(json.dumps(dataclasses.asdict(cfg)))
    run = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(path), moment, str(n)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    killed = run.returncode == -signal.SIGKILL
    assert killed == (moment != "none"), run.stderr[-3000:]
    return cfg


def _weights(path):
    return keras.saving.load_model(path, compile=False).get_weights()


@pytest.fixture(scope="module")
def fresh_reference(tmp_path_factory):
    """An uninterrupted run in a fresh process, like the killed ones (this
    process's kernels may be set up differently by earlier tests)."""
    tmp = tmp_path_factory.mktemp("fresh_reference")
    _run(tmp)
    return tmp / "run"


@pytest.mark.slow
@pytest.mark.parametrize(
    "moment, n",
    [
        ("in-step", 5),
        ("in-checkpoint", 2),
        ("before-state", 1),
        ("before-state", 3),
    ],
)
def test_kill_9_at_any_moment_then_resume_is_exact(
    tmp_path, fresh_reference, moment, n
):
    _run(tmp_path, moment, n)
    out = tmp_path / "run"
    leftovers = [p.name for p in out.iterdir() if ".tmp" in p.name]
    _run(tmp_path, resume=True)  # the resumed run, in a fresh process too
    got, want = (
        json.loads((d / "state.json").read_text())
        for d in (out, fresh_reference)
    )
    for key in ("steps_done", "samples_drawn", "epochs_done"):
        assert (
            got[key]
            == want[key]
            == {"steps_done": 9, "samples_drawn": 18, "epochs_done": 3}[key]
        )
    pairs = zip(
        _weights(out / "last.keras"), _weights(fresh_reference / "last.keras")
    )
    assert all(np.array_equal(a, b) for a, b in pairs)
    rows = (out / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]
    assert not [p for p in out.iterdir() if p.name in leftovers]


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    cfg = _run(tmp_path, "in-step", 1)
    with pytest.raises(FileNotFoundError, match="without --resume"):
        train.train(dataclasses.replace(cfg, resume=True))
    train.train(dataclasses.replace(cfg, epochs=1))  # a fresh run is accepted


def test_one_run_per_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with folder_lock(out, "keras-unet train"):  # another run holds it
        with pytest.raises(FileExistsError, match="in use by another"):
            train.train(config(tmp_path, epochs=1))
    assert not (out / "last.keras").exists()
    train.train(config(tmp_path, epochs=1))  # released: the folder is free


def test_last_every_n_epochs_and_a_light_best(tmp_path):
    written = []
    real = callbacks.UNetCheckpoint.save_last

    def spy(self, interrupted=False):
        written.append(self.epochs_done)
        return real(self, interrupted)

    callbacks.UNetCheckpoint.save_last = spy
    try:
        result = train.train(config(tmp_path, save_every=2))
    finally:
        callbacks.UNetCheckpoint.save_last = real
    assert written == [2, 3]  # every 2 epochs, and at the end
    out = result.output
    assert (out / "best.keras").stat().st_size < (
        0.6 * (out / "last.keras").stat().st_size
    )  # no optimizer state: Adam holds two copies of the weights
    best = keras.saving.load_model(out / "best.keras")
    assert getattr(best, "optimizer", None) is None and best.count_params()


def test_a_run_never_writes_into_its_data_folder(tmp_path):
    from keras_unet.io.images import write_image

    for folder in ("img", "msk"):
        write_image(tmp_path / folder / "a.png", np.zeros((64, 64), np.uint8))
    cfg = config(
        tmp_path,
        format="folders",
        data=str(tmp_path / "img"),
        masks=str(tmp_path / "msk"),
    )
    for name in ("img", "msk"):
        bad = dataclasses.replace(cfg, output=str(tmp_path / name))
        with pytest.raises(ValueError, match="among its own inputs"):
            train.train(bad)
        assert [p.name for p in (tmp_path / name).iterdir()] == ["a.png"]


def test_a_run_never_writes_among_the_users_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match=r"not a keras-unet run \(notes"):
        train.train(config(tmp_path, epochs=1))
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == [
        "notes.txt"
    ]
    with pytest.raises(ValueError, match="`output` is empty"):
        train.train(config(tmp_path, output=" "))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match="a JSON list, not an object"):
        TrainConfig.from_json(listed)


def test_a_validation_loss_of_nan_fails_the_run(tmp_path, monkeypatch):
    """A training loss that stays finite (1e23) while the validation loss
    is NaN is a diverged run, not "Done"."""

    class NanValidation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = float("nan")

    real = fit.training_callbacks
    monkeypatch.setattr(
        fit,
        "training_callbacks",
        lambda *a, **k: [NanValidation(), *real(*a, **k)],
    )
    with pytest.raises(
        callbacks.TrainingDiverged, match="val_loss is nan after"
    ):
        train.train(config(tmp_path, epochs=2))
    assert not (tmp_path / "run" / "best.keras").exists()
    assert not (tmp_path / "run" / "last.keras").exists()
