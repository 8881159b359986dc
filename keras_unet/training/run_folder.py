"""The output folder of a training run: locked, refused when foreign, resumed.

`open_output` locks the folder for the run, refuses a folder that holds
anything but an earlier run (or a run when not resuming), and reads the
resume state; `write_run_info` writes the run's record, ``config.json``,
which `keras_unet.training.run.Run` reads back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib

import keras

from keras_unet.io.atomic import atomic_path, remove_temporaries
from keras_unet.io.lock import folder_lock
from keras_unet.training.callbacks import read_checkpoint_state, read_csv_log
from keras_unet.training.config import RESUMABLE
from keras_unet.training.run import RUN_INFO, read_run_info

__all__ = ["open_output", "write_run_info"]

# What a run writes at the top of its folder (their temporaries too).
_RUN_FILES = ("last", "best", "state", "config", "log", "training_curve")
_RUN_ENTRIES = {
    "last.keras",
    "best.keras",
    "state.json",
    RUN_INFO,
    "log.csv",
    "training_curve.png",
    "tensorboard",
    "weight_cache",
}


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
    foreign = (
        write
        and not config.resume
        and sorted(
            p.name
            for p in out.iterdir()
            if p.name not in _RUN_ENTRIES and not p.name.startswith(".")
        )
    )
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

    `data` is the run's `keras_unet.data.split.Split`.

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
        "num_classes": data.train.num_classes,
        "class_of_interest": data.train.class_of_interest,
        "channels": data.train.channels,
        "data": data.train.description,
        "train_names": list(data.train.names),
        "val_names": list(data.val.names),
        "versions": _versions(),
        **extra,
    }
    _write_json(out / RUN_INFO, info)
    return info
