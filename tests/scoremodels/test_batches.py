"""as_pairs checks shapes; in_batches gives each case the same results whatever batch it falls in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segqc.errors import SchemaError
from segqc.scoremodels import image as image_module
from segqc.scoremodels.batches import as_pairs, in_batches

CPU = torch.device("cpu")


@pytest.mark.parametrize(("image_shape", "mask_shape"), [((3, 1, 8, 8), (3, 8, 8)), ((2, 2, 4, 6, 5), (2, 4, 6, 5))])
def test_as_pairs_gives_float_images_and_integer_masks(image_shape, mask_shape) -> None:
    images, masks = as_pairs(np.ones(image_shape, np.uint8), np.ones(mask_shape, np.int32).tolist())
    assert images.dtype == torch.float32 and masks.dtype == torch.int64
    assert tuple(images.shape) == image_shape and tuple(masks.shape) == mask_shape


@pytest.mark.parametrize(("image_shape", "mask_shape"), [
    ((3, 1, 8, 8), (2, 8, 8)),        # another number of cases
    ((3, 1, 8, 8), (3, 8, 7)),        # another spatial shape
    ((3, 1, 8, 8), (3, 1, 8, 8)),     # a channel axis on the masks
    ((3, 8, 8), (3, 8)),              # images without a channel axis
    ((1, 1, 1, 2, 2, 2), (1, 1, 2, 2, 2)),  # 4 spatial axes
])
def test_as_pairs_rejects_shapes_that_do_not_pair_up(image_shape, mask_shape) -> None:
    with pytest.raises(SchemaError, match=r"expected images \(N, C, \*spatial\).*got"):
        as_pairs(np.zeros(image_shape), np.zeros(mask_shape, np.int64))


class Recorder(nn.Module):
    """A small convolution whose outputs per case depend only on that case; records the batch shapes it sees."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.conv = conv(2, 3, 3, padding=1)
        self.dropout = nn.Dropout(0.5)
        self.seen: list[tuple[int, ...]] = []

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(tuple(images.shape))
        features = self.dropout(self.conv(torch.cat([images, masks[:, None].float()], 1)))
        return features.flatten(1).mean(1), features.amax(1)


def run(model: Recorder, batch_size: int, images: torch.Tensor, masks: torch.Tensor):
    return model(images, masks)


def inputs(count: int, spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    spatial = (12, 10) if spatial_dims == 2 else (6, 5, 4)
    return (torch.rand(count, 1, *spatial, generator=generator),
            torch.randint(0, 3, (count, *spatial), generator=generator))


def concatenated(outputs: list) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.cat(parts) for parts in zip(*outputs))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_padding_rows_are_dropped_and_every_pass_has_the_full_batch_shape(spatial_dims: int) -> None:
    torch.manual_seed(0)
    model = Recorder(spatial_dims).train()
    images, masks = inputs(7, spatial_dims)
    outputs = in_batches(model, run, (images, masks), 3, CPU)
    assert [len(part[0]) for part in outputs] == [3, 3, 1]
    assert all(shape[0] == 3 for shape in model.seen) and len(model.seen) == 3
    assert not model.training  # eval mode: dropout off, so results are reproducible


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_case_gets_the_same_results_whatever_its_batch(spatial_dims: int) -> None:
    torch.manual_seed(0)
    model = Recorder(spatial_dims)
    images, masks = inputs(7, spatial_dims)
    whole = concatenated(in_batches(model, run, (images, masks), 4, CPU))
    assert whole[0].shape == (7,) and whole[1].shape == (7, *images.shape[2:])
    for start, stop in [(0, 1), (2, 5), (4, 7), (6, 7)]:  # alone, straddling batches, the padded tail
        part = concatenated(in_batches(model, run, (images[start:stop], masks[start:stop]), 4, CPU))
        for got, expected in zip(part, whole):
            torch.testing.assert_close(got, expected[start:stop], rtol=0, atol=0)


def test_cases_are_split_into_passes_of_the_planned_size(monkeypatch) -> None:
    """When a batch is too big for one pass, a short batch is padded to a whole number of passes only."""
    monkeypatch.setattr(image_module, "PASS_VOXELS", 2 * 120)  # two 12 x 10 cases per pass
    seen = []
    images, masks = inputs(5, 2)

    def record(model, batch_size, batch_images, batch_masks):
        seen.append(len(batch_images))
        return batch_images.flatten(1).sum(1)

    outputs = in_batches(nn.Identity(), record, (images, masks), 4, CPU)
    assert seen == [4, 2]  # the last case is padded to one pass of two, not to a batch of four
    torch.testing.assert_close(torch.cat(outputs), images.flatten(1).sum(1))


def test_images_reach_run_channels_last_and_masks_as_they_are() -> None:
    formats = []
    images, masks = inputs(2, 2)
    images = torch.cat([images, 1 - images], 1)  # two channels: a one-channel tensor is trivially channels-last
    assert not images.is_contiguous(memory_format=torch.channels_last)

    def record(model, batch_size, batch_images, batch_masks):
        formats.append((batch_images.is_contiguous(memory_format=torch.channels_last), batch_masks.dtype))
        return batch_masks.flatten(1).float().mean(1)

    out = in_batches(nn.Identity(), record, (images, masks), 2, CPU)
    assert formats == [(True, torch.int64)]
    torch.testing.assert_close(out[0], masks.flatten(1).float().mean(1))
