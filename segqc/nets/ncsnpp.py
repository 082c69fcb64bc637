"""NCSN++-style U-Net that scores noisy segmentation masks given their image.

The architecture follows NCSN++ of Song et al., 2021, "Score-Based Generative
Modeling through Stochastic Differential Equations" (ICLR 2021; reference code
``score_sde``, files ``models/ncsnpp.py`` and ``models/layerspp.py``):

* the noise level is embedded with random Fourier features followed by an MLP
  (:class:`~segqc.nets.embeddings.NoiseEmbedding`);
* BigGAN-style residual blocks, which also do the down- and up-sampling between
  resolutions, with the residual branch's last convolution initialised to zero
  and skip connections rescaled by ``1/sqrt(2)``;
* single-head self-attention at the lowest resolutions.

It differs from the reference in that it works for 2D and 3D alike (MONAI layer
factories), resamples in plain PyTorch (average pooling and nearest-neighbour
upsampling, or a separable ``[1, 3, 3, 1]`` FIR filter) instead of compiled
``upfirdn`` kernels, has no progressive input/output branches, and initialises
its output convolution to zero, so that an untrained network predicts zero
logits (a uniform softmax).

The network is conditioned on the image by concatenating the clean image
channels with the ``K`` noisy mask channels at the input; it returns ``K``
channels of logit noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from segqc.nets.embeddings import NoiseEmbedding

RESAMPLE_METHODS = ("avgpool", "fir")
_FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
_SKIP_SCALE = 1.0 / math.sqrt(2.0)


def _norm_act(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``silu(norm(x))``; without autograd the activation overwrites the normalised copy instead of allocating
    another (scoring spends about a sixth of its network time in SiLU; same values either way)."""
    return F.silu(norm(x), inplace=_in_place())


def _in_place() -> bool:
    """Whether blocks may overwrite their own temporaries: no autograd graph is being recorded."""
    return not torch.is_grad_enabled()


