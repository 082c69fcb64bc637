"""segqc: find failed segmentations (and anomalous table rows) without ground truth."""

__version__ = "0.1.0"
