"""Data-parallel training: the tf.distribute strategies of `--distribute`.

``mirrored`` uses every local GPU; ``multi-worker`` the machines named in
``TF_CONFIG`` (checked by `check_tf_config`), with a work-around for Keras
3's reduction of whole batches (keras-team/keras#20585). TensorFlow only.
"""

from __future__ import annotations

import json
import os

import keras

__all__ = ["check_tf_config", "make_strategy", "multi_worker_strategy"]


def make_strategy(config):
    """The tf.distribute strategy of ``config.distribute``, else None.

    `train` calls it first: MultiWorkerMirroredStrategy must be set up
    before TensorFlow runs any op.
    """
    if not config.distribute:
        return None
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"distribute={config.distribute!r} uses tf.distribute and needs "
            "the TensorFlow backend (KERAS_BACKEND=tensorflow). Received: "
            f"backend={keras.backend.backend()!r}"
        )
    if config.distribute == "multi-worker":
        return multi_worker_strategy()
    import tensorflow as tf

    # All local GPUs; without GPUs, all (logical) CPU devices.
    devices = tf.config.list_logical_devices("GPU") or (
        tf.config.list_logical_devices("CPU")
    )
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def multi_worker_strategy():
    """MultiWorkerMirroredStrategy from ``TF_CONFIG``, ready for ``fit``.

    Checks ``TF_CONFIG`` (`check_tf_config`) and works around Keras 3's
    reduction of whole batches (`_reduce_leaf_by_leaf`). Create it first in
    the program, before TensorFlow runs any op; TensorFlow backend only.
    """
    check_tf_config(os.environ.get("TF_CONFIG"))
    import tensorflow as tf

    return _reduce_leaf_by_leaf(tf.distribute.MultiWorkerMirroredStrategy())


def _reduce_leaf_by_leaf(strategy):
    """`strategy` with a ``reduce`` that Keras 3's ``fit`` can use.

    Keras (3.15) reduces a whole ``(x, y, w)`` batch in one
    ``strategy.reduce`` call, and scalar logs along axis 0; with several
    workers MultiWorkerMirroredStrategy refuses both (keras-team/keras
    issue 20585). This reduces each tensor on its own, scalars without an
    axis: the same values, in calls the strategy accepts.
    """
    import tensorflow as tf

    reduce = strategy.reduce

    def reduce_each(reduce_op, value, axis=None):
        def one(v):
            rank = strategy.experimental_local_results(v)[0].shape.rank
            return reduce(reduce_op, v, axis if rank else None)

        return tf.nest.map_structure(one, value)

    strategy.reduce = reduce_each
    return strategy


_TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


def check_tf_config(text):
    """The parsed ``TF_CONFIG`` of a multi-worker run, checked.

    TensorFlow's format: the cluster's ``"worker"`` (and optional
    ``"chief"``) addresses, and this process's task type and index.

    Examples:
        >>> check_tf_config(_TF_CONFIG_EXAMPLE)["task"]
        {'type': 'worker', 'index': 0}
    """
    if not text:
        raise ValueError(
            "distribute='multi-worker' needs the TF_CONFIG environment "
            "variable on every machine, e.g. TF_CONFIG="
            f"'{_TF_CONFIG_EXAMPLE}' (see docs/scaling.md)."
        )
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        hosts = cluster[task["type"]]
        ok = task["type"] in ("chief", "worker") and (
            0 <= task["index"] < len(hosts)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(
            "TF_CONFIG must be JSON naming the cluster's worker addresses "
            "and this task (type 'worker' or 'chief', index into its list), "
            f"e.g. '{_TF_CONFIG_EXAMPLE}'. Received: TF_CONFIG={text!r}"
        )
    return tf_config