def _group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count that divides ``num_groups`` and ``channels``."""
    return nn.GroupNorm(math.gcd(num_groups, channels), channels, eps=1e-6)


def _conv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    """Convolution with stride 1 and 'same' zero padding (odd ``kernel_size``)."""
    conv_type = Conv[Conv.CONV, spatial_dims]
    return conv_type(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def _zero_init(module: nn.Module) -> nn.Module:
    """Set all parameters of ``module`` to zero and return it."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class Resample(nn.Module):
    """Parameter-free resampling by a factor of 2 along every spatial axis.

    Args:
        spatial_dims: 2 or 3.
        direction: ``"down"`` halves, ``"up"`` doubles the spatial size.
        method: ``"avgpool"`` (2x average pooling down, nearest neighbour up) or
            ``"fir"`` (separable ``[1, 3, 3, 1]`` FIR filter with zero padding, as
            in StyleGAN2 and NCSN++).
    """

    def __init__(self, spatial_dims: int, direction: str, method: str) -> None:
        super().__init__()
        if direction not in ("down", "up"):
            raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
        if method not in RESAMPLE_METHODS:
            raise ValueError(f"resample must be one of {RESAMPLE_METHODS}, got {method!r}")
        self.spatial_dims = spatial_dims
        self.direction = direction
        self.method = method
        if method == "avgpool" and direction == "down":
            self.pool = Pool[Pool.AVG, spatial_dims](kernel_size=2, stride=2)
        if method == "fir":
            taps = torch.tensor(_FIR_TAPS)
            # Down: unit DC gain. Up: gain 2 per axis, which compensates the inserted zeros.
            taps = taps / taps.sum() * (2.0 if direction == "up" else 1.0)
            self.register_buffer("taps", taps, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resample ``x``.

        Args:
            x: Feature map, shape ``(B, C, *spatial)``.

        Returns:
            Shape ``(B, C, *spatial / 2)`` for ``"down"``, ``(B, C, *spatial * 2)`` for ``"up"``.
        """
        if self.method == "avgpool":
            if self.direction == "down":
                return self.pool(x)
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self._fir(x)

    def _fir(self, x: torch.Tensor) -> torch.Tensor:
        """Filter and resample one spatial axis at a time with a single-channel kernel."""
        batch, channels, *spatial = x.shape
        h = x.reshape(batch * channels, 1, *spatial)
        conv = {
            (2, "down"): F.conv2d,
            (3, "down"): F.conv3d,
            (2, "up"): F.conv_transpose2d,
            (3, "up"): F.conv_transpose3d,
        }[(self.spatial_dims, self.direction)]
        taps = self.taps.to(dtype=x.dtype)
        for axis in range(self.spatial_dims):
            shape = [1] * self.spatial_dims
            shape[axis] = len(_FIR_TAPS)
            stride = [1] * self.spatial_dims
            stride[axis] = 2
            padding = [0] * self.spatial_dims
            padding[axis] = 1
            h = conv(h, taps.view(1, 1, *shape), stride=stride, padding=padding)
        return h.reshape(batch, channels, *h.shape[2:])


class ResnetBlockBigGAN(nn.Module):
    """BigGAN-style residual block conditioned on the noise embedding.

    ``h = conv1(dropout(act(norm1(conv0(resample(act(norm0(x)))) + dense(act(emb))))))``
    and the output is ``(shortcut(resample(x)) + h) / sqrt(2)``, where ``conv1`` starts
    at zero and ``shortcut`` is a 1x1 convolution when the channel count changes.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        out_channels: Output channels.
        embedding_size: Width of the noise embedding.
        num_groups: GroupNorm groups (reduced to a divisor of the channel count).
        dropout: Dropout probability before the last convolution.
        resample: Optional resampling applied to both branches after the first
            activation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        embedding_size: int,
        num_groups: int,
        dropout: float,
        resample: Resample | None = None,
    ) -> None:
        super().__init__()
        self.norm0 = _group_norm(in_channels, num_groups)
        self.conv0 = _conv(spatial_dims, in_channels, out_channels, 3)
        self.dense = nn.Linear(embedding_size, out_channels)
        nn.init.zeros_(self.dense.bias)
        self.norm1 = _group_norm(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _zero_init(_conv(spatial_dims, out_channels, out_channels, 3))
        self.shortcut = (
            _conv(spatial_dims, in_channels, out_channels, 1)
            if in_channels != out_channels
            else None
        )
        self.resample = resample
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Features, shape ``(B, C_in, *spatial)``.
            emb: Noise embedding, shape ``(B, embedding_size)``.

        Returns:
            Features of shape ``(B, C_out, *spatial')``, with ``spatial'`` the
            resampled size.
        """
        h = _norm_act(self.norm0, x)
        if self.resample is not None:
            h = self.resample(h)
            x = self.resample(x)
        h = self.conv0(h)
        bias = self.dense(self.act(emb))
        bias = bias.view(*bias.shape, *([1] * (h.ndim - 2)))
        h = h.add_(bias) if _in_place() else h + bias
        h = self.conv1(self.dropout(_norm_act(self.norm1, h)))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return h.add_(x).mul_(_SKIP_SCALE) if _in_place() else (x + h) * _SKIP_SCALE


class AttentionBlock(nn.Module):
    """Single-head self-attention over all spatial positions (NCSN++ ``AttnBlockpp``).

    Args:
        spatial_dims: 2 or 3.
        channels: Feature channels.
        num_groups: GroupNorm groups (reduced to a divisor of ``channels``).
    """

    def __init__(self, spatial_dims: int, channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels, num_groups)
        self.qkv = _conv(spatial_dims, channels, 3 * channels, 1)
        self.proj = _zero_init(_conv(spatial_dims, channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply attention with a residual connection.

        Args:
            x: Features, shape ``(B, C, *spatial)``.

        Returns:
            ``(x + proj(attention(norm(x)))) / sqrt(2)``, shape ``(B, C, *spatial)``.
        """
        qkv = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).unsqueeze(1)
        q, k, v = qkv.chunk(3, dim=-1)  # each (B, 1, N, C)
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.squeeze(1).transpose(1, 2).reshape(x.shape)
        return (x + self.proj(h)) * _SKIP_SCALE


def _attention_or_identity(
    use: bool, spatial_dims: int, channels: int, num_groups: int
) -> nn.Module:
    """An :class:`AttentionBlock` if ``use``, else an identity (no parameters)."""
    return AttentionBlock(spatial_dims, channels, num_groups) if use else nn.Identity()


class NCSNpp(nn.Module):
    """NCSN++-style U-Net predicting ``K`` logit-noise channels.

    Levels ``i = 0 .. len(ch_mult) - 1`` work at ``input_size / 2**i`` with
    ``nf * ch_mult[i]`` channels. Each level has ``num_res_blocks`` residual
    blocks on the way down and ``num_res_blocks + 1`` on the way up (each taking
    a U-Net skip connection); levels are joined by down/up-sampling residual
    blocks. A level has self-attention after its blocks when its resolution is in
    ``attn_resolutions``; the middle block (lowest resolution) has one whenever
    ``attn_resolutions`` is not empty, as in NCSN++.

    The input is ``concat(image, noisy_mask)`` as given: the noisy mask is used
    unscaled, so the caller should pass it at a sensible scale (e.g. a
    log-simplex point multiplied by the temperature, or standardised).

    Args:
        spatial_dims: 2 or 3.
        image_channels: Channels of the conditioning image (0 for a mask-only model).
        num_classes: Number of mask classes ``K`` (input and output channels).
        nf: Base channel count.
        ch_mult: Channel multiplier per resolution level.
        num_res_blocks: Residual blocks per level on the way down.
        attn_resolutions: Feature-map sizes (first spatial axis, relative to
            ``input_size``) at which to use self-attention.
        dropout: Dropout probability inside residual blocks.
        embedding_size: Width of the noise-level embedding (default ``4 * nf``).
        fourier_scale: Frequency scale of the Fourier features of ``log(level)``.
        resample: ``"avgpool"`` or ``"fir"``, see :class:`Resample`.
        num_groups: GroupNorm groups, reduced to a divisor of each channel count.
        input_size: Size of the first spatial axis that ``attn_resolutions``
            refers to. Other input sizes are accepted; attention stays at the
            same levels.

    Attributes:
        spatial_divisor: ``2**(len(ch_mult) - 1)``; every spatial size of the
            input must be a multiple of it.

    Raises:
        ValueError: On an invalid argument, or when an entry of
            ``attn_resolutions`` matches no level.
    """

    def __init__(
        self,
        spatial_dims: int,
        image_channels: int,
        num_classes: int,
        nf: int = 32,
        ch_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        embedding_size: int | None = None,
        fourier_scale: float = 16.0,
        resample: str = "avgpool",
        num_groups: int = 8,
        input_size: int = 64,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if image_channels < 0:
            raise ValueError(f"image_channels must be >= 0, got {image_channels}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if nf < 1 or num_res_blocks < 1 or num_groups < 1:
            raise ValueError(
                "nf, num_res_blocks and num_groups must be >= 1, got "
                f"{nf}, {num_res_blocks} and {num_groups}"
            )
        if not ch_mult or min(ch_mult) < 1:
            raise ValueError(f"ch_mult must be a non-empty list of positive ints, got {ch_mult}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if resample not in RESAMPLE_METHODS:
            raise ValueError(f"resample must be one of {RESAMPLE_METHODS}, got {resample!r}")
        num_levels = len(ch_mult)
        self.spatial_divisor = 2 ** (num_levels - 1)
        if input_size % self.spatial_divisor:
            raise ValueError(
                f"input_size {input_size} is not divisible by {self.spatial_divisor} "
                f"(2**(len(ch_mult)-1) for {num_levels} levels)"
            )
        resolutions = [input_size // 2**i for i in range(num_levels)]
        unmatched = sorted(set(attn_resolutions) - set(resolutions))
        if unmatched:
            raise ValueError(
                f"attn_resolutions {unmatched} match no level; the levels of a "
                f"{input_size}-pixel input have sizes {resolutions}"
            )
        self.spatial_dims = spatial_dims
        self.image_channels = image_channels
        self.num_classes = num_classes
        embedding_size = embedding_size if embedding_size is not None else 4 * nf

        def res_block(c_in: int, c_out: int, direction: str | None = None) -> ResnetBlockBigGAN:
            sampler = Resample(spatial_dims, direction, resample) if direction else None
            return ResnetBlockBigGAN(
                spatial_dims, c_in, c_out, embedding_size, num_groups, dropout, sampler
            )

        self.embedding = NoiseEmbedding(embedding_size, fourier_scale)
        self.conv_in = _conv(spatial_dims, image_channels + num_classes, nf, 3)

        skip_channels = [nf]
        channels = nf
        self.down_blocks = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            use_attn = resolutions[level] in attn_resolutions
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(res_block(channels, nf * mult))
                channels = nf * mult
                attns.append(_attention_or_identity(use_attn, spatial_dims, channels, num_groups))
                skip_channels.append(channels)
            self.down_blocks.append(blocks)
            self.down_attn.append(attns)
            if level < num_levels - 1:
                self.downsamplers.append(res_block(channels, channels, "down"))
                skip_channels.append(channels)

        self.mid_block0 = res_block(channels, channels)
        self.mid_attn = _attention_or_identity(
            bool(attn_resolutions), spatial_dims, channels, num_groups
        )
        self.mid_block1 = res_block(channels, channels)

        self.up_blocks = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(num_levels)):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(res_block(channels + skip_channels.pop(), nf * ch_mult[level]))
                channels = nf * ch_mult[level]
            self.up_blocks.append(blocks)
            self.up_attn.append(
                _attention_or_identity(
                    resolutions[level] in attn_resolutions, spatial_dims, channels, num_groups
                )
            )
            if level > 0:
                self.upsamplers.append(res_block(channels, channels, "up"))

        self.norm_out = _group_norm(channels, num_groups)
        self.conv_out = _zero_init(_conv(spatial_dims, channels, num_classes, 3))

    def forward(
        self, image: torch.Tensor | None, noisy_mask: torch.Tensor, level: torch.Tensor
    ) -> torch.Tensor:
        """Predict logit noise.

        Args:
            image: Clean conditioning image, shape ``(B, C_img, *spatial)``; may be
                ``None`` (or have 0 channels) when ``image_channels == 0``.
            noisy_mask: Noisy mask, shape ``(B, K, *spatial)``.
            level: Positive noise levels, shape ``(B,)`` (a 0-d tensor is broadcast).

        Returns:
            Logit noise, shape ``(B, K, *spatial)``.

        Raises:
            ValueError: If shapes do not match the network, or a spatial size is
                not divisible by :attr:`spatial_divisor`.
        """
        x = self._check_inputs(image, noisy_mask)
        if level.ndim == 0:
            level = level.expand(x.shape[0])
        if level.shape != (x.shape[0],):
            raise ValueError(f"level must have shape ({x.shape[0]},), got {tuple(level.shape)}")
        emb = self.embedding(level.to(x.dtype))

        h = self.conv_in(x)
        skips = [h]
        for level_index, (blocks, attns) in enumerate(
            zip(self.down_blocks, self.down_attn, strict=True)
        ):
            for block, attn in zip(blocks, attns, strict=True):
                h = attn(block(h, emb))
                skips.append(h)
            if level_index < len(self.downsamplers):
                h = self.downsamplers[level_index](h, emb)
                skips.append(h)

        h = self.mid_block1(self.mid_attn(self.mid_block0(h, emb)), emb)

        for level_index, (blocks, attn) in enumerate(
            zip(self.up_blocks, self.up_attn, strict=True)
        ):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            h = attn(h)
            if level_index < len(self.upsamplers):
                h = self.upsamplers[level_index](h, emb)

        return self.conv_out(_norm_act(self.norm_out, h))

    def _check_inputs(self, image: torch.Tensor | None, noisy_mask: torch.Tensor) -> torch.Tensor:
        """Validate shapes; return ``concat(image, noisy_mask)``, ``(B, C_img + K, *spatial)``."""
        expected_ndim = self.spatial_dims + 2
        if noisy_mask.ndim != expected_ndim or noisy_mask.shape[1] != self.num_classes:
            raise ValueError(
                f"noisy_mask must have shape (B, {self.num_classes}, "
                f"{', '.join(['S'] * self.spatial_dims)}), got {tuple(noisy_mask.shape)}"
            )
        spatial = tuple(noisy_mask.shape[2:])
        bad = [size for size in spatial if size % self.spatial_divisor]
        if bad:
            raise ValueError(
                f"spatial size {spatial} is not divisible by {self.spatial_divisor} "
                f"(2**(len(ch_mult)-1)); resize or pad the input"
            )
        if image is None:
            if self.image_channels:
                raise ValueError(
                    f"image is required: the network expects {self.image_channels} image channels"
                )
            return noisy_mask
        expected = (noisy_mask.shape[0], self.image_channels, *spatial)
        if tuple(image.shape) != expected:
            raise ValueError(f"image must have shape {expected}, got {tuple(image.shape)}")
        return torch.cat([image.to(noisy_mask.dtype), noisy_mask], dim=1)
