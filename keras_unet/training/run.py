"""A trained run as the rest of keras_unet sees it: `Run`, loaded once.

A training run leaves a folder with ``best.keras``, ``last.keras`` and its
record ``config.json`` (`RUN_INFO`): the settings, the data, the classes,
the class of interest and the decision chosen on the validation images.
`Run.load` reads the record and the model once; `predict`, `evaluate`,
the exports and the demo take the `Run` and ask it what the maps mean and
where to decide. A model file without a record (or a model in memory) is a
`Run` too, with the defaults: class 1 (0 for one output channel) at 0.5.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from keras_unet.checks import check_probability
from keras_unet.model.saving import load_model
from keras_unet.model.spec import spec_of

__all__ = ["BEST_MODEL", "RUN_INFO", "Decision", "Run", "read_run_info"]

#: The run's record beside its models: settings, data, classes, decision.
RUN_INFO = "config.json"
#: The model a run is read at: the best on the validation images.
BEST_MODEL = "best.keras"
#: The decision when a run has none: probability 0.5.
DEFAULT_THRESHOLD = 0.5


def read_run_info(path) -> dict:
    """The run's ``config.json`` for a model file or a run folder, or {}.

    Examples:
        >>> read_run_info("no/such/run/best.keras")
        {}
    """
    path = pathlib.Path(path)
    folder = path if path.is_dir() else path.parent
    try:
        return json.loads((folder / RUN_INFO).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


@dataclasses.dataclass(frozen=True)
class Decision:
    """How a probability map is read: the class, its threshold, what it is.

    Attributes:
        class_of_interest: the class whose probability is thresholded.
        threshold: a pixel is of that class when its probability reaches it.
        meaning: "membrane", "cells" or "class k" (`Run.meaning`).
    """

    class_of_interest: int
    threshold: float
    meaning: str

    def chosen(self, probabilities):
        """The pixels of the class: ``probabilities[..., k] >= threshold``
        for ``(H, W, K)`` probabilities."""
        return probabilities[..., self.class_of_interest] >= self.threshold


class Run:
    """A trained model and what its run knows about it.

    Args:
        model: a keras model, or the path of a ``.keras`` file (loaded on
            first use, once).
        record: the run's ``config.json`` ({} for none).
        path: the model file (None for a model in memory).

    Use `Run.load` for a run folder or a model file, `Run.of` for anything
    a function accepts as a model.
    """

    def __init__(self, model=None, record=None, path=None):
        self.path = None if path is None else pathlib.Path(path)
        self.record = dict(record or {})
        self._model = model

    @classmethod
    def load(cls, path) -> Run:
        """The run of a run folder (its ``best.keras``) or a model file."""
        path = pathlib.Path(path)
        if path.is_dir() and (path / RUN_INFO).is_file():
            path = path / BEST_MODEL
        return cls(record=read_run_info(path), path=path)

    @classmethod
    def of(cls, model) -> Run:
        """A `Run` of a `Run`, a ``.keras`` path or a keras model."""
        if isinstance(model, Run):
            return model
        if isinstance(model, str | pathlib.Path):
            return cls.load(model)
        return cls(model=model)

    # ----------------------------------------------------------- the model

    @property
    def model(self):
        """The keras model (loaded without its optimizer, once)."""
        if self._model is None:
            self._model = load_model(self.path, compile=False)
        return self._model

    @property
    def name(self) -> str:
        """The model file, or ``<in memory>``."""
        return "<in memory>" if self.path is None else str(self.path)

    @property
    def spec(self):
        """The model's `keras_unet.model.spec.UNetSpec`."""
        return spec_of(self.model)

    @property
    def num_classes(self) -> int:
        """The model's output channels."""
        return int(self.model.output_shape[-1])

    # ------------------------------------------------------ what maps mean

    @property
    def class_of_interest(self) -> int:
        """The class whose map is written: the run's (ISBI 2012: the
        membrane, 0), else 1 (0 for a one-channel model)."""
        default = 1 if self.num_classes > 1 else 0
        return int(self.record.get("class_of_interest", default))

    def check_class(self, class_of_interest=None) -> int:
        """`class_of_interest` (default: the run's), checked against the
        model's classes."""
        if class_of_interest is None:
            class_of_interest = self.class_of_interest
        if not 0 <= class_of_interest < self.num_classes:
            raise ValueError(
                f"class_of_interest={class_of_interest} but the model has "
                f"{self.num_classes} output channel(s)."
            )
        return int(class_of_interest)

    def meaning(self, class_of_interest=None) -> str:
        """What the map of a class is: "membrane" (class 0 of a two-class
        model: background and the borders between cells), "cells" (class 1
        of two, or one sigmoid channel), else "class k"."""
        k = self.check_class(class_of_interest)
        if self.num_classes <= 2:
            return "membrane" if k == 0 and self.num_classes == 2 else "cells"
        return f"class {k}"

    # ------------------------------------------------------------ decision

    @property
    def calibration(self) -> dict:
        """The decision chosen on the validation images for this model file
        ({} for none: another file of the run, e.g. ``last.keras``, or a
        model without a run)."""
        record = self.record.get("calibration") or {}
        if self.path is None or "decision_threshold" not in record:
            return {}
        if self.path.name != record.get("model", BEST_MODEL):
            return {}
        return record

    def threshold(self, class_of_interest=None) -> float:
        """The decision threshold on the probability of a class.

        The calibrated one for the class it was calibrated for; for the
        other class of a two-class model ``1 - threshold`` (a pixel is one
        class or the other); `DEFAULT_THRESHOLD` without a calibration.
        """
        k = self.check_class(class_of_interest)
        record = self.calibration
        if not record:
            return DEFAULT_THRESHOLD
        threshold = float(record["decision_threshold"])
        if k == record.get("class_of_interest", self.class_of_interest):
            return threshold
        return round(1.0 - threshold, 6)

    def decision(self, class_of_interest=None, threshold=None) -> Decision:
        """The `Decision` for a class (default: the run's) at `threshold`
        (default: `Run.threshold` of that class)."""
        k = self.check_class(class_of_interest)
        if threshold is None:
            threshold = self.threshold(k)
        hint = "a pixel belongs to the class when its probability reaches it"
        threshold = check_probability(threshold, "threshold", hint)
        return Decision(k, threshold, self.meaning(k))

    # ---------------------------------------------------------- provenance

    @property
    def provenance(self) -> dict:
        """Where the model came from: data, images, recipe, versions."""
        keys = ("data", "train_names", "val_names", "recipe", "versions")
        return {k: self.record[k] for k in keys if k in self.record}
