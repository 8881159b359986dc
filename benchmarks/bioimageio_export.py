"""BioImage Model Zoo export: cost, validation and tiled prediction.

For a depth-2 (4 filters) and a depth-4 (the paper's geometry, 8 filters)
U-Net with random weights, in one run on one machine:

1. `keras_unet.export.bioimageio.export_bioimageio` (Keras 3 and SavedModel
   weights): wall time and zip size;
2. `bioimageio.core.test_model` on the zip (what ``bioimageio test`` and
   the zoo's CI run): wall time and status;
3. bioimageio.core's tiled prediction (`predict` with a block size
   parameter, the halo from the package) of 600x700, 601x701 and 608x704
   synthetic images, against `keras_unet.predict_tiled` (the baseline,
   timed in the same run, after one warm-up call each): wall time, ratio,
   and the largest difference of the probabilities. Where a side is not a
   multiple of 2**depth (600x700 for depth 4, 601x701 for both),
   bioimageio.core shifts the last block of each row or column onto the
   image end, off the pooling grid; 608x704 is aligned for both.

Run: ``python benchmarks/bioimageio_export.py`` (about 5 minutes on 2 CPU
cores). Prints a table and writes ``benchmarks/results/bioimageio.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without install
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import machine  # noqa: E402

META = {
    "name": "Benchmark U-Net",
    "description": "Random weights.",
    "authors": ["keras_unet benchmarks"],
    "license": "MIT",
}


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _core_tiled(package, image, n):
    from bioimageio.core import Tensor, predict

    dims = ("batch", "y", "x", "channel")
    sample = predict(
        model=str(package),
        inputs={"raw": Tensor(image[None, :, :, None], dims=dims)},
        blocksize_parameter=n,
    )
    return sample.members["probabilities"].data.values[0]


def bench(depth, filters, block_n, folder):
    from bioimageio.core import test_model

    from keras_unet import build_unet, predict_tiled
    from keras_unet.data.synthetic import synthetic_cells
    from keras_unet.export.bioimageio import export_bioimageio, zoo_geometry
    from keras_unet.model.spec import inspect_unet

    model = build_unet((None, None, 1), depth=depth, filters=filters, seed=0)
    zoo = zoo_geometry(inspect_unet(model))
    path = folder / f"unet_d{depth}.zip"
    _, export_s = _timed(lambda: export_bioimageio(model, path, **META))
    summary, test_s = _timed(lambda: test_model(str(path)))
    row = {
        "depth": depth,
        "filters": filters,
        "block_min": zoo.min,
        "step": zoo.step,
        "halo": zoo.halo,
        "crop": zoo.crop,
        "export_s": round(export_s, 2),
        "zip_bytes": path.stat().st_size,
        "test_model_s": round(test_s, 2),
        "test_model": summary.status,
        "block": zoo.min + block_n * zoo.step,
        "tiled": {},
    }
    for h, w in ((600, 700), (601, 701), (608, 704)):
        image = synthetic_cells(1, size=(h, w), seed=1)[0][0]
        predict_tiled(model, image)  # warm-up (traces)
        ours, ours_s = _timed(lambda: predict_tiled(model, image))  # noqa: B023
        _core_tiled(path, image, block_n)  # warm-up
        core, core_s = _timed(lambda: _core_tiled(path, image, block_n))  # noqa: B023
        row["tiled"][f"{h}x{w}"] = {
            "predict_tiled_s": round(ours_s, 3),
            "bioimageio_core_s": round(core_s, 3),
            "core_over_ours": round(core_s / ours_s, 1),
            "max_abs_diff": float(np.abs(core - ours).max()),
        }
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", default=str(HERE / "results" / "bioimageio.json")
    )
    args = parser.parse_args()
    import bioimageio.core
    import bioimageio.spec
    import keras

    report = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": {
            "bioimageio.spec": bioimageio.spec.__version__,
            "bioimageio.core": bioimageio.core.__version__,
            "keras": keras.__version__,
        },
        "results": [],
    }
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # bioimageio.core unzips SavedModels into the cwd
        try:
            for depth, filters, n in ((2, 4, 40), (4, 8, 20)):
                row = bench(depth, filters, n, pathlib.Path(tmp))
                print(json.dumps(row), flush=True)
                report["results"].append(row)
        finally:
            os.chdir(cwd)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
