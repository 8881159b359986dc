"""``keras-unet evaluate``."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def run(args):
    from keras_unet.jobs.evaluate import evaluate_predictions

    invert = {"auto": None, "yes": True, "no": False}[args.invert]
    report = evaluate_predictions(
        args.predictions,
        args.labels,
        args.output,
        invert=invert,
        overwrite=args.overwrite,
    )
    mean = report.get("mean", {})
    shown = {k: v for k, v in mean.items() if isinstance(v, float)}
    print(
        "Mean over images: "
        + ", ".join(f"{k} {v:.5g}" for k, v in shown.items())
    )
    if args.output:
        print(f"Wrote {args.output}/metrics.json and metrics.csv")
    return 0


def add_parser(sub):
    p = sub.add_parser(
        "evaluate",
        help="pixel, Rand and warping error of probability maps",
        description="Score a folder of probability maps (from keras-unet "
        "predict) against a folder of labels (0 = membrane/background), as "
        "the ISBI 2012 challenge did; writes metrics.json and metrics.csv.",
    )
    p.add_argument("--predictions", required=True, help="folder of maps")
    p.add_argument("--labels", required=True, help="folder of labels")
    p.add_argument("--output", default=None, help="folder for the report")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier report in --output",
    )
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="maps are cell probabilities (yes) or membrane (no); "
        "auto reads predictions.json",
    )
    p.set_defaults(func=run)
