"""Benchmark of keras_unet.evaluation.isbi and evaluation on real ISBI 2012
slices.

Two parts, saved to ``benchmarks/results/metrics.json``:

1. Speed. `isbi_scores` on 512x512 ISBI slices: total, per measure and,
   for the warping error, per threshold, for three membrane maps (a
   blurred ground truth, a noisy one, and the image's inverted grey values,
   a poor map with many topological errors: the warping error's worst
   case). The baseline in the same run is a plain sequential Python loop
   of Fiji's warping (``simplePointWarp2d``: visit the disagreements in
   order, flip each simple one, repeat), on the same slice and threshold;
   both must give the same warped image.

2. Trivial baselines on slices 00-23 (all labelled training slices), scored
   with `evaluate_folders` exactly as a user would: float32 TIFF maps in a
   folder against the label PNGs, one common best threshold per measure.
   Maps: the ground-truth membrane blurred with a Gaussian (sigma 1 and 2
   px), and the inverted grey values ``1 - image / 255``.

Run: ``python benchmarks/metrics.py [--data ../shared/data] [--quick]``
(about a minute on 2 CPU cores; ``--quick`` times one slice and scores 4).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keras_unet.evaluation import topology  # noqa: E402
from keras_unet.evaluation.folders import evaluate_folders  # noqa: E402
from keras_unet.evaluation.isbi import (  # noqa: E402
    DEFAULT_THRESHOLDS,
    isbi_scores,
    warping_error,
)  # noqa: E402
from keras_unet.io.atomic import atomic_path  # noqa: E402
from keras_unet.io.images import read_image, write_image  # noqa: E402


def sequential_fiji_warp(source, target, confidence):
    """Fiji's loop in plain Python (the speed baseline)."""
    h, w = source.shape
    wp = w + 2
    s = np.zeros((h + 2, wp), np.uint8)
    s[1:-1, 1:-1] = source
    s = s.ravel().tolist()
    t = np.zeros((h + 2, wp), np.uint8)
    t[1:-1, 1:-1] = target
    t = t.ravel().tolist()
    conf = np.zeros((h + 2, wp), np.float32)
    conf[1:-1, 1:-1] = confidence
    conf = conf.ravel()
    lut = topology.SIMPLE_LUT.tolist()
    offs = [dy * wp + dx for dy, dx in topology.NEIGHBOUR_OFFSETS]
    # x-outer, y-inner scan of the interior, as Fiji lists mismatches
    xs, ys = np.arange(1, w + 1), np.arange(1, h + 1)
    scan = (xs[:, None] + ys[None, :] * wp).ravel()
    before = None
    while True:
        mism = [p for p in scan.tolist() if s[p] != t[p]]
        if not mism or len(mism) == before:
            break
        before = len(mism)
        order = np.argsort(-conf[mism], kind="stable")
        for p in np.asarray(mism)[order].tolist():
            code = 0
            for bit, off in enumerate(offs):
                code |= s[p + off] << bit
            if lut[code]:
                s[p] ^= 1
    return np.array(s, bool).reshape(h + 2, wp)[1:-1, 1:-1]


def maps_for(label, image, seed=0):
    membrane = (label == 0).astype(np.float64)
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(0, 1.0, label.shape), 1.5)
    return {
        "blurred_gt_sigma2": ndimage.gaussian_filter(membrane, 2.0),
        "noisy_blurred_gt": np.clip(
            ndimage.gaussian_filter(membrane, 1.5) + noise, 0, 1
        ),
        "inverted_image": 1.0 - image / 255.0,
    }


