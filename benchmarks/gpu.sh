#!/usr/bin/env bash
# GPU checks in one call on a lent GPU machine (see benchmarks/README.md).
#
# That machine has JAX with CUDA but no TensorFlow (and cannot install it:
# nothing can be downloaded there, and TensorFlow's wheel is far larger
# than what can be carried). So Keras runs on its JAX backend: the model,
# the weighted loss and overlap-tile prediction are backend-agnostic Keras
# code; the tf.data augmentation pipeline and the SavedModel export need
# TensorFlow and are not measured there.
#
# Prepare here (once): pip download keras, namex and optree wheels for
# Python 3.12 into .whl/ (see the device tool's README), then run this
# script on the device with .whl carried. Results go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    | tee "$OUT/nvidia.txt"
python3 -c "import jax, keras; print(jax.__version__, jax.devices(), keras.__version__)"
timeout 300 python3 benchmarks/train_speed.py --batch 1 8 \
    --precision float32 mixed_bfloat16 --steps 30 \
    --out "$OUT/train_speed_gpu.json" 2>&1 | tee "$OUT/train_speed.log"
timeout 200 python3 benchmarks/tiling.py --repeats 3 \
    --out "$OUT/tiling_gpu.json" 2>&1 | tail -40 | tee "$OUT/tiling.log"
