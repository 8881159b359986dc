"""Multi-worker training throughput: 1 process against 2 local workers.

Runs ``keras_unet.training.train.train`` (the job behind ``keras-unet train``)
on the built-in synthetic cells in fresh processes, three ways, with the same
model and the same batch per worker:

- ``single``: one process, no strategy (the baseline);
- ``multi-worker x1``: one process under MultiWorkerMirroredStrategy
  (a one-worker TF_CONFIG): the cost of the strategy itself;
- ``multi-worker x2``: two worker processes on this machine (TF_CONFIG
  with two local ports): the global batch doubles, and every step
  all-reduces the gradients between the processes.

Each run times the training steps after `--warmup` steps (graph tracing,
first all-reduce) with a callback, and reports steps/s and samples/s
(global batch x steps/s; the median of `--repeats` runs), with ratios
against ``single`` of the same run.
On a machine with fewer cores than workers x threads the workers share the
cores: such a run measures that multi-worker training runs and what the
collective costs, not a speed-up.

Run: ``python benchmarks/multiworker.py --out
benchmarks/results/multiworker.json`` (about 5 minutes on 2 CPU cores;
``--input-size 572 --steps 10 --warmup 3``: about 12 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def worker(args):
    """One training process; prints its timings as JSON on the last line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from keras_unet.training.config import TrainConfig
    from keras_unet.training.train import train

    class Timer(keras.callbacks.Callback):
        times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    config = TrainConfig(
        synthetic_count=12,
        synthetic_size=256,
        depth=args.depth,
        filters=args.filters,
        input_size=args.input_size,
        batch_size=args.batch_size,
        steps=args.warmup + args.steps,
        epochs=1,
        val_fraction=0.0,
        output=args.output,
        tensorboard=False,
        verbose=0,
        distribute=args.distribute,
    )
    result = train(config, callbacks=[Timer()])
    times = Timer.times[args.warmup - 1 :]
    seconds = times[-1] - times[0]
    print(
        json.dumps(
            {
                "chief": result.chief,
                "replicas": result.replicas,
                "steps": len(times) - 1,
                "seconds": seconds,
                "loss": result.history["loss"][-1],
            }
        )
    )


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def launch(args, workers, tmp):
    """Run `workers` processes (0: one process without a strategy)."""
    hosts = [f"localhost:{p}" for p in _free_ports(max(workers, 1))]
    procs = []
    for index in range(max(workers, 1)):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        command = [
            sys.executable,
            __file__,
            "--role",
            "worker",
            "--output",
            str(tmp / f"run{workers}_{index}"),
        ] + [f"--{k.replace('_', '-')}={v}" for k, v in _settings(args).items()]
        if workers:
            env["TF_CONFIG"] = json.dumps(
                {
                    "cluster": {"worker": hosts},
                    "task": {"type": "worker", "index": index},
                }
            )
            command.append("--distribute=multi-worker")
        procs.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, text=True
            )
        )
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        if proc.returncode:
            raise SystemExit(f"worker failed ({proc.returncode})")
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


def _settings(args):
    keys = ("filters", "depth", "input_size", "batch_size", "steps", "warmup")
    return {k: getattr(args, k) for k in keys}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--role", default="main", choices=("main", "worker"))
    p.add_argument("--output", help="(worker) the run's output folder")
    p.add_argument("--distribute", default=None)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--input-size", type=int, default=188)
    p.add_argument("--batch-size", type=int, default=1, help="per worker")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="median of")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.role == "worker":
        return worker(args)

    sys.path.insert(0, str(HERE))
    from _common import machine

    report = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": os.getloadavg(),
        "settings": {**_settings(args), "repeats": args.repeats},
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, workers in (
            ("single", 0),
            ("multi-worker x1", 1),
            ("multi-worker x2", 2),
        ):
            rates = []
            for repeat in range(args.repeats):
                outputs = launch(args, workers, pathlib.Path(tmp) / str(repeat))
                chief = next(o for o in outputs if o["chief"])
                rates.append(chief["steps"] / chief["seconds"])
            steps_per_s = float(np.median(rates))
            batch = args.batch_size * chief["replicas"]
            run = {
                "name": name,
                "workers": max(workers, 1),
                "global_batch": batch,
                "steps_per_s": steps_per_s,
                "samples_per_s": steps_per_s * batch,
                "steps_per_s_each_repeat": rates,
                "final_loss": chief["loss"],
            }
            report["runs"].append(run)
            print(json.dumps(run))
    base = report["runs"][0]
    for run in report["runs"]:
        for key in ("steps_per_s", "samples_per_s"):
            run[f"{key}_vs_single"] = run[key] / base[key]
    print(json.dumps(report, indent=2))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
