"""Tests of the NCSN++-style image score network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segqc.nets.ncsnpp import AttentionBlock, NCSNpp, Resample

TINY = {"nf": 8, "ch_mult": (1, 2), "num_res_blocks": 1, "num_groups": 4}


def _size(spatial_dims: int) -> int:
    return 16 if spatial_dims == 2 else 8


def _inputs(
    spatial_dims: int,
    image_channels: int,
    num_classes: int,
    batch: int = 2,
    size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size = size or _size(spatial_dims)
    spatial = [size] * spatial_dims
    image = torch.randn(batch, image_channels, *spatial)
    noisy_mask = torch.randn(batch, num_classes, *spatial)
    level = torch.rand(batch) + 0.1
    return image, noisy_mask, level


def _perturb(model: torch.nn.Module, scale: float = 0.05) -> None:
    """Move every parameter away from its (partly zero) initialisation."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * scale)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("num_classes", [2, 3, 5])
@pytest.mark.parametrize("image_channels", [0, 1, 3])
def test_output_shape(spatial_dims: int, num_classes: int, image_channels: int) -> None:
    model = NCSNpp(
        spatial_dims, image_channels, num_classes, input_size=_size(spatial_dims), **TINY
    )
    image, noisy_mask, level = _inputs(spatial_dims, image_channels, num_classes)
    out = model(image, noisy_mask, level)
    assert out.shape == noisy_mask.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer: uniform softmax


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_mask_only_model_accepts_none_image(spatial_dims: int) -> None:
    model = NCSNpp(spatial_dims, 0, 3, input_size=_size(spatial_dims), **TINY)
    _perturb(model)
    image, noisy_mask, level = _inputs(spatial_dims, 0, 3)
    torch.testing.assert_close(model(None, noisy_mask, level), model(image, noisy_mask, level))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_inference_without_autograd_gives_the_same_output(spatial_dims: int, num_classes: int, layout: str) -> None:
    """Without autograd the blocks overwrite their temporaries in place; the output must not change (beyond the
    last digits where a block's output keeps the channels-last layout and the next convolution picks another
    kernel), and neither may the inputs (skip connections and the noise embedding are shared between blocks)."""
    model = NCSNpp(spatial_dims, 1, num_classes, input_size=_size(spatial_dims), **TINY).eval()
    _perturb(model, 0.3)
    image, noisy_mask, level = _inputs(spatial_dims, 1, num_classes, batch=3)
    if layout == "channels_last":
        memory = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        model = model.to(memory_format=memory)
        image = image.contiguous(memory_format=memory)
    inputs = (image.clone(), noisy_mask.clone(), level.clone())
    with_graph = model(image, noisy_mask, level)
    assert with_graph.requires_grad
    with torch.no_grad():
        without = model(image, noisy_mask, level)
    with torch.inference_mode():
        inference = model(image, noisy_mask, level)
    torch.testing.assert_close(without, with_graph.detach(), rtol=1e-5, atol=1e-4)
    assert torch.equal(without, inference)
    if layout == "contiguous":
        assert torch.equal(without, with_graph.detach())
    assert all(torch.equal(a, b) for a, b in zip(inputs, (image, noisy_mask, level), strict=True))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("resample", ["avgpool", "fir"])
@pytest.mark.parametrize("attention", [False, True])
def test_attention_and_resampling_variants(
    spatial_dims: int, resample: str, attention: bool
) -> None:
    size = _size(spatial_dims)
    lowest = size // 2
    model = NCSNpp(
        spatial_dims,
        1,
        3,
        input_size=size,
        resample=resample,
        attn_resolutions=(lowest,) if attention else (),
        **TINY,
    )
    n_attention = sum(isinstance(m, AttentionBlock) for m in model.modules())
    # one after the down block, one in the middle, one on the way up
    assert n_attention == (3 if attention else 0)
    _perturb(model)
    image, noisy_mask, level = _inputs(spatial_dims, 1, 3)
    out = model(image, noisy_mask, level)
    assert out.shape == noisy_mask.shape
    assert torch.isfinite(out).all()


