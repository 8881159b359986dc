import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_unet.data import prepare, split
from keras_unet.model.unet import build_unet
from keras_unet.training import callbacks, fit, recipes, train
from keras_unet.training.config import TrainConfig
from keras_unet.training.run import Run


def small_config(tmp_path, **kw):
    """A run of seconds: 64 px synthetic cells, depth-2 net, 60 px tiles."""
    base = dict(
        format="synthetic",
        synthetic_count=4,
        synthetic_size=64,
        depth=2,
        filters=4,
        input_size=60,
        steps=3,
        epochs=2,
        batch_size=2,
        output=str(tmp_path / "run"),
        tensorboard=False,
        verbose=0,
        val_fraction=0.25,
    )
    base.update(kw)
    return TrainConfig(**base)


def steps(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def log_rows(out):
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.backend
def test_train_writes_everything_and_models_load(tmp_path):
    config = small_config(tmp_path, tensorboard=True)
    result = train.train(config)
    out = result.output
    for name in (
        "best.keras",
        "last.keras",
        "state.json",
        "config.json",
        "log.csv",
        "training_curve.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "tensorboard").is_dir()
    assert list((out / "weight_cache").glob("*.weights.npy"))
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["steps_done"] == 6
    assert state["samples_drawn"] == 12 and state["monitor"] == "val_loss"
    rows = log_rows(out)
    assert len(rows) == 2 and "val_loss" in rows[0] and "pixel_error" in rows[0]
    model = keras.saving.load_model(out / "best.keras")  # no custom_objects
    x = np.zeros((1, 60, 60, 1), np.float32)
    assert model.predict(x, verbose=0).shape == (1, 20, 20, 2)
    # the resolved config repeats the run
    again = TrainConfig.from_json(out / "config.json", output="elsewhere")
    assert (
        again.output == "elsewhere" and again.filters == 4 and again.steps == 3
    )
    info = json.loads((out / "config.json").read_text())
    assert (
        info["recipe"]["optimizer"] == "adam" and info["class_of_interest"] == 1
    )
    assert len(info["train_names"]) == 3 and len(info["val_names"]) == 1


def test_same_seed_same_first_steps(tmp_path):
    a = train.train(small_config(tmp_path / "a", deterministic=True, epochs=1))
    b = train.train(small_config(tmp_path / "b", deterministic=True, epochs=1))
    c = train.train(
        small_config(tmp_path / "c", deterministic=True, epochs=1, seed=1)
    )
    assert a.history["loss"] == b.history["loss"]
    assert a.history["loss"] != c.history["loss"]


@pytest.mark.backend
def test_refuses_to_overwrite_and_resumes(tmp_path):
    config = small_config(tmp_path)
    train.train(config)
    with pytest.raises(FileExistsError, match="--resume"):
        train.train(config)
    before = (tmp_path / "run" / "best.keras").read_bytes()
    assert before  # untouched by the refused run
    result = train.train(small_config(tmp_path, epochs=3, resume=True))
    state = json.loads((result.output / "state.json").read_text())
    assert state["epochs_done"] == 3 and state["steps_done"] == 9
    assert [int(r["epoch"]) for r in log_rows(result.output)] == [0, 1, 2]
    assert steps(result.model) == 9
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        train.train(small_config(tmp_path / "fresh", resume=True))


@pytest.mark.backend
@pytest.mark.parametrize("stop_at, epochs_done", [(4, 1), (2, 0)])
def test_interrupt_leaves_a_resumable_checkpoint(
    tmp_path, monkeypatch, stop_at, epochs_done
):
    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if steps(self.model) == stop_at:
                raise KeyboardInterrupt

    real = fit.training_callbacks
    monkeypatch.setattr(
        fit, "training_callbacks", lambda *a, **k: real(*a, **k) + [Stop()]
    )
    with pytest.raises(KeyboardInterrupt):
        train.train(small_config(tmp_path, epochs=3))
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["interrupted"] and state["steps_done"] == stop_at
    assert state["epochs_done"] == epochs_done
    monkeypatch.setattr(fit, "training_callbacks", real)
    result = train.train(small_config(tmp_path, epochs=3, resume=True))
    state = json.loads((result.output / "state.json").read_text())
    assert state["steps_done"] == 9 and state["epochs_done"] == 3
    assert state["samples_drawn"] == 18 and not state["interrupted"]
    assert [int(r["epoch"]) for r in log_rows(result.output)] == [0, 1, 2]
    assert steps(result.model) == 9


def test_unwritable_output_and_bad_settings_fail_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="Cannot write"):
        train.train(small_config(tmp_path, output=str(blocker / "run")))
    for kw, match in [
        (dict(format="nifti"), "format"),
        (dict(format="isbi2012"), "data"),
        (dict(input_size=62), "nearest valid sizes are 60 and 64"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(preset="fast"), "preset"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(mixed_precision="int8"), "mixed_precision"),
        (dict(steps=0), "steps"),
        (dict(seed="0"), "seed"),
        (dict(batch_size=0), "batch_size"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(dropout=1.5), "dropout"),
        (dict(sigma=0.0), "sigma"),
        (dict(early_stopping=0), "early_stopping"),
    ]:
        with pytest.raises(ValueError, match=match):
            train.train(small_config(tmp_path, **kw))
    assert not (tmp_path / "run" / "last.keras").exists()


def test_bad_data_fails_before_training(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    from keras_unet.io.images import write_image

    write_image(tmp_path / "img/a.png", np.zeros((64, 64), np.uint8))
    write_image(tmp_path / "msk/a.png", np.zeros((64, 60), np.uint8))
    with pytest.raises(ValueError, match="Mask .* is \\(64, 60\\)"):
        train.train(
            small_config(
                tmp_path,
                format="folders",
                data=str(tmp_path / "img"),
                masks=str(tmp_path / "msk"),
            )
        )
    assert not (tmp_path / "run" / "last.keras").exists()


def test_checkpoint_callback_is_public_and_monitors_in_both_directions(
    tmp_path,
):
    cb = callbacks.UNetCheckpoint(tmp_path, monitor="val_foreground_iou")
    assert cb.mode == "max" and callbacks.UNetCheckpoint(tmp_path).mode == "min"
    cb.restore({"best": None, "epochs_done": 0})  # first-epoch interrupt
    assert cb.best == -np.inf
    with pytest.raises(ValueError, match="mode"):
        callbacks.UNetCheckpoint(tmp_path, mode="up")


def test_config_file_keeps_preset_open(tmp_path):
    result = train.train(small_config(tmp_path, epochs=1))
    paper = TrainConfig.from_json(result.output / "config.json", preset="paper")
    # the recipe comes from the new preset; the batch size given stays
    assert paper.recipe() == dataclasses.replace(
        recipes.PRESETS["paper"], batch_size=2
    )


def test_config_file_errors(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text('{"filterz": 3}')
    with pytest.raises(ValueError, match="unknown setting"):
        TrainConfig.from_json(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainConfig.from_json(bad)


@pytest.mark.parametrize("preset", sorted(recipes.PRESETS))
def test_presets_compile(preset):
    model = build_unet((None, None, 1), depth=2, filters=2)
    recipe = recipes.compile_unet(model, preset, total_steps=1000)
    opt = model.optimizer
    first = float(keras.ops.convert_to_numpy(opt.learning_rate))
    assert first == pytest.approx(0.01 * recipe.learning_rate)  # warm-up
    if recipe.optimizer == "sgd":
        assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == 0.99
    else:
        assert isinstance(opt, keras.optimizers.Adam)
    assert (
        recipes.PRESETS["paper"].momentum == 0.99
        and recipes.PRESETS["paper"].batch_size == 1
    )


@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
def test_mixed_precision(tmp_path, policy):
    result = train.train(
        small_config(tmp_path, mixed_precision=policy, epochs=1)
    )
    assert np.isfinite(result.history["loss"]).all()
    conv = result.model.get_layer("unet_down1_conv1")
    assert conv.compute_dtype == policy
    assert result.model.get_layer("unet_logits").compute_dtype == "float32"
    if policy == "float16":
        assert isinstance(
            result.model.optimizer, keras.optimizers.LossScaleOptimizer
        )
        # steps are counted by the checkpoint, also when the loss scaler
        # skips steps whose gradients overflowed
        state = json.loads((result.output / "state.json").read_text())
        assert state["steps_done"] == 3
    assert keras.config.dtype_policy().name == "float32"  # restored


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = textwrap.dedent(
        f"""
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from keras_unet.training import fit, train
        from keras_unet.training.config import TrainConfig
        config = TrainConfig(format="synthetic", synthetic_count=4,
            synthetic_size=64, depth=2, filters=4, input_size=60, steps=2,
            epochs=1, batch_size=2, output={str(tmp_path / "run")!r},
            tensorboard=False, verbose=0, distribute="mirrored")
        result = train.train(config)
        import json
        state = json.load(open({str(tmp_path / "run" / "state.json")!r}))
        print(json.dumps({{"replicas": result.replicas,
                          "loss": result.history["loss"],
                          "batch": state["samples_drawn"]}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert np.isfinite(result["loss"]).all()
    assert result["replicas"] == 2
    # 2 replicas x batch 2 per replica x 2 steps
    assert result["batch"] == 8


def test_prepare_instances_binary_and_ignore(tmp_path):
    from keras_unet.data.imageset import ImageSet

    inst = np.zeros((40, 40), np.int32)
    inst[5:20, 5:20], inst[5:20, 20:35] = 3, 9  # two touching cells
    ignore = np.zeros((40, 40), bool)
    ignore[30:, 30:] = True
    data = ImageSet(
        images=[np.zeros((40, 40), np.uint8)],
        instances=[inst],
        ignore=[ignore],
        names=["a"],
    )
    prep = prepare.prepare(
        data, recipes.PRESETS["adam"].weights, tmp_path / "cache"
    )
    lab, w = prep.labels[0], prep.weights[0]
    assert lab[10, 19] == 0 and lab[10, 20] == 0  # separation line
    assert lab[10, 10] == 1 and lab[10, 25] == 1
    assert w[10, 19] > 5 and (w[ignore] == 0).all() and (w[~ignore] > 0).all()
    none = prepare.prepare(
        data, recipes.PRESETS["plain"].weights, tmp_path / "cache"
    )
    np.testing.assert_array_equal(none.labels[0], lab)
    assert set(np.unique(none.weights[0])) == {0.0, 1.0}  # ones, 0 if ignored
    # ISBI-style binary labels are used as they are
    binary = (inst == 0).astype(np.int32) ^ 1
    isbi = ImageSet(
        images=[np.zeros((40, 40), np.uint8)],
        labels=[binary],
        names=["b"],
        class_of_interest=0,
    )
    prep = prepare.prepare(
        isbi, recipes.PRESETS["adam"].weights, tmp_path / "cache"
    )
    np.testing.assert_array_equal(prep.labels[0], binary)
    assert prep.class_of_interest == 0


def test_split_validation():
    train_idx, val_idx = split.split_validation(10, 0.2, seed=0)
    assert len(val_idx) == 2 and sorted(train_idx + val_idx) == list(range(10))
    assert split.split_validation(10, 0.2, seed=0) == (train_idx, val_idx)
    assert split.split_validation(3, 0.1, seed=0)[1] != []  # at least one
    names = [f"{i:02d}" for i in range(5)]
    assert split.split_validation(5, 0.0, 0, names, ["03", "04"]) == (
        [0, 1, 2],
        [3, 4],
    )
    with pytest.raises(ValueError, match="not in the data"):
        split.split_validation(5, 0.0, 0, names, ["07"])
    with pytest.raises(ValueError, match="No image left"):
        split.split_validation(1, 0.5, 0, ["a"], ["a"])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_schedule_warms_up_then_holds_or_decays(schedule):
    rate = recipes.learning_rate_schedule(1e-3, 10, 110, schedule)

    def at(step):
        return float(keras.ops.convert_to_numpy(rate(step)))

    assert at(0) == pytest.approx(1e-5)
    assert at(5) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5), rel=1e-5)
    assert at(10) == pytest.approx(1e-3)
    if schedule == "constant":
        assert at(60) == at(110) == pytest.approx(1e-3)
    else:
        assert at(60) == pytest.approx(0.5e-3, rel=1e-5)
        assert at(110) == pytest.approx(0.0, abs=1e-9)
    assert recipes.learning_rate_schedule(1e-3) == 1e-3
    with pytest.raises(ValueError, match="total_steps"):
        recipes.learning_rate_schedule(1e-3, 10, None, "cosine")


def test_diverging_run_fails_and_keeps_the_last_good_checkpoint(tmp_path):
    class Poison(keras.callbacks.Callback):
        """Make the weights NaN at the start of the second epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                kernel = self.model.get_layer("unet_logits").kernel
                kernel.assign(keras.ops.full(kernel.shape, float("nan")))

    config = small_config(tmp_path, epochs=3)
    good = {}

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            good["last"] = (tmp_path / "run" / "last.keras").read_bytes()

    with pytest.raises(callbacks.TrainingDiverged, match="diverged.*last good"):
        train.train(config, callbacks=[Keep(), Poison()])
    assert (tmp_path / "run" / "last.keras").read_bytes() == good["last"]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epochs_done"] == 1
    # a fresh run that diverges at once has no checkpoint to keep
    fresh = small_config(
        tmp_path / "b", optimizer="sgd", learning_rate=1e30, warmup_steps=0
    )
    with pytest.raises(callbacks.TrainingDiverged, match="loss is (nan|inf)"):
        train.train(fresh)


def test_threshold_is_calibrated_on_validation_images(tmp_path):
    result = train.train(small_config(tmp_path, epochs=1))
    cal = result.calibration
    assert 0.05 <= cal["decision_threshold"] <= 0.95
    assert cal["pixel_error"] == min(cal["pixel_errors"])
    assert cal["pixel_error"] <= cal["pixel_error_at_0.5"]
    info = json.loads((result.output / "config.json").read_text())
    assert info["calibration"] == cal
    run = Run.load(result.output)
    assert run.threshold() == cal["decision_threshold"]
    assert Run.load(result.output / "last.keras").threshold() == 0.5


def test_resume_keeps_the_run_settings_and_stretches_the_schedule(tmp_path):
    # No warm-up: the first run's cosine reaches 0 at its last step (3).
    train.train(small_config(tmp_path, epochs=1, warmup_steps=0))
    for kw, name in [
        (dict(filters=8), "filters"),
        (dict(learning_rate=0.5), "learning_rate"),
        (dict(steps=5), "steps"),
        (dict(preset="plain"), "preset"),
    ]:
        with pytest.raises(ValueError, match=f"trained with {name}="):
            train.train(
                small_config(
                    tmp_path, epochs=2, resume=True, warmup_steps=0, **kw
                )
            )
    before = keras.saving.load_model(tmp_path / "run" / "last.keras")
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    # More epochs: the schedule now ends at step 9, so the resumed epochs
    # still learn (with the first run's schedule the rate would stay 0).
    result = train.train(
        small_config(tmp_path, epochs=3, resume=True, warmup_steps=0)
    )
    pairs = zip(before.trainable_weights, result.model.trainable_weights)
    changed = [
        np.abs(
            keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)
        ).max()
        for a, b in pairs
    ]
    assert max(changed) > 1e-6
    after = json.loads((result.output / "config.json").read_text())
    assert after["config"]["epochs"] == 3 and info["calibration"]
    assert after["calibration"]["model"] == "best.keras"


def test_format_follows_the_data_arguments(tmp_path):
    assert TrainConfig().format == "synthetic"
    assert TrainConfig(data="x").format == "isbi2012"
    assert TrainConfig(data="x", masks="y").format == "folders"
    with pytest.raises(ValueError, match="format='synthetic'"):
        TrainConfig(data="isbi", format="synthetic").check()


def test_calibration_finds_the_known_best_threshold():
    from keras_unet.training.calibration import pixel_error_curve

    rng = np.random.default_rng(0)
    target = rng.random((64, 64)) < 0.3
    # probabilities that separate the classes exactly at 0.35
    prob = np.where(
        target,
        rng.uniform(0.35, 1, target.shape),
        rng.uniform(0, 0.34, target.shape),
    )
    ts = (0.2, 0.35, 0.5)
    curve = pixel_error_curve([prob], [target], thresholds=ts)
    assert curve[1] == 0 and curve[0] > 0 and curve[2] > 0
    # by hand at 0.5: the class pixels below 0.5 are wrong
    assert curve[2] == np.count_nonzero(target & (prob < 0.5)) / target.size
