"""Pretrained segmenters whose masks segqc scores.

Load one with :func:`load_segmenter` and write its masks for a folder of
images with :func:`segment_folder`.
"""

from segqc.segmenters.base import ModuleSegmenter, Segmenter
from segqc.segmenters.class_map import ClassMap, apply_class_map, load_class_map
from segqc.segmenters.folder import SegmentRun, segment_folder
from segqc.segmenters.registry import ENTRY_POINT_GROUP, known_names, load_segmenter
from segqc.segmenters.writer import voc_palette, write_mask

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClassMap",
    "ModuleSegmenter",
    "SegmentRun",
    "Segmenter",
    "apply_class_map",
    "known_names",
    "load_class_map",
    "load_segmenter",
    "segment_folder",
    "voc_palette",
    "write_mask",
]
