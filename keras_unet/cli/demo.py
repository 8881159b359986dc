"""``keras-unet demo``: the main job."""

from __future__ import annotations

from keras_unet.cli.backend import quiet_tensorflow

__all__ = ["add_parser", "run"]


def run(args):
    quiet_tensorflow()
    from keras_unet.jobs.demo import run_demo

    print(
        "keras-unet demo: training a U-Net on "
        + (
            f"ISBI 2012 ({args.data})"
            if args.data
            else "the built-in synthetic cells"
        )
        + f", writing to {args.output}/"
    )
    report = run_demo(
        args.output, data=args.data, seed=args.seed, quick=args.quick
    )
    mean = report["mean"]
    print("\nHeld-out images:")
    for row in report["held_out"]:
        print(
            "  "
            + ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
            )
        )
    print("Mean: " + ", ".join(f"{k} {v:.4f}" for k, v in mean.items()))
    print(
        f"Took {report['training']['seconds']:.0f} s. Outputs: "
        f"{report['outputs']['model']}, {report['outputs']['training_curve']}, "
        f"{report['outputs']['predictions']}/, {args.output}/report.json"
    )
    return 0


def add_parser(sub):
    p = sub.add_parser(
        "demo",
        help="the main job: train, segment and evaluate on built-in data",
        description="Train a small U-Net on the built-in synthetic cells (or "
        "on ISBI 2012 with --data), segment held-out images, and write "
        "overlays, metrics (pixel/Rand/warping error, SEG IoU) and the "
        "training curve. A few minutes on 2 CPU cores.",
    )
    p.add_argument(
        "--output",
        default="demo_output",
        help="output folder (default demo_output)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="an ISBI 2012 folder to use instead of synthetic cells",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run (seconds) that checks the whole pipeline",
    )
    p.set_defaults(func=run)
