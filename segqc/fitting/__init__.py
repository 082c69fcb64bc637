"""Fitting a score model: the training loop, its checkpoints, and where it runs (device, process group)."""