def test_attention_only_at_requested_level() -> None:
    model = NCSNpp(2, 1, 2, nf=8, ch_mult=(1, 1, 2), attn_resolutions=(8,), input_size=32)
    assert all(isinstance(m, torch.nn.Identity) for m in model.down_attn[0])
    assert all(isinstance(m, torch.nn.Identity) for m in model.down_attn[1])
    assert all(isinstance(m, AttentionBlock) for m in model.down_attn[2])
    assert isinstance(model.mid_attn, AttentionBlock)
    assert [isinstance(m, AttentionBlock) for m in model.up_attn] == [True, False, False]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_resample_shapes_and_constant_preservation(spatial_dims: int) -> None:
    x = torch.ones(2, 3, *[8] * spatial_dims)
    centre = (0, 0) + (3,) * spatial_dims
    for method in ("avgpool", "fir"):
        down = Resample(spatial_dims, "down", method)(x)
        up = Resample(spatial_dims, "up", method)(x)
        assert down.shape == (2, 3, *[4] * spatial_dims)
        assert up.shape == (2, 3, *[16] * spatial_dims)
        assert down[(0, 0) + (2,) * spatial_dims].item() == pytest.approx(1.0)
        assert up[centre].item() == pytest.approx(1.0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_indivisible_size_raises(spatial_dims: int) -> None:
    model = NCSNpp(spatial_dims, 1, 2, nf=8, ch_mult=(1, 2, 2), input_size=16)
    image, noisy_mask, level = _inputs(spatial_dims, 1, 2, size=10 if spatial_dims == 2 else 6)
    with pytest.raises(ValueError, match=r"spatial size \(.*\) is not divisible by 4"):
        model(image, noisy_mask, level)


def test_invalid_configuration_raises() -> None:
    with pytest.raises(ValueError, match="input_size 30 is not divisible by 4"):
        NCSNpp(2, 1, 2, ch_mult=(1, 2, 2), input_size=30)
    with pytest.raises(ValueError, match=r"attn_resolutions \[12\] match no level"):
        NCSNpp(2, 1, 2, ch_mult=(1, 2, 2), attn_resolutions=(12,), input_size=32)
    with pytest.raises(ValueError, match="spatial_dims"):
        NCSNpp(1, 1, 2)
    with pytest.raises(ValueError, match="resample"):
        NCSNpp(2, 1, 2, resample="bilinear")


def test_mismatched_inputs_raise() -> None:
    model = NCSNpp(2, 1, 3, input_size=16, **TINY)
    image, noisy_mask, level = _inputs(2, 1, 3)
    with pytest.raises(ValueError, match="image is required"):
        model(None, noisy_mask, level)
    with pytest.raises(ValueError, match="image must have shape"):
        model(torch.randn(2, 2, 16, 16), noisy_mask, level)
    with pytest.raises(ValueError, match="noisy_mask must have shape"):
        model(image, torch.randn(2, 2, 16, 16), level)
    with pytest.raises(ValueError, match="level must have shape"):
        model(image, noisy_mask, torch.rand(3))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_depends_on_level(spatial_dims: int) -> None:
    model = NCSNpp(spatial_dims, 1, 3, input_size=_size(spatial_dims), **TINY)
    _perturb(model)
    image, noisy_mask, _ = _inputs(spatial_dims, 1, 3, batch=1)
    low = model(image, noisy_mask, torch.tensor([0.1]))
    high = model(image, noisy_mask, torch.tensor([2.0]))
    assert (low - high).abs().max() > 1e-3
    scalar = model(image, noisy_mask, torch.tensor(0.1))
    torch.testing.assert_close(scalar, low)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("resample", ["avgpool", "fir"])
def test_every_parameter_gets_a_gradient(spatial_dims: int, resample: str) -> None:
    size = _size(spatial_dims)
    model = NCSNpp(
        spatial_dims,
        1,
        3,
        nf=8,
        ch_mult=(1, 2, 2),
        num_res_blocks=2,
        attn_resolutions=(size // 4,),
        dropout=0.1,
        resample=resample,
        num_groups=4,
        input_size=size,
    )
    image, noisy_mask, level = _inputs(spatial_dims, 1, 3)
    model(image, noisy_mask, level).square().mean().backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused  # DistributedDataParallel needs every parameter in the graph

    model.zero_grad(set_to_none=True)
    _perturb(model)
    model(image, noisy_mask, level).square().mean().backward()
    zero = [name for name, p in model.named_parameters() if not torch.any(p.grad != 0)]
    assert not zero


def test_overfits_a_fixed_target() -> None:
    model = NCSNpp(2, 1, 3, nf=16, ch_mult=(1, 2), num_res_blocks=1, input_size=16)
    image, noisy_mask, level = _inputs(2, 1, 3, batch=2)
    target = torch.softmax(2.0 * torch.randn_like(noisy_mask), dim=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_fn() -> torch.Tensor:
        log_probs = F.log_softmax(model(image, noisy_mask, level), dim=1)
        return F.kl_div(log_probs, target, reduction="batchmean")

    initial = loss_fn().item()
    for _ in range(150):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
    assert loss_fn().item() < initial / 20
