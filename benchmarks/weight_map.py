"""Benchmark: the fast exact weight map against the per-cell reference.

The reference is the obvious implementation of the paper's border term,
written here and not imported from keras_unet: one full-image Euclidean
distance transform per cell (``scipy.ndimage.distance_transform_edt(
instances != i)``), keeping the two smallest distances per pixel with a
running minimum (no (cells, H, W) stack, so it is not slowed down by
memory). For the full weight map the reference adds its own separation
(grey-value morphology: a cell pixel becomes background if its 3x3
neighbourhood holds another non-zero id) and per-image class balance.

Ours: ``keras_unet.data.weight_maps.border_weights`` (per-cell transforms
restricted to the cell's bounding box grown by the distance beyond which the
term is below tol = 1e-6) and ``keras_unet.data.weight_maps.unet_weight_map``.

Images: the DSB 2018 nuclei mask (125 nuclei, ../shared/data), a 512x512
synthetic image with about 64 cells (``synthetic_cells`` at 256 px, zoomed
2x), and a 512x512 ``synthetic_cells`` image (about 240 cells).

Prints a table and writes benchmarks/results/weight_map.json. Takes about
a minute on 2 CPU cores.

    python benchmarks/weight_map.py [--repeats-ref 5] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import numpy as np
import scipy
from scipy import ndimage

from keras_unet.data.synthetic import synthetic_cells
from keras_unet.data.weight_maps import border_weights, unet_weight_map
from keras_unet.io.atomic import atomic_path
from keras_unet.io.images import read_image

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(
    os.environ.get("KERAS_UNET_SHARED_DATA", REPO.parent / "shared" / "data")
)
RESULT = REPO / "benchmarks" / "results" / "weight_map.json"
W0, SIGMA = 10.0, 5.0


# --- the reference ---------------------------------------------------------


def reference_border(instances, w0=W0, sigma=SIGMA):
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    for i in np.unique(instances):
        if i == 0:
            continue
        d = ndimage.distance_transform_edt(instances != i)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return np.where(instances == 0, term, 0.0)


def reference_separate(instances):
    inst = instances.astype(np.int64)
    big = int(inst.max()) + 1  # (scipy passes cval as a float: keep small)
    hi = ndimage.grey_dilation(inst, size=(3, 3), mode="constant", cval=0)
    lo = ndimage.grey_erosion(
        np.where(inst == 0, big, inst), size=(3, 3), mode="constant", cval=big
    )
    touching = (inst != 0) & ((hi != inst) | (lo != inst))
    return np.where(touching, 0, inst)


def reference_weight_map(instances):
    sep = reference_separate(instances)
    fg = sep != 0
    n, n_fg = fg.size, int(fg.sum())
    k = int(n_fg > 0) + int(n_fg < n)
    wc = np.where(fg, n / (k * max(n_fg, 1)), n / (k * max(n - n_fg, 1)))
    return wc + reference_border(sep)


# --- timing ----------------------------------------------------------------


def _clock(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def compare(reference, ours, repeats_ref, repeats):
    """Interleaved timings: one reference run, then a block of ours, ...

    Both run once untimed first (warm-up). Wall-clock and process CPU time
    are recorded; on a shared machine CPU time is the steadier of the two
    (both implementations are single-threaded).
    """
    ref_out, ours_out = reference(), ours()
    t = {k: [] for k in ("ref_wall", "ref_cpu", "ours_wall", "ours_cpu")}
    per_block = max(1, repeats // repeats_ref)
    for _ in range(repeats_ref):
        _, w, c = _clock(reference)
        t["ref_wall"].append(w)
        t["ref_cpu"].append(c)
        for _ in range(per_block):
            _, w, c = _clock(ours)
            t["ours_wall"].append(w)
            t["ours_cpu"].append(c)
    med = {k: statistics.median(v) for k, v in t.items()}
    timing = {
        "reference_median_wall_s": med["ref_wall"],
        "reference_median_cpu_s": med["ref_cpu"],
        "ours_median_wall_s": med["ours_wall"],
        "ours_median_cpu_s": med["ours_cpu"],
        "reference_runs": len(t["ref_wall"]),
        "ours_runs": len(t["ours_wall"]),
        "speedup_wall": med["ref_wall"] / med["ours_wall"],
        "speedup_cpu": med["ref_cpu"] / med["ours_cpu"],
    }
    return ref_out, ours_out, timing


def machine():
    model = platform.processor() or "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "load_average_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "note": "shared 2-core machine; other jobs may run concurrently",
    }


def cases():
    mask = read_image(DATA / "stardist-dsb2018-nuclei-2d" / "mask.tif")
    yield "dsb2018_nuclei_512", mask
    _, small = synthetic_cells(1, size=256, seed=0)
    yield "synthetic_512_zoomed", np.kron(small[0], np.ones((2, 2), np.int32))
    _, dense = synthetic_cells(1, size=512, seed=0)
    yield "synthetic_512_dense", dense[0]


def run_case(name, instances, repeats_ref, repeats):
    n_cells = len(np.unique(instances)) - int((instances == 0).any())
    ref_b, our_b, time_b = compare(
        lambda: reference_border(instances),
        lambda: border_weights(instances),
        repeats_ref,
        repeats,
    )
    ref_w, our_w, time_w = compare(
        lambda: reference_weight_map(instances),
        lambda: unet_weight_map(instances),
        repeats_ref,
        repeats,
    )
    big_b = ref_b > 1e-3
    big_w = reference_border(reference_separate(instances)) > 1e-3
    return {
        "image": name,
        "shape": list(instances.shape),
        "cells": n_cells,
        "border_term": {
            **time_b,
            "max_abs_dev_where_term_gt_1e-3": float(
                np.abs(our_b - ref_b)[big_b].max()
            ),
            "max_abs_dev_anywhere": float(np.abs(our_b - ref_b).max()),
            "pixels_with_term_gt_1e-3": int(big_b.sum()),
        },
        "weight_map": {
            **time_w,
            "max_abs_dev_where_term_gt_1e-3": float(
                np.abs(our_w - ref_w)[big_w].max()
            ),
            "max_abs_dev_anywhere": float(np.abs(our_w - ref_w).max()),
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-ref", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    results = {
        "benchmark": "weight_map",
        "parameters": {"w0": W0, "sigma": SIGMA, "tol": 1e-6},
        "machine": machine(),
        "cases": [
            run_case(name, inst, args.repeats_ref, args.repeats)
            for name, inst in cases()
        ],
    }
    results["machine"]["load_average_after"] = list(os.getloadavg())
    print(
        f"{'image':22s} {'cells':>5s} {'part':11s} {'ref s':>6s} "
        f"{'ours s':>7s} {'x wall':>7s} {'x cpu':>7s} {'max dev':>9s}"
    )
    for case in results["cases"]:
        for part in ("border_term", "weight_map"):
            r = case[part]
            print(
                f"{case['image']:22s} {case['cells']:5d} {part:11s} "
                f"{r['reference_median_wall_s']:6.3f} "
                f"{r['ours_median_wall_s']:7.4f} "
                f"{r['speedup_wall']:6.1f}x {r['speedup_cpu']:6.1f}x "
                f"{r['max_abs_dev_where_term_gt_1e-3']:9.2e}"
            )
    with atomic_path(RESULT) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
