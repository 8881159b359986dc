"""Speed of overlap-tile prediction against naive one-tile-at-a-time tiling.

Measures, in one run on one machine, for a 2048x2048 and a 512x512 image:

1. `keras_unet.inference.tiled.predict_tiled` with its defaults: tile size
chosen from
   the memory budget (large tiles), tiles batched, offsets multiples of 16 so
   the result is exact;
2. the same with tiles of at most the paper's 572 px (batched, aligned;
   shrunk to what the image needs), to separate the
   effect of the tile size from that of batching;
3. naive tiling as users write it (the loop is in this file): the paper's
   572 -> 388 tiles at offsets 0, 388, 776, ..., mirror-padded with
   ``numpy.pad``, one ``predict_on_batch`` call per tile (no batching).
   388 is not a multiple of 16, so its tiles see a shifted pooling grid:
   the script reports how far its output is from the exact one (seams).

For each: warm wall time (median and minimum of `--repeats` rounds that
call the variants in turn, after a first call that traces/compiles the
model), the first ("cold") call, model calls, and computed pixels per useful
pixel (input pixels fed to the model, padded batch slots included, over
H*W; and output pixels computed over H*W). On a machine shared with other
work the minimum is the least disturbed run.

The model is the paper's (`build_unet()`, 31M parameters) unless
`--filters`/`--depth` say otherwise; weights are random (speed does not
depend on them). The script imports Keras only (no TensorFlow unless it is
the Keras backend), so it runs on a GPU machine with the JAX backend:

    KERAS_BACKEND=jax python benchmarks/tiling.py --out \
        benchmarks/results/tiling_gpu_jax.json

Run: ``python benchmarks/tiling.py`` (about 5 minutes on 2 CPU cores);
``--quick`` for a smoke run (small model, small images, seconds). Prints a
table and writes ``benchmarks/results/tiling.json``.

``--memory`` measures the constant of the tile memory rule
(`keras_unet.inference.tiling_model.ACTIVATIONS_PER_FILTER_PIXEL`): the sum of
all layer outputs of `build_unet` per first-level filter and tile pixel, for
depths 1-5, widths 8 and 64, with and without batch norm, and tiles of about 572
and 1500 px (shapes only, nothing is computed). With ``KERAS_BACKEND=jax``
it also reports XLA's peak temporary memory of a compiled inference pass
per filter and pixel (``memory_analysis()``), for 572 and 1004 px tiles.
Writes ``benchmarks/results/tiling_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import sys
import time

import numpy as np

from keras_unet.inference import tiling_model
from keras_unet.inference.tiled import predict_tiled

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without install


def machine():
    import keras
    from _common import machine as base_machine

    try:
        cores_usable = len(os.sched_getaffinity(0))
    except AttributeError:
        cores_usable = os.cpu_count()
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        ram = None
    backend = keras.backend.backend()
    info = {
        **base_machine(),
        "cores_usable": cores_usable,
        "ram_gib": None if ram is None else round(ram / 2**30, 1),
        "load_average_at_start": list(os.getloadavg()),
        "numpy": np.__version__,
        "keras": keras.__version__,
        "keras_backend": backend,
    }
    if backend == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
        info["device_kind"] = jax.devices()[0].device_kind
    elif backend == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["devices"] = [d.name for d in tf.config.list_logical_devices()]
    elif backend == "torch":
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["devices"] = [torch.cuda.get_device_name(0)]
    return info


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=-1, keepdims=True)


def naive_tiling(model, image, tile, out):
    """What users write: fixed tiles at multiples of the output size.

    Mirror-pad with numpy.pad, cut tiles at offsets 0, out, 2*out, ...,
    predict each tile alone, paste the outputs. Returns (probabilities,
    number of model calls).
    """
    m = (tile - out) // 2
    h, w = image.shape
    nh, nw = math.ceil(h / out), math.ceil(w / out)
    padded = np.pad(
        image, ((m, nh * out - h + m), (m, nw * out - w + m)), mode="reflect"
    )
    result = None
    calls = 0
    for i in range(nh):
        for j in range(nw):
            x = padded[i * out : i * out + tile, j * out : j * out + tile]
            logits = np.asarray(model.predict_on_batch(x[None, ..., None]))[0]
            calls += 1
            if result is None:
                result = np.empty((nh * out, nw * out, logits.shape[-1]))
            result[i * out : (i + 1) * out, j * out : (j + 1) * out] = softmax(
                logits.astype(np.float64)
            )
    return result[:h, :w].astype(np.float32), calls


class CountingCalls:
    """Wraps predict_on_batch of the model predict_tiled calls, to count."""

    def __init__(self, model):

        self.target = tiling_model.TilingModel.of(model).model
        self.original = self.target.predict_on_batch
        self.reset()

    def reset(self):
        self.calls = 0
        self.input_pixels = 0
        self.output_pixels = 0
        self.tile_shape = None
        self.batch = 0

    def __enter__(self):
        def counted(x):
            y = self.original(x)
            self.calls += 1
            self.input_pixels += x.shape[0] * x.shape[1] * x.shape[2]
            self.output_pixels += y.shape[0] * y.shape[1] * y.shape[2]
            self.tile_shape = tuple(int(v) for v in x.shape[1:3])
            self.batch = max(self.batch, int(x.shape[0]))
            return y

        self.target.predict_on_batch = counted
        return self

    def __exit__(self, *exc):
        del self.target.predict_on_batch  # back to the class method


def interleaved(variants, repeats):
    """Time callables round-robin: the first (cold) call, then `repeats` warm
    rounds, each round calling every variant once, so that load from other
    processes on a shared machine hits all variants alike.

    Returns {name: [cold seconds, [warm seconds], last result]}.
    """
    out = {}
    for name, fn in variants.items():
        t = time.perf_counter()
        result = fn()
        out[name] = [time.perf_counter() - t, [], result]
    for _ in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            out[name][2] = fn()
            out[name][1].append(time.perf_counter() - t)
    return out


def run_size(model, size, repeats, naive_tile, memory_budget):

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size), dtype=np.uint8)
    useful = size * size
    margin = tiling_model.TilingModel.of(model).spec.geometry.context
    naive_out = naive_tile - 2 * margin
    x = image.astype(np.float32) / 255.0

    counter = CountingCalls(model)
    stats = {}

    def tiled(name, **kwargs):
        def call():
            counter.reset()
            with counter:
                probs = predict_tiled(
                    model,
                    image,
                    memory_budget=memory_budget,
                    verbose=False,
                    **kwargs,
                )
            per_batch = tiling_model.estimate_tile_memory(
                model, counter.tile_shape
            )
            stats[name] = {
                "tile_shape": list(counter.tile_shape),
                "batch_size": counter.batch,
                "model_calls": counter.calls,
                "input_pixels_per_useful_pixel": counter.input_pixels / useful,
                "output_pixels_per_useful_pixel": counter.output_pixels
                / useful,
                "estimated_activation_gib_per_batch": counter.batch
                * per_batch
                / 2**30,
            }
            return probs

        return call

    def naive():
        probs, calls = naive_tiling(model, x, naive_tile, naive_out)
        stats[f"naive_{naive_tile}"] = {
            "tile_shape": [naive_tile, naive_tile],
            "batch_size": 1,
            "model_calls": calls,
            "input_pixels_per_useful_pixel": calls * naive_tile**2 / useful,
            "output_pixels_per_useful_pixel": calls * naive_out**2 / useful,
        }
        return probs

    variants = {
        "predict_tiled": tiled("predict_tiled"),
        f"predict_tiled_max{naive_tile}": tiled(
            f"predict_tiled_max{naive_tile}", tile_size=naive_tile
        ),
        f"naive_{naive_tile}": naive,
    }
    timings = interleaved(variants, repeats)
    exact = timings["predict_tiled"][2]
    row = {"image": [size, size]}
    for name, (cold, warm, probs) in timings.items():
        diff = np.abs(probs - exact)
        row[name] = {
            "seconds_median": statistics.median(warm),
            "seconds_min": min(warm),
            "seconds_all": warm,
            "seconds_first_call": cold,
            **stats[name],
            "max_abs_diff_to_predict_tiled": float(diff.max()),
            "fraction_of_pixels_off_by_more_than_1e-3": float(
                (diff.max(-1) > 1e-3).mean()
            ),
        }
    naive_row = row[f"naive_{naive_tile}"]
    for stat in ("median", "min"):
        row[f"speedup_over_naive_{stat}"] = (
            naive_row[f"seconds_{stat}"]
            / row["predict_tiled"][f"seconds_{stat}"]
        )
    return row


def memory_rule(out):
    """Activations per filter and tile pixel of build_unet (the rule's c)."""
    import keras

    from keras_unet.model.geometry import UNetGeometry
    from keras_unet.model.unet import build_unet

    rows = []
    for depth in (1, 2, 3, 4, 5):
        g = UNetGeometry(depth)
        for filters, batch_norm, target in [
            (f, bn, t)
            for f in (8, 64)
            for bn in (False, True)
            for t in (572, 1500)
        ]:
            t = g.round_up_tile(target)
            model = build_unet(
                (t, t, 1), depth=depth, filters=filters, batch_norm=batch_norm
            )
            total = sum(math.prod(x.output.shape[1:]) for x in model.layers)
            row = {
                "depth": depth,
                "filters": filters,
                "batch_norm": batch_norm,
                "tile": t,
                "sum_of_outputs": total / (filters * t * t),
            }
            if keras.backend.backend() == "jax" and target == 572:
                row["xla_peak_temp"] = xla_temp(model, filters, t)
            rows.append(row)
            print(row, flush=True)
    report = {"benchmark": "tiling memory rule", "machine": machine()}
    report["rows"] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


def xla_temp(model, filters, t):
    """XLA's temporary bytes of one inference pass, per filter and pixel."""
    import jax

    def forward(trainable, other, x):
        return model.stateless_call(trainable, other, x, training=False)[0]

    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]
    x = jax.ShapeDtypeStruct((1, t, t, 1), "float32")
    compiled = jax.jit(forward).lower(trainable, other, x).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    return temp / (filters * t * t * 4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: filters=4, images 512 and 256",
    )
    parser.add_argument(
        "--filters",
        type=int,
        default=None,
        help="first-level filters (64 = the paper)",
    )
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="square image sizes (default 2048 512)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="warm timed runs per variant (median)",
    )
    parser.add_argument(
        "--memory-budget-gib",
        type=float,
        default=None,
        help="predict_tiled budget (default: its own)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="measure the memory rule's constant instead (see the docstring)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.memory:
        return memory_rule(
            pathlib.Path(args.out or HERE / "results" / "tiling_memory.json")
        )
    args.out = args.out or str(HERE / "results" / "tiling.json")

    filters = args.filters or (4 if args.quick else 64)
    sizes = args.sizes or ([512, 256] if args.quick else [2048, 512])
    repeats = args.repeats or (1 if args.quick else 2)
    budget = (
        None
        if args.memory_budget_gib is None
        else int(args.memory_budget_gib * 2**30)
    )

    from keras_unet.model import geometry
    from keras_unet.model.unet import build_unet

    naive_tile = geometry.nearest_valid_input_size(572, args.depth)
    # The paper's model as build_unet() makes it: fixed 572x572 input (the
    # naive loop needs nothing else); predict_tiled re-wires it to any size.
    model = build_unet(
        (naive_tile, naive_tile, 1), depth=args.depth, filters=filters, seed=0
    )
    report = {
        "benchmark": "tiling",
        "machine": machine(),
        "config": {
            "model": f"build_unet(depth={args.depth}, filters={filters})",
            "parameters": int(model.count_params()),
            "naive_tile": naive_tile,
            "repeats": repeats,
            "memory_budget_bytes": budget
            or tiling_model.default_memory_budget(),
            "quick": args.quick,
            "image": "uniform random uint8 (content does not affect speed)",
        },
        "results": {},
    }
    print(json.dumps(report["machine"], indent=1))
    for size in sizes:
        row = run_size(model, size, repeats, naive_tile, budget)
        report["results"][str(size)] = row
        for name in (
            "predict_tiled",
            f"predict_tiled_max{naive_tile}",
            f"naive_{naive_tile}",
        ):
            r = row[name]
            print(
                f"{size:>5}px {name:<20} median {r['seconds_median']:7.2f} s "
                f"min {r['seconds_min']:7.2f} s "
                f"(first {r['seconds_first_call']:6.2f} s)  "
                f"tile {r['tile_shape'][0]}x{r['tile_shape'][1]} "
                f"batch {r['batch_size']:>2} calls {r['model_calls']:>3}  "
                f"in/useful px {r['input_pixels_per_useful_pixel']:.2f}  "
                f"out/useful px {r['output_pixels_per_useful_pixel']:.2f}  "
                f"max|diff| {r['max_abs_diff_to_predict_tiled']:.1e}"
            )
        print(
            f"{size:>5}px predict_tiled speed-up over naive: "
            f"{row['speedup_over_naive_median']:.2f}x (median), "
            f"{row['speedup_over_naive_min']:.2f}x (min)"
        )
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    from keras_unet.io.atomic import atomic_path

    out = pathlib.Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
