"""Segmentation metrics against ground truth (MONAI) and their summaries.

Empty-mask convention (MONAI's ``ignore_empty=False``): for a class absent from
the ground truth, Dice is 1 when the prediction is empty too and 0 otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return torch.nn.functional.one_hot(tensor, num_classes).movedim(-1, 0)[None].float()


def dice_per_class(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of each foreground class (1..K-1).

    Args:
        prediction: Predicted class indices, ``(*spatial)``.
        truth: Ground-truth class indices, same shape.
        num_classes: ``K`` including background.

    Returns:
        Dice per foreground class, ``(K-1,)``.
    """
    if np.shape(prediction) != np.shape(truth):
        raise ValueError(f"prediction {np.shape(prediction)} and truth {np.shape(truth)} differ in shape")
    dice = compute_dice(_one_hot(prediction, num_classes), _one_hot(truth, num_classes),
                        include_background=False, ignore_empty=False)
    return dice[0].numpy().astype(np.float64)


def mean_dice(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in the prediction or the truth (1.0 if none)."""
    present = [k for k in range(1, num_classes) if (np.asarray(prediction) == k).any() or (np.asarray(truth) == k).any()]
    if not present:
        return 1.0
    per_class = dice_per_class(prediction, truth, num_classes)
    return float(np.mean([per_class[k - 1] for k in present]))
