"""DeepLabV3 segmenters from ``torchvision.models.segmentation`` (Pascal VOC classes).

Weights come from ``--weights PATH`` (a state dict) or from torchvision's
download cache when the file is already there; nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segqc.errors import InputError, SchemaError
from segqc.segmenters.base import (
    OPTIONS_OPTION,
    WEIGHTS_OPTION,
    ModuleSegmenter,
    load_into,
    load_state_dict,
    read_options,
)

BUILDERS = {
    "deeplabv3_mobilenet_v3_large": "DeepLabV3_MobileNet_V3_Large_Weights",
    "deeplabv3_resnet50": "DeepLabV3_ResNet50_Weights",
    "deeplabv3_resnet101": "DeepLabV3_ResNet101_Weights",
}
"""Builder name in ``torchvision.models.segmentation`` -> its weights enum."""
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CLASSIFIER = "classifier.4.weight"
_OPTIONS = ("class_names",)


class DeepLabSegmenter(ModuleSegmenter):
    """DeepLabV3 on RGB images normalised like ImageNet."""

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Scale to ``[0, 1]`` and normalise with the ImageNet mean / std.

        Args:
            images: ``(B, C, H, W)``, ``C`` = 1 (grey, repeated to RGB), 3 (RGB)
                or 4 (RGBA, alpha dropped). Images whose maximum exceeds 1 are
                divided by 255 (by their maximum when it exceeds 255).

        Returns:
            ``(B, 3, H, W)``.

        Raises:
            SchemaError: Another channel count.
        """
        channels = images.shape[1]
        if channels not in (1, 3, 4):
            raise SchemaError(f"{self.name}: images have {channels} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
        images = images.expand(-1, 3, -1, -1) if channels == 1 else images[:, :3]
        peak = images.amax(dim=(1, 2, 3), keepdim=True)
        scale = torch.where(peak > 255, peak, torch.where(peak > 1, 255.0, 1.0))
        mean = torch.tensor(_IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
        return (images / scale - mean) / std


def voc_class_names(builder: str) -> list[str]:
    """Class names from the torchvision weights' metadata (``__background__`` -> ``background``)."""
    import torchvision.models.segmentation as segmentation

    categories = getattr(segmentation, BUILDERS[builder]).DEFAULT.meta.get("categories")
    if not categories or len(categories) != len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return [name.strip("_") for name in categories]


def cached_weights(builder: str) -> Path:
    """Where torchvision keeps the downloaded default weights of ``builder`` (the file may not exist)."""
    import torchvision.models.segmentation as segmentation

    url = getattr(segmentation, BUILDERS[builder]).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_deeplab(builder: str, weights: Path | None, options: Path | None) -> DeepLabSegmenter:
    """Build a DeepLabV3 model and load its weights.

    Args:
        builder: A key of :data:`BUILDERS`.
        weights: A state dict file of ``torchvision.models.segmentation.<builder>``;
            ``None`` uses torchvision's cached download when present.
        options: Optional options file; ``{"class_names": [...]}`` for a model
            fine-tuned on other classes (their count sets ``num_classes``).

    Returns:
        The segmenter, on the CPU.

    Raises:
        InputError: No weights given and none cached.
        SchemaError: The state dict has another class count or does not fit the model.
    """
    import torchvision.models.segmentation as segmentation

    class_names = read_options(options, _OPTIONS, builder).get("class_names") or voc_class_names(builder)
    if weights is None:
        weights = cached_weights(builder)
        if not weights.is_file():
            raise InputError(f"{builder}: no weights; provide {WEIGHTS_OPTION} PATH (a state_dict of "
                             f"torchvision.models.segmentation.{builder}) or place {weights.name} in "
                             f"{weights.parent} (torchvision's cache; segqc never downloads)")
    state = {key: value for key, value in load_state_dict(weights, builder).items()
             if not key.startswith("aux_classifier.")}
    found = state.get(_CLASSIFIER)
    if found is not None and found.shape[0] != len(class_names):
        raise SchemaError(f"{weights}: state_dict has {found.shape[0]} classes, expected {len(class_names)} for "
                          f"{builder}"
                          + ("" if options else f" (Pascal VOC); give other class names with {OPTIONS_OPTION} FILE"))
    network = getattr(segmentation, builder)(weights=None, weights_backbone=None, num_classes=len(class_names),
                                             aux_loss=False)
    load_into(network, state, weights, builder)
    return DeepLabSegmenter(network, class_names, spatial_dims=2, name=builder)
