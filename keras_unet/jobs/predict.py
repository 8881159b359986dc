"""Segment image files: ``keras-unet predict`` as a Python function.

Each image becomes a probability map of the run's class of interest and
an overlay at its decision threshold (`keras_unet.training.run.Run`), in a
folder written whole (`keras_unet.jobs.prediction_folder`).
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from keras_unet import figures
from keras_unet.inference.tiled import predict_tiled
from keras_unet.io.atomic import atomic_folder
from keras_unet.io.files import list_images
from keras_unet.io.images import read_array
from keras_unet.jobs.prediction_folder import (
    check_prediction_folder,
    write_prediction,
    write_record,
)
from keras_unet.training.run import Run

__all__ = ["predict_files"]


def _input_files(inputs):
    """Image files from a file, a folder or a list; stems must differ."""
    if isinstance(inputs, list | tuple):
        files = [pathlib.Path(f) for f in inputs]
        folders = [str(f) for f in files if f.is_dir()]
        if folders:
            raise ValueError(
                f"{', '.join(folders)}: a folder among image files; give one "
                "folder alone, or image files."
            )
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"No such image file(s): {', '.join(missing)}"
            )
    else:
        files = list_images(inputs)
    if not files:
        raise ValueError(f"No images to segment in {inputs!r}.")
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise ValueError(
            "Two input files share a file stem; outputs would clash."
        )
    return files


def predict_files(
    model,
    inputs,
    output_dir,
    *,
    class_of_interest=None,
    threshold=None,
    tta=None,
    tile_size=None,
    batch_size=None,
    overlays=True,
    overwrite=False,
    verbose=1,
):
    """Segment image files; write probability maps and overlays.

    For each input image ``<stem>.<ext>`` this writes ``<stem>.tif``, the
    float32 probability of the class of interest (for ISBI 2012 models:
    the membrane, class 0; otherwise the cells, class 1), and
    ``overlays/<stem>.png`` (the image with the pixels whose probability
    reaches the decision threshold in red). ``predictions.json`` records
    the model, the class and the threshold, so that
    `evaluate_predictions` knows what the maps mean. The folder is written
    whole or not at all (a temporary sibling renamed at the end), so maps
    of two models or two runs are never mixed in it.

    Args:
        model: a `keras_unet.training.run.Run`, a run folder, the path of
            a ``.keras`` file, or a Keras model.
        inputs: an image file, a folder of images, or a list of files.
        output_dir: where to write.
        class_of_interest: class whose probability is written (default: from
            the training run's ``config.json``, else 1; 0 for a one-channel
            model).
        threshold: decision threshold of the overlays (default: the one
            calibrated on the run's validation images, else 0.5; see
            `keras_unet.training.run.Run.threshold`).
        tta: test-time augmentation, see `keras_unet.predict_tiled`.
        tile_size: passed to `predict_tiled`.
        batch_size: passed to `predict_tiled`.
        overlays: also write the overlay PNGs.
        overwrite: replace an earlier prediction folder at `output_dir`
            (one holding only this function's files); otherwise an
            existing non-empty folder is refused.
        verbose: 1 prints a line per image.

    Returns:
        A list of the written probability-map paths.

    Raises:
        FileExistsError: `output_dir` is not empty and `overwrite` is
            False, or it holds files this function does not write.
    """
    run = Run.of(model)
    decision = run.decision(class_of_interest, threshold)
    files = _input_files(inputs)
    out = pathlib.Path(output_dir)
    check_prediction_folder(out, overwrite)
    written = []
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for f in files:
            t0 = time.perf_counter()
            image = read_array(f)
            probs = predict_tiled(
                run.model,
                image,
                tile_size=tile_size,
                batch_size=batch_size,
                tta=tta,
                verbose=0,
            )
            prob = probs[..., decision.class_of_interest].astype(np.float32)
            overlay = None
            if overlays:
                overlay = _overlay(image, decision.chosen(probs), decision)
            path = write_prediction(tmp, f.stem, prob, overlay)
            written.append(out / path.name)
            if verbose:
                seconds = time.perf_counter() - t0
                print(f"{f} -> {written[-1]} ({seconds:.1f} s)")
        write_record(
            tmp, model_name=run.name, decision=decision, tta=tta, files=written
        )
    return written


def _overlay(image, chosen, decision):
    """The image with the chosen pixels in red, and a legend saying so."""
    text = f"{decision.meaning} (p >= {decision.threshold:.2f})"
    return figures.with_legend(
        figures.overlay(image, chosen), [(figures.RED, text)]
    )