def timed(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def speed(data, slices, repeat):
    rows = []
    for i in slices:
        label = read_image(data / "label" / f"{i:02d}.png")
        image = read_image(data / "image" / f"{i:02d}.png")
        for name, prob in maps_for(label, image, i).items():
            total, _ = timed(lambda p=prob, y=label: isbi_scores(p, y), repeat)
            per_measure = {}
            for m in ("pixel", "rand", "warping"):
                per_measure[m], _ = timed(
                    lambda m=m, p=prob, y=label: isbi_scores(p, y, measures=m),
                    repeat,
                )
            per_threshold = [
                timed(lambda t=t, p=prob, y=label: warping_error(p, y, t), 1)[0]
                for t in DEFAULT_THRESHOLDS
            ]
            rows.append(
                {
                    "slice": f"{i:02d}",
                    "map": name,
                    "isbi_scores_s": total,
                    "per_measure_s": per_measure,
                    "warping_per_threshold_s": per_threshold,
                }
            )
            print(
                f"slice {i:02d} {name:18s} isbi_scores {total:6.3f} s "
                f"(pixel {per_measure['pixel']:.3f}, rand "
                f"{per_measure['rand']:.3f}, warping "
                f"{per_measure['warping']:.3f})"
            )
    return rows


def baseline_ratio(data, slice_id=0, threshold=0.5):
    label = read_image(data / "label" / f"{slice_id:02d}.png")
    image = read_image(data / "image" / f"{slice_id:02d}.png")
    out = []
    for name, prob in maps_for(label, image, slice_id).items():
        args = (label != 0, prob < threshold, np.abs(prob - threshold))
        fast_s, fast = timed(lambda a=args: topology.warp(*a), 3)
        slow_s, slow = timed(lambda a=args: sequential_fiji_warp(*a), 1)
        same = bool(np.array_equal(fast, slow))
        out.append(
            {
                "map": name,
                "threshold": threshold,
                "vectorized_s": fast_s,
                "sequential_python_s": slow_s,
                "speedup": slow_s / fast_s,
                "identical_result": same,
            }
        )
        print(
            f"warp {name:18s} t={threshold}: vectorized {fast_s:.3f} s, "
            f"sequential Python {slow_s:.2f} s ({slow_s / fast_s:.0f}x), "
            f"identical={same}"
        )
    return out


def trivial_baselines(data, slices):
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        labels = tmp / "labels"
        labels.mkdir()
        maps = {}
        for i in slices:
            label = read_image(data / "label" / f"{i:02d}.png")
            write_image(labels / f"{i:02d}.png", label)
            image = read_image(data / "image" / f"{i:02d}.png")
            membrane = (label == 0).astype(np.float64)
            maps.setdefault("blurred_gt_sigma1", {})[i] = (
                ndimage.gaussian_filter(membrane, 1.0)
            )
            maps.setdefault("blurred_gt_sigma2", {})[i] = (
                ndimage.gaussian_filter(membrane, 2.0)
            )
            maps.setdefault("inverted_image", {})[i] = 1.0 - image / 255.0
        for name, per_slice in maps.items():
            folder = tmp / name
            folder.mkdir()
            for i, prob in per_slice.items():
                write_image(folder / f"{i:02d}.tif", prob.astype(np.float32))
            t0 = time.perf_counter()
            report = evaluate_folders(folder, labels, tmp / f"{name}_out")
            elapsed = time.perf_counter() - t0
            nearest = evaluate_folders(
                folder, labels, measures="rand", predicted_membrane="nearest"
            )
            mean = report["mean"]
            keys = [k for k in mean if k not in ("curves", "thresholds")]
            results[name] = {
                "common_threshold": {k: mean[k] for k in keys},
                "rand_error_nearest": nearest["mean"]["rand_error"],
                "rand_error_nearest_threshold": nearest["mean"][
                    "rand_error_threshold"
                ],
                "curves": mean["curves"],
                "mean_of_per_image_best": {
                    k: float(np.mean([r[k] for r in report["images"]]))
                    for k in ("pixel_error", "rand_error", "warping_error")
                },
                "seconds": elapsed,
            }
            summary = ", ".join(
                f"{k.split('_')[0]} {mean[k]:.6f} (t={mean[k + '_threshold']})"
                for k in ("warping_error", "rand_error", "pixel_error")
            )
            print(
                f"{name:18s} over {len(per_slice)} slices: {summary}; Rand "
                f"with 'nearest' {results[name]['rand_error_nearest']:.6f} "
                f"[{elapsed:.1f} s]"
            )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=pathlib.Path,
        default=REPO.parent / "shared" / "data",
        help="folder holding isbi2012-em/ (default ../shared/data)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--output",
        type=pathlib.Path,
        default=REPO / "benchmarks" / "results" / "metrics.json",
    )
    args = parser.parse_args(argv)
    data = args.data / "isbi2012-em" / "train"
    if not data.is_dir():
        raise SystemExit(f"ISBI data not found under {args.data}")
    timing_slices = [0] if args.quick else [0, 7, 15]
    score_slices = range(4) if args.quick else range(24)

    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
            "note": "shared 2-core machine: absolute times are noisy; the "
            "speedup is measured against the baseline in the same run",
        },
        "thresholds": list(DEFAULT_THRESHOLDS),
        "speed": speed(data, timing_slices, repeat=1 if args.quick else 3),
        "warp_vs_sequential_python": baseline_ratio(data),
        "trivial_baselines_isbi_00_23": trivial_baselines(data, score_slices),
    }
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
