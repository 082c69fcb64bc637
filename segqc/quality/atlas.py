"""Atlas agreement: how well a predicted mask matches the masks of the most similar training images.

A register-free multi-atlas check (the atlas nearest-neighbour baseline of QC
studies): the reference cases are a sample of the correct training pairs at the
model's input size. For each new image the ``k`` most similar reference images,
by normalised cross-correlation, lend their masks as pseudo ground truths; the
Dice of the prediction with them, and how similar the neighbours are, become
features of the quality estimator (:mod:`segqc.quality.estimator`). Where the anatomy is
consistent (organs in CT) these features carry the quality; where it is not
(nuclei scattered over a tile) the estimator learns to weigh them little.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from segqc.metrics import dice_per_class, mean_dice

NEIGHBOURS = 5
# Reference values kept at most (images + masks), bounding the bundle's size (about 32 MB of float16 images).
MAX_VALUES = 2 ** 24
_BATCH = 256


def _resized(images: np.ndarray, masks: np.ndarray, spatial: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images (linear) and masks (nearest) resampled to ``spatial`` when their grid differs."""
    if images.shape[2:] == spatial:
        return images, masks
    linear = "bilinear" if len(spatial) == 2 else "trilinear"
    resized = F.interpolate(torch.as_tensor(images, dtype=torch.float32), size=spatial, mode=linear,
                            align_corners=False)
    labels = F.interpolate(torch.as_tensor(masks[:, None], dtype=torch.float32), size=spatial, mode="nearest")
    return resized.numpy(), labels[:, 0].long().numpy()


def _standardised(images: np.ndarray) -> np.ndarray:
    """Each image flattened, centred and scaled to unit norm, ``(N, D)`` float32."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    flat = flat - flat.mean(1, keepdims=True)
    return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)


class Atlas:
    """Reference (image, mask) pairs and the agreement of new predictions with them.

    Args:
        images: Reference images, ``(M, C, *spatial)``.
        masks: Their correct masks as class indices, ``(M, *spatial)``.
        num_classes: ``K``.
        neighbours: Reference cases consulted per new case.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, num_classes: int, neighbours: int = NEIGHBOURS) -> None:
        self.images = np.asarray(images, np.float16)
        self.masks = np.asarray(masks, np.uint8)
        self.num_classes = num_classes
        self.neighbours = min(neighbours, len(self.images))
        self._unit = _standardised(self.images)

    @classmethod
    def sample(cls, images: np.ndarray, masks: np.ndarray, num_classes: int, size: int, seed: int) -> Atlas:
        """At most ``size`` pairs (fewer when they would exceed :data:`MAX_VALUES`), drawn without replacement."""
        per_case = int(np.prod(images.shape[1:])) + int(np.prod(masks.shape[1:]))
        size = max(1, min(size, len(images), MAX_VALUES // per_case))
        rows = np.sort(np.random.default_rng([seed, 13]).choice(len(images), size, replace=False))
        return cls(images[rows], masks[rows], num_classes)

    def features(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Agreement of each prediction with the masks of its nearest reference images.

        Args:
            images: ``(N, C, *spatial)``, prepared like the references (resampled
                to their grid, with the masks, when the sizes differ).
            masks: Predicted class indices, ``(N, *spatial)``.

        Returns:
            ``(N, 4 + (K - 1))`` float64: similarity of the nearest and the mean of
            the ``k`` nearest, mean and best Dice over the ``k`` neighbour masks,
            then each class's Dice averaged over the neighbours.
        """
        images, masks = _resized(np.asarray(images), np.asarray(masks), self.images.shape[2:])
        rows = []
        for start in range(0, len(images), _BATCH):
            similarity = _standardised(images[start:start + _BATCH]) @ self._unit.T
            nearest = np.argsort(-similarity, axis=1)[:, :self.neighbours]
            for offset, picks in enumerate(nearest):
                mask = np.asarray(masks[start + offset])
                references = self.masks[picks].astype(np.int64)
                repeated = np.broadcast_to(mask, references.shape)
                per_class = dice_per_class(repeated, references, self.num_classes)
                dice = mean_dice(per_class, repeated, references)
                near = similarity[offset, picks]
                rows.append([near[0], near.mean(), dice.mean(), dice.max(), *per_class.mean(0)])
        return np.asarray(rows, np.float64).reshape(len(images), 4 + self.num_classes - 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The reference pairs (float16 images, uint8 masks) and settings."""
        return {"images": self.images, "masks": self.masks, "settings": np.array([self.num_classes, self.neighbours])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Atlas:
        """Inverse of :meth:`to_arrays`."""
        num_classes, neighbours = (int(v) for v in arrays["settings"])
        return cls(arrays["images"], arrays["masks"], num_classes, neighbours)
