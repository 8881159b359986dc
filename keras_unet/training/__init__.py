"""Training: the settings, the recipes, the callbacks, the run folder,
distribution, `model.fit` of a run, the decision calibrated on the
validation images, the run's record (`Run`) and the job `train`."""
