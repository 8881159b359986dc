"""Multi-worker training: two local worker processes on the CPU.

Each worker runs ``keras-unet train --distribute multi-worker`` with its own
``TF_CONFIG`` (free ports from the OS); a small driver wraps the CLI to dump
the worker's final weights, so the test can compare the two processes.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_unet.data.stream import make_training_dataset
from keras_unet.model.unet import build_unet
from keras_unet.training import distribute, fit, train
from keras_unet.training.config import TrainConfig

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute needs the TensorFlow backend",
)

TRAIN_ARGS = [
    "train",
    "--synthetic-count",
    "5",
    "--synthetic-size",
    "64",
    "--depth",
    "2",
    "--filters",
    "4",
    "--input-size",
    "60",
    "--steps",
    "3",
    "--batch-size",
    "1",
    "--val-fraction",
    "0.4",
    "--no-tensorboard",
    "--distribute",
    "multi-worker",
    "--quiet",
]

# Wraps the CLI: the real `keras-unet train`, then the final weights, the
# optimizer steps and the history of this process into DUMP (.npz).
DRIVER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from keras_unet.cli.main import main
    from keras_unet.training import train

    real_train = train.train

    def train_and_dump(config, callbacks=None):
        result = real_train(config, callbacks)
        np.savez(
            os.environ["DUMP"],
            *result.model.get_weights(),
            steps=int(result.model.optimizer.iterations.numpy()),
            loss=np.asarray(result.history["loss"]),
            val_loss=np.asarray(result.history["val_loss"]),
            chief=result.chief,
        )
        return result

    train.train = train_and_dump
    sys.exit(main(sys.argv[1:]))
    """
)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_workers(tmp_path, outputs, extra_args=(), timeout=240):
    """Start one worker per output folder; returns their dumps (dicts)."""
    hosts = [f"localhost:{port}" for port in _free_ports(len(outputs))]
    procs = []
    for index, output in enumerate(outputs):
        tf_config = {
            "cluster": {"worker": hosts},
            "task": {"type": "worker", "index": index},
        }
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(tf_config),
            DUMP=str(tmp_path / f"dump{index}.npz"),
            TMPDIR=str(tmp_path / f"tmp{index}"),
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        (tmp_path / f"tmp{index}").mkdir(exist_ok=True)
        args = [*TRAIN_ARGS, "--output", str(output), *extra_args]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", DRIVER, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()  # a hung collective must not hang the test run
        pytest.fail("multi-worker training did not finish in time")
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-3000:]
    dumps = []
    for index in range(len(outputs)):
        with np.load(tmp_path / f"dump{index}.npz") as f:
            dumps.append({k: f[k] for k in f.files})
        # the worker's temporary folder was removed
        assert not list((tmp_path / f"tmp{index}").iterdir())
    return dumps


def _weights(dump):
    return [dump[f"arr_{i}"] for i in range(len(dump) - 4)]


