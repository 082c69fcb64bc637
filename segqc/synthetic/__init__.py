"""Synthetic data: phantom (image, mask) pairs and the one library of mask corruptions."""
