"""The training job behind ``keras-unet train``, in named steps.

`train(config)` runs, in order:

1. `open_output`: the output folder, locked for this run (refuses to
   overwrite a run unless resuming), and the resume state;
2. `load_training_data`: read the dataset (`load_data`), make class
   labels and the recipe's weight maps (`prepare`), split validation and
   held-out images (`split_validation`);
3. `make_streams`: the training stream and validation tiles
   (`keras_unet.data`);
4. `write_run_info`: ``config.json``, the resolved settings;
5. `build_model`: a new U-Net compiled with the recipe
   (`keras_unet.recipes.compile_unet`), or ``last.keras`` when resuming;
6. `fit`: ``model.fit`` with the standard callbacks
   (`keras_unet.callbacks`), finishing an interrupted epoch first;
7. `calibrate`: the decision threshold of ``best.keras`` on the
   validation images (`keras_unet.calibration`), stored in
   ``config.json``.

Every input problem is reported before training starts; a loss that
becomes NaN or infinite stops the run with `TrainingDiverged`.

With ``distribute="multi-worker"`` every machine runs the same job; the
chief alone writes into the output folder, the others write into a
temporary folder that is removed at the end (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import tempfile

import keras
import numpy as np

from keras_unet.callbacks import (
    UNetCheckpoint,
    read_checkpoint_state,
    read_csv_log,
    restore_random_state,
    training_callbacks,
    write_training_curve,
)
from keras_unet.config import RESUMABLE, RUN_INFO, TrainConfig, read_run_info
from keras_unet.io import atomic_path, folder_lock, remove_temporaries

__all__ = [
    "Prepared",
    "Streams",
    "TrainResult",
    "TrainingData",
    "build_model",
    "calibrate",
    "check_tf_config",
    "fit",
    "load_data",
    "load_training_data",
    "make_streams",
    "multi_worker_strategy",
    "open_output",
    "prepare",
    "split_validation",
    "train",
    "write_run_info",
]


# ------------------------------------------------------------------- data


@dataclasses.dataclass
class Prepared:
    """Training-ready arrays: float/uint images, class labels, weights."""

    images: list
    labels: list
    weights: list
    names: list
    num_classes: int
    class_of_interest: int
    description: str


@dataclasses.dataclass
class TrainingData:
    """Prepared data with its split into training and validation images."""

    prepared: Prepared
    train_indices: list
    val_indices: list
    channels: int

    def pick(self, what, split):
        """`what` ("images", "labels", ...) of the "train" or "val" split."""
        items = getattr(self.prepared, what)
        indices = self.train_indices if split == "train" else self.val_indices
        return [items[i] for i in indices]


def load_data(config: TrainConfig):
    """Read the dataset named by `config` as a `datasets.ImageSet`."""
    from keras_unet import datasets

    if config.format == "synthetic":
        return datasets.load_synthetic(
            config.synthetic_count, config.synthetic_size, config.seed
        )
    if config.format == "isbi2012":
        return datasets.load_isbi2012(config.data, "train")
    if config.format == "ctc":
        return datasets.load_ctc(config.data)
    return datasets.load_folders(
        config.data,
        config.masks,
        mask_suffix=config.mask_suffix,
        mask_type=config.mask_type,
    )


def _targets_and_weights(imageset, recipe, cache_dir, w0, sigma):
    """Class labels and weight maps as the recipe asks."""
    from keras_unet import weights as wm

    source = imageset.instances
    kind = "instances"
    if source is None:
        source, kind = imageset.labels, "classes"
    if recipe.weights in ("unet", "balanced") and imageset.num_classes == 2:
        pairs = wm.cached_weight_maps(
            source,
            cache_dir,
            return_targets=True,
            w0=w0 if recipe.weights == "unet" else 0.0,
            sigma=sigma,
            label_type="instances" if kind == "instances" else "binary",
        )
        labels = [np.asarray(t, np.int32) for t, _ in pairs]
        return labels, [np.asarray(w, np.float32) for _, w in pairs]
    if kind == "instances":
        labels = [wm.separate_instances(s).astype(np.int32) for s in source]
    else:
        labels = [np.asarray(s, np.int32) for s in source]
    if recipe.weights == "none":
        return labels, [np.ones(lb.shape, np.float32) for lb in labels]
    balance = [wm.class_balance_weights(lb).astype(np.float32) for lb in labels]
    return labels, balance  # multi-class: class balance only


def prepare(imageset, recipe, cache_dir, w0=10.0, sigma=5.0) -> Prepared:
    """Class labels and weight maps for training, from an `ImageSet`.

    Instance annotations become binary targets with separation lines
    between touching cells (`keras_unet.weights.separate_instances`).
    Weight maps follow the recipe: "unet" (the paper's maps, cached in
    `cache_dir`), "balanced" (class balance only) or "none" (ones); pixels
    marked in ``imageset.ignore`` get weight 0.
    """
    if imageset.labels is None and imageset.instances is None:
        raise ValueError(
            f"{imageset.description} has no annotations to train on."
        )
    labels, weights = _targets_and_weights(
        imageset, recipe, cache_dir, w0, sigma
    )
    if imageset.ignore is not None:
        weights = [w * (~ig) for w, ig in zip(weights, imageset.ignore)]
    return Prepared(
        images=list(imageset.images),
        labels=labels,
        weights=weights,
        names=list(imageset.names),
        num_classes=max(imageset.num_classes, 2),
        class_of_interest=imageset.class_of_interest,
        description=f"{imageset.description} ({len(imageset)} images)",
    )


def split_validation(
    n, fraction, seed, names=None, val_names=None, holdout_names=None
):
    """Indices (train, val): `val_names` if given, else a seeded fraction.

    Images named in `holdout_names` are in neither list.
    """
    names = list(names or [])
    for what, chosen in (("val_names", val_names), ("holdout", holdout_names)):
        missing = sorted(map(str, set(chosen or []) - set(names)))
        if missing:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ValueError(
                f"{what} {missing} are not in the data: names are the file "
                f"stems, as strings ({shown})."
            )
    held = {
        i for i, name in enumerate(names) if name in set(holdout_names or [])
    }
    pool = [i for i in range(n) if i not in held]
    if val_names:
        val = [i for i, name in enumerate(names) if name in set(val_names)]
        if held & set(val):
            raise ValueError(
                "An image cannot be both in val_names and holdout_names."
            )
    else:
        k = int(round(len(pool) * fraction))
        if fraction > 0 and k == 0 and len(pool) > 1:
            k = 1
        rng = np.random.default_rng(seed)
        val = sorted(rng.permutation(pool)[:k].tolist()) if k else []
    train = [i for i in pool if i not in set(val)]
    if not train:
        raise ValueError(
            f"No image left for training: {n} image(s), {len(val)} for "
            "validation. Lower val_fraction."
        )
    return train, val


def load_training_data(config, recipe, out) -> TrainingData:
    """Read, prepare and split the data of a run (step 2)."""
    imageset = load_data(config)
    cache_dir = config.cache_dir or str(out / "weight_cache")
    prepared = prepare(imageset, recipe, cache_dir, config.w0, config.sigma)
    train_idx, val_idx = split_validation(
        len(prepared.images),
        config.val_fraction,
        config.seed,
        prepared.names,
        config.val_names,
        config.holdout_names,
    )
    if recipe.weights == "unet" and prepared.num_classes > 2 and config.verbose:
        print(
            f"{prepared.num_classes} classes: the paper's border weights are "
            "defined for two (cells and background); training with class "
            "balance weights only."
        )
    channels = {1 if im.ndim == 2 else im.shape[-1] for im in prepared.images}
    if len(channels) != 1:
        raise ValueError(
            f"Images have different channel counts: {sorted(channels)}."
        )
    return TrainingData(prepared, train_idx, val_idx, channels.pop())


# ----------------------------------------------------------------- output


# What a run writes at the top of its folder (their temporaries too).
_RUN_FILES = ("last", "best", "state", "config", "log", "training_curve")
_RUN_ENTRIES = {"last.keras", "best.keras", "state.json", "config.json",
                "log.csv", "training_curve.png", "tensorboard",
                "weight_cache"}  # fmt: skip


@contextlib.contextmanager
def open_output(config, write=True):
    """The output folder and the resume state ({} for a new run) (step 1).

    A context: the folder is locked for this run until the block ends (a
    second run into it is refused; a killed run's lock goes with it), and
    temporaries of a killed write are removed. With ``write=False`` (a
    multi-worker run's other workers) the folder is only read, to resume.
    """
    out = pathlib.Path(config.output)
    if not write:
        yield out, _run_state(config, out, write=False)
        return
    _check_not_an_input(config, out)
    _check_writable(out)
    with folder_lock(out, "keras-unet train"):
        remove_temporaries(out, _RUN_FILES)
        yield out, _run_state(config, out)


def _check_not_an_input(config, out):
    """The run's files never go among the data it reads."""
    for name in ("data", "masks"):
        given = getattr(config, name)
        if given and out.resolve() == pathlib.Path(given).resolve():
            raise ValueError(
                f"--output {out} is the --{name} folder: the run would write "
                "among its own inputs; choose another --output."
            )


def _check_writable(out):
    probe = out / ".keras_unet_write_test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        if probe.is_file():  # created, but the disk is full
            probe.unlink()
        raise PermissionError(
            f"Cannot write to the output folder {out}: {err.strerror}. "
            "Choose another --output."
        ) from None


def _run_state(config, out, write=True):
    """The state inside ``last.keras`` (or, for older runs, state.json)."""
    last = out / "last.keras"
    foreign = write and not config.resume and sorted(
        p.name for p in out.iterdir()
        if p.name not in _RUN_ENTRIES and not p.name.startswith(".")
    )  # fmt: skip
    if foreign:
        raise FileExistsError(
            f"{out} holds files that are not a keras-unet run "
            f"({', '.join(foreign[:3])}); train into a new or empty --output "
            "(nothing was changed)."
        )
    if last.exists() and not config.resume and write:
        raise FileExistsError(
            f"{out} already holds a training run (last.keras). Pass "
            "--resume to continue it, or choose another --output; nothing "
            "was overwritten."
        )
    if not config.resume:
        return {}
    if not last.exists():
        raise FileNotFoundError(
            f"--resume: {out} holds no checkpoint (last.keras) to resume: "
            "the run stopped before its first one; start it again without "
            "--resume."
        )
    state = read_checkpoint_state(last)
    if not state and (out / "state.json").is_file():
        state = json.loads((out / "state.json").read_text())
    if not state:
        raise FileNotFoundError(
            f"--resume: {last} holds no resume state and there is no "
            "state.json beside it; start a new run."
        )
    _check_resume(config, out)
    if write:
        _trim_log(out / "log.csv", int(state.get("epochs_done", 0)))
        _write_json(out / "state.json", state)  # the copy matches last.keras
    return state


def _trim_log(path, epochs_done):
    """Drop log rows of epochs after the checkpoint: they are trained again."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    epochs = read_csv_log(path).get("epoch", [])
    keep = [0] + [i + 1 for i, e in enumerate(epochs) if e < epochs_done]
    if len(keep) < len(lines):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(lines[i] for i in keep))


def _check_resume(config, out):
    """A resumed run keeps its settings: refuse any but `RESUMABLE`."""
    stored = read_run_info(out).get("config")
    if stored is None:
        raise FileNotFoundError(
            f"--resume: {out} has no readable {RUN_INFO} with the run's "
            "settings, so it cannot be continued exactly."
        )
    given = dataclasses.asdict(config)
    for name, value in given.items():
        if name not in RESUMABLE and stored.get(name) != value:
            raise ValueError(
                f"--resume: the run in {out} was trained with "
                f"{name}={stored.get(name)!r}; this run asks for "
                f"{name}={value!r}. A resumed run keeps its settings (only "
                f"{', '.join(RESUMABLE[:3])}, ... may change); start a new "
                f"run to change {name} (e.g. --config {out / RUN_INFO} "
                "--output NEW)."
            )


def _write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def _versions():
    import importlib.metadata

    import keras_unet

    versions = {
        "keras_unet": keras_unet.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    for name in ("tensorflow", "jax", "torch"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def write_run_info(out, config, recipe, data, **extra):
    """``config.json``: the settings as given and what they resolved to.

    "config" holds the settings as given (recipe fields left to the preset
    stay None, so ``--config`` with another ``--preset`` works); "recipe"
    is what they resolved to. `extra` entries are added (the decision
    threshold after training).
    """
    if config.resume and "calibration" not in extra:  # until re-calibrated
        extra["calibration"] = read_run_info(out).get("calibration")
    info = {
        "config": dataclasses.asdict(dataclasses.replace(config, resume=False)),
        "recipe": dataclasses.asdict(recipe),
        "num_classes": data.prepared.num_classes,
        "class_of_interest": data.prepared.class_of_interest,
        "channels": data.channels,
        "data": data.prepared.description,
        "train_names": data.pick("names", "train"),
        "val_names": data.pick("names", "val"),
        "versions": _versions(),
        **extra,
    }
    _write_json(out / RUN_INFO, info)
    return info


# ---------------------------------------------------------- model and fit


def _strategy(config):
    """The tf.distribute strategy of ``config.distribute``, else None.

    `train` calls it first: MultiWorkerMirroredStrategy must be set up
    before TensorFlow runs any op.
    """
    if not config.distribute:
        return None
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"distribute={config.distribute!r} uses tf.distribute and needs "
            "the TensorFlow backend (KERAS_BACKEND=tensorflow). Received: "
            f"backend={keras.backend.backend()!r}"
        )
    if config.distribute == "multi-worker":
        return multi_worker_strategy()
    import tensorflow as tf

    # All local GPUs; without GPUs, all (logical) CPU devices.
    devices = tf.config.list_logical_devices("GPU") or (
        tf.config.list_logical_devices("CPU")
    )
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def multi_worker_strategy():
    """MultiWorkerMirroredStrategy from ``TF_CONFIG``, ready for ``fit``.

    Checks ``TF_CONFIG`` (`check_tf_config`) and works around Keras 3's
    reduction of whole batches (`_reduce_leaf_by_leaf`). Create it first in
    the program, before TensorFlow runs any op; TensorFlow backend only.
    """
    check_tf_config(os.environ.get("TF_CONFIG"))
    import tensorflow as tf

    return _reduce_leaf_by_leaf(tf.distribute.MultiWorkerMirroredStrategy())


def _reduce_leaf_by_leaf(strategy):
    """`strategy` with a ``reduce`` that Keras 3's ``fit`` can use.

    Keras (3.15) reduces a whole ``(x, y, w)`` batch in one
    ``strategy.reduce`` call, and scalar logs along axis 0; with several
    workers MultiWorkerMirroredStrategy refuses both (keras-team/keras
    issue 20585). This reduces each tensor on its own, scalars without an
    axis: the same values, in calls the strategy accepts.
    """
    import tensorflow as tf

    reduce = strategy.reduce

    def reduce_each(reduce_op, value, axis=None):
        def one(v):
            rank = strategy.experimental_local_results(v)[0].shape.rank
            return reduce(reduce_op, v, axis if rank else None)

        return tf.nest.map_structure(one, value)

    strategy.reduce = reduce_each
    return strategy


_TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


def check_tf_config(text):
    """The parsed ``TF_CONFIG`` of a multi-worker run, checked.

    TensorFlow's format: the cluster's ``"worker"`` (and optional
    ``"chief"``) addresses, and this process's task type and index.

    Examples:
        >>> check_tf_config(_TF_CONFIG_EXAMPLE)["task"]
        {'type': 'worker', 'index': 0}
    """
    if not text:
        raise ValueError(
            "distribute='multi-worker' needs the TF_CONFIG environment "
            "variable on every machine, e.g. TF_CONFIG="
            f"'{_TF_CONFIG_EXAMPLE}' (see docs/scaling.md)."
        )
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        hosts = cluster[task["type"]]
        ok = task["type"] in ("chief", "worker") and (
            0 <= task["index"] < len(hosts)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(
            "TF_CONFIG must be JSON naming the cluster's worker addresses "
            "and this task (type 'worker' or 'chief', index into its list), "
            f"e.g. '{_TF_CONFIG_EXAMPLE}'. Received: TF_CONFIG={text!r}"
        )
    return tf_config


def _make_deterministic():
    """Deterministic kernels on the current backend (slower)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


@dataclasses.dataclass
class Streams:
    """The data of `fit`: training stream(s) and validation tiles.

    Attributes:
        make: ``make(start)`` is the training stream from sample `start`
            on (sample i depends only on the seed and i, so resuming at
            the samples drawn continues the exact stream).
        first: the stream this run starts with.
        validation: the validation tiles, or None.
    """

    make: object
    first: object
    validation: object


def make_streams(config, recipe, data, samples_drawn, strategy=None):
    """The training stream from sample `samples_drawn` on, and validation.

    The stream is batched with the global batch (``batch_size`` per
    replica, times the replicas). In a multi-worker run each worker
    computes only its part of every global batch (`shard` of
    `keras_unet.data.make_training_dataset`), so the workers together
    draw exactly the samples of a one-process run with the global batch.

    Returns:
        `Streams` (step 3).
    """
    from keras_unet import data as unet_data

    replicas = strategy.num_replicas_in_sync if strategy else 1
    common = dict(
        input_size=config.input_size,
        depth=config.depth,
        padding=config.padding,
        num_classes=data.prepared.num_classes,
    )
    train_data = [
        data.pick(k, "train") for k in ("images", "labels", "weights")
    ]

    def stream(start, batch_size, shard=None):
        return unet_data.make_training_dataset(
            *train_data,
            seed=config.seed,
            augment=recipe.augment,
            start=start,
            shard=shard,
            batch_size=batch_size,
            **common,
        )

    def make(start):
        if config.distribute != "multi-worker":
            return stream(start, recipe.batch_size * replicas)
        return strategy.distribute_datasets_from_function(
            lambda context: stream(
                start,
                recipe.batch_size,  # per replica: each takes whole batches
                (context.input_pipeline_id, context.num_input_pipelines),
            )
        )

    val_ds = None
    if data.val_indices:
        val_ds = unet_data.make_validation_dataset(
            *(data.pick(k, "val") for k in ("images", "labels", "weights")),
            batch_size=recipe.batch_size * replicas,
            **common,
        )
    return Streams(make, make(samples_drawn), val_ds)


def build_model(config, recipe, data, out, strategy=None, state=None):
    """A new compiled U-Net, or ``last.keras`` when resuming (step 5)."""
    from keras_unet.model import build_unet, load_model
    from keras_unet.recipes import compile_unet

    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")
    try:
        scope = strategy.scope() if strategy else contextlib.nullcontext()
        with scope:
            if config.resume:
                model = load_model(out / "last.keras")
                return _resumed(model, config, recipe, state or {})
            model = build_unet(
                (None, None, data.channels),
                num_classes=data.prepared.num_classes,
                depth=config.depth,
                filters=config.filters,
                dropout=config.dropout,
                padding=config.padding,
                batch_norm=config.batch_norm,
                seed=config.seed,
            )
            fields = dataclasses.asdict(recipe)
            compile_unet(
                model,
                config.preset,
                total_steps=config.steps * config.epochs,
                jit_compile=config.xla,
                **fields,
            )
            return model
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _resumed(model, config, recipe, state):
    """``last.keras``: its dropout generators where the run left them, its
    cosine schedule stretched to the run's new end."""
    restore_random_state(model, state)
    if recipe.schedule == "cosine":
        from keras_unet.recipes import learning_rate_schedule

        model.optimizer.learning_rate = learning_rate_schedule(
            recipe.learning_rate, recipe.warmup_steps,
            config.steps * config.epochs, "cosine",
        )  # fmt: skip
    return model


def _tensorboard_available(config):
    if not config.tensorboard:
        return False
    try:
        import tensorflow  # noqa: F401 - Keras' TensorBoard writes with it
    except ImportError:
        print("TensorBoard logs skipped: TensorFlow is not installed.")
        return False
    return True


def fit(model, config, streams, callbacks):
    """``model.fit`` for the epochs not done yet (step 6).

    After an interrupt inside an epoch, that epoch is finished first and
    the stream continues after the samples it drew, so a resumed run sees
    exactly the samples of an uninterrupted one.

    Returns:
        The merged history dict.
    """
    checkpoint = _checkpoint(callbacks)
    epochs_done = checkpoint.epochs_done
    within = checkpoint.steps_done - epochs_done * config.steps
    if within >= config.steps:  # interrupted after its steps (validation)
        epochs_done += within // config.steps
        within %= config.steps
    history = {}
    kwargs = dict(
        validation_data=streams.validation,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=False,  # the stream shuffles itself
    )
    train_ds = streams.first
    if 0 < within < config.steps and epochs_done < config.epochs:
        h = model.fit(
            train_ds,
            initial_epoch=epochs_done,
            epochs=epochs_done + 1,
            steps_per_epoch=config.steps - within,
            **kwargs,
        )
        _merge(history, h.history)
        epochs_done += 1
        train_ds = streams.make(checkpoint.samples_drawn)
    if epochs_done < config.epochs and not model.stop_training:
        h = model.fit(
            train_ds,
            initial_epoch=epochs_done,
            epochs=config.epochs,
            steps_per_epoch=config.steps,
            **kwargs,
        )
        _merge(history, h.history)
    return history


def _merge(history, new):
    for key, values in new.items():
        history.setdefault(key, []).extend(values)


def _close_logs(callbacks):
    """Close the CSV and TensorBoard writers of a fit that raised."""
    for callback in callbacks:
        if (
            isinstance(
                callback,
                keras.callbacks.CSVLogger | keras.callbacks.TensorBoard,
            )
            and getattr(callback, "model", None) is not None
        ):
            callback.on_train_end()


def _checkpoint(callbacks):
    return next(c for c in callbacks if isinstance(c, UNetCheckpoint))


def _save_on_interrupt(callbacks):
    """Ctrl-C: save ``last.keras`` + state."""
    checkpoint = _checkpoint(callbacks)
    if checkpoint.model is None:  # interrupted before training began
        return
    saved = checkpoint.save_last(interrupted=True)
    print(
        f"\nInterrupted: saved {checkpoint.last_path} after "
        f"{saved['steps_done']} steps; continue with --resume."
    )


def calibrate(out, data):
    """The decision threshold of ``best.keras`` on the validation images.

    Returns:
        A dict for ``config.json`` (empty without validation images or for
        more than two classes), see `keras_unet.calibration`.
    """
    from keras_unet import calibration
    from keras_unet.model import load_model

    best = out / "best.keras"
    if not data.val_indices or data.prepared.num_classes != 2:
        return {}
    if not best.is_file():
        return {}
    return calibration.calibrate_threshold(
        load_model(best, compile=False),
        data.pick("images", "val"),
        data.pick("labels", "val"),
        data.prepared.class_of_interest,
        data.pick("weights", "val"),
    )


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    model: object
    history: dict
    output: pathlib.Path
    config: TrainConfig
    data: Prepared
    train_indices: list
    val_indices: list
    calibration: dict = dataclasses.field(default_factory=dict)
    replicas: int = 1
    chief: bool = True


def train(config: TrainConfig, callbacks=None) -> TrainResult:
    """Train a U-Net end to end, as ``keras-unet train`` does.

    Writes to ``config.output``: ``best.keras`` and ``last.keras``
    (atomic), ``state.json`` (resume state), ``config.json`` (the resolved
    settings, so the run can be repeated with ``--config``, and the
    decision threshold chosen on the validation images), ``log.csv``,
    ``training_curve.png`` and ``tensorboard/``. Ctrl-C saves
    ``last.keras`` and ``state.json`` and re-raises KeyboardInterrupt;
    ``resume=True`` continues from them with the optimizer state and the
    exact data stream. In a multi-worker run only the chief writes them;
    every worker resumes from the run in its ``config.output`` (a shared
    folder or a copy of the chief's).

    Args:
        config: the settings (`keras_unet.config.TrainConfig`).
        callbacks: extra Keras callbacks, appended to the standard ones.

    Raises:
        keras_unet.callbacks.TrainingDiverged: the loss became NaN or
            infinite (the last good checkpoint is kept).
    """
    recipe = config.check()
    strategy = _strategy(config)  # first: multi-worker sets up TensorFlow
    chief = strategy is None or strategy.extended.should_checkpoint
    with (
        open_output(config, write=chief) as (out, state),
        _workspace(out, chief) as place,
    ):
        return _train_in(place, config, recipe, strategy, out, state,
                         callbacks)  # fmt: skip


@contextlib.contextmanager
def _workspace(out, chief):
    """Where this process writes: `out`, or a temporary folder for the
    non-chief workers of a multi-worker run (removed at the end)."""
    if chief:
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="keras_unet_worker_") as tmp:
        yield pathlib.Path(tmp)


def _train_in(place, config, recipe, strategy, out, state, extra_callbacks):
    """Steps 2-7 of `train`, writing into `place`."""
    chief = place == out
    data = load_training_data(config, recipe, place)
    if config.deterministic:
        _make_deterministic()
    keras.utils.set_random_seed(config.seed)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    streams = make_streams(
        config, recipe, data, int(state.get("samples_drawn", 0)), strategy
    )
    if chief:
        write_run_info(out, config, recipe, data)
    model = build_model(config, recipe, data, out, strategy, state)
    callbacks = training_callbacks(
        place,
        monitor="val_loss" if streams.validation is not None else "loss",
        early_stopping=config.early_stopping,
        tensorboard=chief and _tensorboard_available(config),
        batch_size=recipe.batch_size * replicas,
        append_log=config.resume,
        save_every=config.save_every,
    ) + list(extra_callbacks or [])
    _checkpoint(callbacks).restore(state)
    try:
        history = fit(model, config, streams, callbacks)
    except KeyboardInterrupt:
        if chief:
            _save_on_interrupt(callbacks)
        _close_logs(callbacks)
        raise
    except Exception:
        _close_logs(callbacks)
        raise
    finally:
        write_training_curve(place / "log.csv", place / "training_curve.png")
    calibration = calibrate(out, data) if chief else {}
    if calibration:
        write_run_info(out, config, recipe, data, calibration=calibration)
    return TrainResult(
        model=model,
        history=history,
        output=out,
        config=config,
        data=data.prepared,
        train_indices=data.train_indices,
        val_indices=data.val_indices,
        calibration=calibration,
        replicas=replicas,
        chief=chief,
    )
