"""Prediction: the overlap-tile plan, tiled prediction, test-time augmentation,
and the Dask path for arrays larger than memory."""
