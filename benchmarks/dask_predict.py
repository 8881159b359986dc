"""Larger-than-memory prediction on Dask: equality, throughput, memory.

(a) max |difference| of `predict_chunked` against `predict_tiled` on a
2000x1500 image and a 3-D stack; (b) throughput of `predict_chunked`
(Dask threads) against `predict_tiled` on an image that fits, same model,
same run; (c) ``keras-unet predict`` of a large uint8 Zarr (created chunk
by chunk, never whole) to OME-Zarr under ``/usr/bin/time -v``: peak
resident memory; (d) the same CLI job on a 2-worker `LocalCluster`
against Dask's threads; (e) the in-memory CLI path (image file in, TIFF
out) against the lazy one on an 8000x8000 image. The model: depth 2, 4
filters (the issue's 7,400 parameters). Prints and saves
``results/dask_predict.json``.

    python benchmarks/dask_predict.py --parts a b d e
    python benchmarks/dask_predict.py --parts c --size 20000
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import machine  # noqa: E402

CLI = "import sys; from keras_unet.cli import main; sys.exit(main())"


def make_model(folder):
    import keras

    from keras_unet import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 1), depth=2, filters=4)
    path = pathlib.Path(folder) / "model.keras"
    model.save(path)
    return model, path


def make_zarr(path, size, chunk=1024, seed=0):
    """A uint8 size x size Zarr, written one chunk row at a time."""
    import zarr

    z = zarr.create_array(
        str(path), shape=(size, size), chunks=(chunk, chunk), dtype="u1"
    )
    rng = np.random.default_rng(seed)
    for r in range(0, size, chunk):
        rows = min(chunk, size - r)
        yy, xx = np.mgrid[r : r + rows, 0:size]
        cells = 128 + 100 * np.sin(yy / 9.0) * np.cos(xx / 11.0)
        noise = rng.normal(0, 20, (rows, size))
        z[r : r + rows] = np.clip(cells + noise, 0, 255).astype(np.uint8)
    return path


def part_a(model):
    from keras_unet.inference.chunked import predict_chunked
    from keras_unet.inference.tiled import predict_tiled, predict_tiled_batch

    rng = np.random.default_rng(1)
    image = (rng.random((2000, 1500)) * 255).astype(np.uint8)
    ref = predict_tiled(model, image, verbose=0)
    got = predict_chunked(model, image, chunk_size=512).compute()
    stack = (rng.random((5, 300, 400)) * 65535).astype(np.uint16)
    ref3 = predict_tiled_batch(model, stack, verbose=0)
    got3 = predict_chunked(model, stack, chunk_size=128, z_chunk=3).compute()
    return {
        "image_2000x1500_uint8_chunk512": float(np.abs(got - ref).max()),
        "stack_5x300x400_uint16_chunk128_z3": float(np.abs(got3 - ref3).max()),
    }


def part_b(model, size=4000):
    from keras_unet.inference.chunked import predict_chunked
    from keras_unet.inference.tiled import predict_tiled

    rng = np.random.default_rng(2)
    image = (rng.random((size, size)) * 255).astype(np.uint8)
    predict_tiled(model, image[:256, :256], verbose=0)  # warm-up
    t0 = time.perf_counter()
    predict_tiled(model, image, verbose=0)
    tiled = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict_chunked(model, image).compute(scheduler="threads")
    lazy = time.perf_counter() - t0
    mpx = size * size / 1e6
    return {
        "image": f"{size}x{size} uint8 in memory",
        "predict_tiled_s": tiled,
        "predict_chunked_threads_s": lazy,
        "predict_tiled_mpx_per_s": mpx / tiled,
        "predict_chunked_mpx_per_s": mpx / lazy,
        "chunked_over_tiled_time": lazy / tiled,
    }


def run_cli(model_path, source, output, *extra):
    """The CLI under /usr/bin/time -v: seconds and peak RSS (MiB)."""
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-c",
        CLI,
        "predict",
        "--model",
        str(model_path),
        "--input",
        str(source),
        "--output",
        str(output),
        "--quiet",
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return seconds, int(rss.group(1)) / 1024


def part_c(model_path, folder, size):
    source = make_zarr(pathlib.Path(folder) / f"in{size}.zarr", size)
    seconds, rss = run_cli(model_path, source, pathlib.Path(folder) / "c.zarr")
    return {
        "image": f"{size}x{size} uint8 Zarr (chunks 1024)",
        "input_mb": size * size / 1e6,
        "seconds": seconds,
        "mpx_per_s": size * size / 1e6 / seconds,
        "peak_rss_mib": rss,
        "note": "CLI to OME-Zarr (probabilities + pyramid), Dask threads; "
        "peak RSS by /usr/bin/time -v (main process)",
    }


def part_d(model_path, folder, size=4000):
    source = make_zarr(pathlib.Path(folder) / f"in{size}.zarr", size, seed=3)
    out = {"image": f"{size}x{size} uint8 Zarr, CLI to OME-Zarr"}
    for name, extra in (
        ("threads", []),
        ("local_cluster_2_workers", ["--workers", "2"]),
    ):
        target = pathlib.Path(folder) / f"{name}.zarr"
        seconds, rss = run_cli(model_path, source, target, *extra)
        out[name] = {
            "seconds": seconds,
            "mpx_per_s": size**2 / 1e6 / seconds,
            "peak_rss_mib_main_process": rss,
        }
    out["cluster_over_threads_time"] = (
        out["local_cluster_2_workers"]["seconds"] / out["threads"]["seconds"]
    )
    return out


def part_e(model_path, folder, size=8000):
    """The in-memory CLI path against the lazy one on one image that fits."""
    import tifffile
    import zarr

    source = make_zarr(pathlib.Path(folder) / f"e{size}.zarr", size, seed=4)
    tif = pathlib.Path(folder) / f"e{size}.tif"
    tifffile.imwrite(tif, zarr.open_array(str(source), mode="r")[:])
    old_s, old_rss = run_cli(
        model_path, tif, pathlib.Path(folder) / "e_old", "--no-overlay"
    )
    new_s, new_rss = run_cli(
        model_path, source, pathlib.Path(folder) / "e_new.zarr"
    )
    return {
        "image": f"{size}x{size} uint8",
        "in_memory_cli": {"seconds": old_s, "peak_rss_mib": old_rss},
        "lazy_cli_to_ome_zarr": {"seconds": new_s, "peak_rss_mib": new_rss},
        "lazy_over_in_memory_time": new_s / old_s,
        "lazy_over_in_memory_rss": new_rss / old_rss,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", default=["a", "b", "c", "d", "e"])
    p.add_argument("--size", type=int, default=20000, help="part (c) side")
    p.add_argument("--work", default=None, help="scratch folder (default tmp)")
    p.add_argument("--out", default=str(HERE / "results" / "dask_predict.json"))
    args = p.parse_args()
    out_path = pathlib.Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result["machine"] = machine()
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(dir=args.work) as folder:
        model, model_path = make_model(folder)
        result["model"] = {
            "depth": 2,
            "filters": 4,
            "parameters": int(model.count_params()),
        }
        for part in args.parts:
            fn = {
                "a": lambda: part_a(model),
                "b": lambda: part_b(model),
                "c": lambda: part_c(model_path, folder, args.size),
                "d": lambda: part_d(model_path, folder),
                "e": lambda: part_e(model_path, folder),
            }[part]
            result[part] = fn()
            print(part, json.dumps(result[part], indent=1), flush=True)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
