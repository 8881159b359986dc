#!/usr/bin/env bash
# The paper's result on the lent GPU machine, in one call (see
# benchmarks/gpu_reproduce.py for what it measures).
#
# Here, once (downloads Keras and its two missing pure/compiled helpers as
# Python 3.12 wheels into .whl/, copies the ISBI slices into .gpu/):
#     bash benchmarks/gpu_reproduce.sh prepare
# There (the device tool), e.g. with timeout_s=600:
#     run(command="bash benchmarks/gpu_reproduce.sh", carry=[".whl", ".gpu"])
# The curve lands in $OUT/gpu_reproduce.json. Extra arguments go to the
# Python script (--batch-size 8 --precision bfloat16, --minutes 8, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "prepare" ]; then
    for folder in /.whl/ /.gpu/; do
        grep -qx "$folder" .git/info/exclude 2>/dev/null \
            || echo "$folder" >> .git/info/exclude
    done
    keras_version=$(python3 -c "import keras; print(keras.__version__)")
    python3 -m pip download --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl \
        "keras==$keras_version" namex optree
    mkdir -p .gpu
    cp -r ../shared/data/isbi2012-em .gpu/
    du -sh .whl .gpu
    exit 0
fi

# On the device: JAX and the data are there, Keras comes from .whl/.
python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv || true
python3 benchmarks/gpu_reproduce.py --data .gpu/isbi2012-em \
    --out "${OUT:-benchmarks/results}/gpu_reproduce.json" "$@"
