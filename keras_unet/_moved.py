"""The module paths of keras_unet 0.1, and where their names are now.

keras_unet 0.1 was 29 flat modules; 0.2 groups them in folders by the
stage of the flow (docs/architecture.md). Code that imports an old path
keeps working: ``from keras_unet.tiling import predict_tiled`` gives the
function with a `DeprecationWarning` naming its new place
(``keras_unet.inference.tiled``), and a name that is gone raises an
`AttributeError` that says what replaces it. `MOVED` is the one table of
old paths; `install` makes the old module names importable.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MOVED", "REMOVED", "install", "old_attribute"]

#: Old module -> the new modules that hold its names, searched in order.
MOVED = {
    "keras_unet.augment": ("keras_unet.data.augment",),
    "keras_unet.bioimageio": ("keras_unet.export.bioimageio",),
    "keras_unet.calibration": ("keras_unet.training.calibration",),
    "keras_unet.callbacks": ("keras_unet.training.callbacks",),
    "keras_unet.checks": ("keras_unet.checks",),
    "keras_unet.chunked": ("keras_unet.inference.chunked",),
    "keras_unet.cli": (
        "keras_unet.cli.main",
        "keras_unet.cli.options",
        "keras_unet.cli.summary",
    ),
    "keras_unet.config": (
        "keras_unet.training.config",
        "keras_unet.training.run",
    ),
    "keras_unet.data": (
        "keras_unet.data.stream",
        "keras_unet.data.tiles",
        "keras_unet.data.sources",
        "keras_unet.data.validation",
    ),
    "keras_unet.datasets": (
        "keras_unet.data.synthetic",
        "keras_unet.data.imageset",
        "keras_unet.data.isbi2012",
        "keras_unet.data.ctc",
        "keras_unet.data.folders",
    ),
    "keras_unet.evaluation": ("keras_unet.evaluation.folders",),
    "keras_unet.export": (
        "keras_unet.export.saved_model",
        "keras_unet.export.formats",
        "keras_unet.export.bioimageio",
    ),
    "keras_unet.geometry": ("keras_unet.model.geometry",),
    "keras_unet.io": (
        "keras_unet.io.images",
        "keras_unet.data.normalize",
        "keras_unet.io.atomic",
        "keras_unet.io.lock",
        "keras_unet.io.files",
    ),
    "keras_unet.losses": ("keras_unet.model.losses",),
    "keras_unet.metrics": (
        "keras_unet.model.metrics",
        "keras_unet.evaluation.isbi",
        "keras_unet.evaluation.seg",
        "keras_unet.evaluation.folders",
    ),
    "keras_unet.mirror": ("keras_unet.data.mirror",),
    "keras_unet.model": (
        "keras_unet.model.unet",
        "keras_unet.model.spec",
        "keras_unet.model.saving",
        "keras_unet.model.flops",
        "keras_unet.inference.tiling_model",
    ),
    "keras_unet.recipes": ("keras_unet.training.recipes",),
    "keras_unet.scores": (
        "keras_unet.evaluation.isbi",
        "keras_unet.evaluation.inputs",
        "keras_unet.evaluation.seg",
    ),
    "keras_unet.tiling": (
        "keras_unet.inference.tiled",
        "keras_unet.inference.tile_plan",
        "keras_unet.inference.tiling_model",
    ),
    "keras_unet.topology": ("keras_unet.evaluation.topology",),
    "keras_unet.train": (
        "keras_unet.training.train",
        "keras_unet.data.prepare",
        "keras_unet.data.split",
        "keras_unet.training.run_folder",
        "keras_unet.training.distribute",
        "keras_unet.training.fit",
    ),
    "keras_unet.tta": ("keras_unet.inference.tta",),
    "keras_unet.volumes": ("keras_unet.io.volumes",),
    "keras_unet.weights": (
        "keras_unet.data.weight_maps",
        "keras_unet.data.weight_cache",
    ),
    "keras_unet.workflows": (
        "keras_unet.jobs.predict",
        "keras_unet.io.files",
        "keras_unet.jobs.prediction_folder",
        "keras_unet.jobs.volume",
        "keras_unet.jobs.evaluate",
        "keras_unet.jobs.demo",
    ),
}

#: Old names that have no new place, and what to use instead.
REMOVED = {
    "keras_unet.calibration.decision_threshold": "use keras_unet.training"
    ".run.Run.load(model_file).threshold(class_of_interest)",
    "keras_unet.train.Prepared": "keras_unet.data.prepare.prepare returns "
    "a keras_unet.data.imageset.ImageSet",
    "keras_unet.train.TrainingData": "load_training_data returns a "
    "keras_unet.data.split.Split (its train and val ImageSets)",
    "keras_unet.chunked.import_dask": "use keras_unet.optional.import_extra"
    "(module, 'dask')",
    "keras_unet.chunked.DASK_EXTRA": "see keras_unet.optional.EXTRAS",
    "keras_unet.evaluation.PROB_SUFFIXES": "use keras_unet.io.images."
    "ARRAY_SUFFIXES",
}


def old_attribute(old, name):
    """The object `name` of the old module `old`, found in its new place
    (with a DeprecationWarning); an ImportError saying what replaces a
    removed name; else an AttributeError naming the new modules."""
    if name.startswith("__"):
        raise AttributeError(f"module {old!r} has no attribute {name!r}")
    package = sys.modules.get(old)
    if hasattr(package, "__path__") and importlib.util.find_spec(
        f"{old}.{name}"
    ):  # a module of the new package: ``from keras_unet.data import stream``
        return importlib.import_module(f"{old}.{name}")
    hint = REMOVED.get(f"{old}.{name}")
    if hint:  # an ImportError: ``from old import name`` keeps the message
        raise ImportError(f"{old}.{name} was removed in 0.2: {hint}.")
    for new in MOVED[old]:
        module = importlib.import_module(new)
        found = vars(module).get(name)
        if name in vars(module) and not isinstance(found, types.ModuleType):
            home = getattr(found, "__module__", None) or new
            home = home if home.startswith("keras_unet.") else new
            warnings.warn(
                f"{old}.{name} is now {home}.{name}; import it from there "
                "(keras_unet 0.2 groups its modules by stage: see "
                "docs/architecture.md).",
                DeprecationWarning,
                stacklevel=3,
            )
            if old in sys.modules:  # warned once
                setattr(sys.modules[old], name, found)
            return found
    raise AttributeError(
        f"module {old!r} has no attribute {name!r} (keras_unet 0.2 moved "
        f"{old} to {', '.join(MOVED[old])}; see docs/architecture.md)"
    )


class _OldModule(types.ModuleType):
    """An old module path: its names are looked up in their new places."""

    def __getattr__(self, name):
        return old_attribute(self.__name__, name)

    def __dir__(self):
        return sorted({n for new in MOVED[self.__name__] for n in _public(new)})


def _public(module_name):
    return getattr(importlib.import_module(module_name), "__all__", ())


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of old module paths that are no files any more."""

    def find_spec(self, fullname, path=None, target=None):
        # Last on sys.meta_path: asked only when no file has the name.
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        moved = ", ".join(MOVED[spec.name])
        return _OldModule(spec.name, f"keras_unet 0.1's path: see {moved}.")

    def exec_module(self, module):
        pass


def install():
    """Make the old module paths importable (once per process)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