def _assert_same_weights(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_writes(tmp_path):
    chief_out, worker_out = tmp_path / "chief", tmp_path / "worker"
    chief, worker = _run_workers(
        tmp_path, [chief_out, worker_out], ["--epochs", "2"]
    )
    assert bool(chief["chief"]) and not bool(worker["chief"])
    # both ran the same steps, in lock step: the same weights at the end
    assert int(chief["steps"]) == int(worker["steps"]) == 6
    np.testing.assert_array_equal(chief["loss"], worker["loss"])
    # the same validation loss: best.keras and early stopping agree
    np.testing.assert_array_equal(chief["val_loss"], worker["val_loss"])
    _assert_same_weights(_weights(chief), _weights(worker))
    # the chief alone wrote, and its checkpoint is the final state
    assert not worker_out.exists()
    for name in ("best.keras", "last.keras", "state.json", "config.json"):
        assert (chief_out / name).is_file(), name
    last = keras.saving.load_model(chief_out / "last.keras", compile=False)
    _assert_same_weights(last.get_weights(), _weights(worker))
    state = json.loads((chief_out / "state.json").read_text())
    # global batch: 1 tile per worker x 2 workers, 3 steps x 2 epochs
    assert state["steps_done"] == 6 and state["samples_drawn"] == 12
    # it trained: the weights moved away from the seeded start
    start = build_unet((None, None, 1), depth=2, filters=4, seed=0)
    assert not np.array_equal(start.get_weights()[0], _weights(chief)[0])

    # resume both workers from the chief's run (a shared folder) to epoch 3
    chief, worker = _run_workers(
        tmp_path, [chief_out, chief_out], ["--epochs", "3", "--resume"]
    )
    assert int(chief["steps"]) == int(worker["steps"]) == 9
    _assert_same_weights(_weights(chief), _weights(worker))
    state = json.loads((chief_out / "state.json").read_text())
    assert state["epochs_done"] == 3 and state["samples_drawn"] == 18
    assert len((chief_out / "log.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize("pipeline", ["tf.data", "py_dataset"])
def test_shards_together_draw_the_whole_stream_once(pipeline):
    rng = np.random.default_rng(0)
    images = rng.random((3, 70, 70)).astype("float32")
    labels = (images > 0.5).astype("int32")
    kw = dict(
        input_size=60,
        depth=2,
        seed=3,
        batch_size=2,
        augment="flips",
        pipeline=pipeline,
    )

    def batches(ds, n):
        if pipeline == "tf.data":
            return [np.asarray(b[0]) for b in ds.take(n)]
        return [keras.ops.convert_to_numpy(ds[k][0]) for k in range(n)]

    whole = batches(make_training_dataset(images, labels, start=5, **kw), 6)
    parts = [
        batches(
            make_training_dataset(
                images, labels, start=5, shard=(index, 3), **kw
            ),
            2,
        )
        for index in range(3)
    ]
    for k, batch in enumerate(whole):  # batch k is batch k // 3 of part k % 3
        np.testing.assert_array_equal(batch, parts[k % 3][k // 3])
    # the parts differ from each other
    assert not np.array_equal(parts[0][0], parts[1][0])


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), (0.5, 2), (1,)])
def test_bad_shard_is_refused(shard):
    with pytest.raises(ValueError, match="`shard` must be"):
        make_training_dataset(
            np.zeros((1, 70, 70)),
            np.zeros((1, 70, 70), "int32"),
            input_size=60,
            depth=2,
            shard=shard,
        )


def _config(tmp_path):
    return TrainConfig(
        synthetic_count=3,
        synthetic_size=64,
        depth=2,
        filters=2,
        input_size=60,
        steps=1,
        epochs=1,
        output=str(tmp_path / "run"),
        tensorboard=False,
        verbose=0,
        distribute="multi-worker",
    )


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG must be JSON"),
        ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG must be JSON"),
        (
            '{"cluster": {"worker": ["a:1"]}, '
            '"task": {"type": "worker", "index": 1}}',
            "TF_CONFIG must be JSON",
        ),
        (
            '{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
            "TF_CONFIG must be JSON",
        ),
    ],
)
def test_multi_worker_needs_a_valid_tf_config(
    tmp_path, monkeypatch, tf_config, message
):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message):
        train.train(_config(tmp_path))
    assert not (tmp_path / "run").exists()  # refused before writing


def test_multi_worker_needs_tensorflow(tmp_path, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        train.train(_config(tmp_path))


def test_check_tf_config_accepts_a_chief_task():
    text = json.dumps(
        {
            "cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
            "task": {"type": "chief", "index": 0},
        }
    )
    assert distribute.check_tf_config(text)["task"]["type"] == "chief"


class _TwoWorkers:
    """Stands in for MultiWorkerMirroredStrategy: 2 workers x 1 replica,
    seen from the worker `index`."""

    num_replicas_in_sync = 2

    def __init__(self, index):
        self.index = index

    def distribute_datasets_from_function(self, dataset_fn):
        import tensorflow as tf

        return dataset_fn(
            tf.distribute.InputContext(
                num_input_pipelines=2,
                input_pipeline_id=self.index,
                num_replicas_in_sync=2,
            )
        )


def test_make_streams_gives_each_worker_its_half_of_the_global_batch(
    tmp_path,
):
    config = TrainConfig(
        synthetic_count=3,
        synthetic_size=64,
        depth=2,
        filters=2,
        input_size=60,
        batch_size=2,
        output=str(tmp_path),
        seed=1,
        distribute="multi-worker",
    )
    recipe = config.check()
    data = train.load_training_data(config, recipe, tmp_path)
    one = dataclasses.replace(config, distribute=None, batch_size=4)
    single = fit.make_streams(one, one.check(), data, 4)
    workers = [
        fit.make_streams(config, recipe, data, 4, _TwoWorkers(i)).first
        for i in range(2)
    ]
    for step, (x, _, _) in enumerate(single.first.take(2)):
        # the one-process global batch of 4 = worker 0's 2, then worker 1's
        halves = [next(iter(w.skip(step)))[0] for w in workers]
        np.testing.assert_array_equal(x, np.concatenate(halves))
