"""Segment an image larger than memory into an OME-Zarr, on Dask.

``keras-unet predict`` with an output ending in ``.zarr`` (or a Zarr
input) runs `predict_volume`: the image is read lazily, predicted chunk
by chunk (`keras_unet.inference.chunked`) and written chunk by chunk
(`keras_unet.io.volumes`), on Dask's threads, a local cluster or a
running scheduler.
"""

from __future__ import annotations

import contextlib

from keras_unet.checks import check_int
from keras_unet.inference.chunked import predict_chunked
from keras_unet.io.volumes import open_volume, write_ome_zarr
from keras_unet.optional import import_extra
from keras_unet.training.run import Run

__all__ = ["predict_volume"]


def predict_volume(
    model,
    source,
    output,
    *,
    class_of_interest=None,
    threshold=None,
    labels=False,
    tta=None,
    tile_size=None,
    batch_size=None,
    chunk_size=None,
    z_chunk=1,
    scheduler=None,
    workers=None,
    progress=True,
):
    """Segment an image larger than memory into an OME-Zarr, chunk by chunk.

    Reads `source` lazily (`keras_unet.io.volumes.open_volume`: Zarr,
    OME-Zarr, TIFF, a folder of slices as a Z stack), predicts it with
    `keras_unet.inference.chunked.predict_chunked` and writes the probability of
    the class of interest (one channel ``c``) to the new OME-Zarr `output`, with
    its pyramid and, with `labels`, the pixels at or above the decision
    threshold as the label image ``labels/labels`` (`write_ome_zarr`:
    nothing is left behind if the run fails).

    Args:
        model: a `keras_unet.training.run.Run`, a run folder or the path of
            a ``.keras`` file (a Keras model in memory works on local
            threads only: workers load the model file once each).
        source: the input path.
        output: a new folder ending in ``.zarr``.
        class_of_interest: as in `predict_files`.
        threshold: as in `predict_files`, for the label image.
        labels: also write the label image.
        tta: as in `predict_files`.
        tile_size: as in `predict_files`.
        batch_size: as in `predict_files`.
        chunk_size: as in `predict_chunked`.
        z_chunk: as in `predict_chunked`.
        scheduler: the address of a running ``dask.distributed`` scheduler
            (``tcp://host:8786``); with neither it nor `workers`, Dask's
            threads in this process.
        workers: start a local cluster of this many worker processes.
        progress: show a progress bar.

    Returns:
        The output path.
    """
    if workers is not None:
        check_int(workers, "workers", 1, "worker processes of a local cluster")
    run = Run.of(model)
    decision = run.decision(class_of_interest, threshold)
    local = scheduler is None and workers is None
    image = open_volume(source)
    k = decision.class_of_interest
    probs = predict_chunked(
        # in this process the model loaded once; workers load its file
        run.model if local or run.path is None else run.path,
        image,
        chunk_size,
        z_chunk=z_chunk,
        tta=tta,
        tile_size=tile_size,
        batch_size=batch_size,
    )[..., k : k + 1]
    label_image = (probs[..., 0] >= decision.threshold).astype("uint8")
    record = dict(
        model=run.name,
        class_of_interest=k,
        tta=tta,
        decision_threshold=decision.threshold,
        source=str(source),
    )
    with _dask_compute(scheduler, workers, progress) as compute:
        return write_ome_zarr(
            probs,
            output,
            labels=label_image if labels else None,
            inputs=[source],
            compute=compute,
            metadata=record,
        )


@contextlib.contextmanager
def _dask_compute(scheduler, workers, progress):
    """``compute(*delayed)`` on a scheduler at `scheduler`, a local cluster
    of `workers` processes, or Dask's threads; with a progress bar."""
    if scheduler is None and workers is None:
        dask = import_extra("dask", "dask")
        diagnostics = import_extra("dask.diagnostics", "dask")

        def compute(*delayed):
            bar = diagnostics.ProgressBar() if progress else None
            with bar or contextlib.nullcontext():
                dask.compute(*delayed, scheduler="threads")

        yield compute
        return
    if scheduler is not None and workers is not None:
        raise ValueError(
            "Give a scheduler address or a number of local workers, not "
            f"both. Received: scheduler={scheduler!r}, workers={workers!r}"
        )
    distributed = import_extra("distributed", "dask")
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
            )
            scheduler = cluster
        client = stack.enter_context(distributed.Client(scheduler))

        def compute(*delayed):
            futures = client.compute(list(delayed))
            if progress:
                distributed.progress(futures)
            client.gather(futures)

        yield compute
