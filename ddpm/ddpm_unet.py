"""The DDPM paper's eps-network (Ho et al. 2020, Appendix B): a PixelCNN++-style Wide-ResNet UNet.

Per resolution, `num_res_blocks` residual blocks (GroupNorm(32), SiLU, 3x3 convs, dropout between them,
the time embedding added in every block), self-attention at `attention_resolutions`, strided-conv
downsampling and nearest + conv upsampling; the up path concatenates the skips and has one more block
per resolution. At the paper's CIFAR-10 settings (the defaults, 3 channels) it has 35,746,307 parameters.
With `num_classes` K > 0 it is class-conditional as diffusers' UNet2DModel with `num_class_embeds` and DiT (Peebles &
Xie 2023) are: a learned embedding of the label, with K + 1 rows (row K: the null label of classifier-free
guidance, Ho & Salimans 2022), added to the time embedding after its MLP.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddpm.checks import DDPM_GROUPS as GROUPS
from ddpm.checks import check_ddpm_unet, check_int
from ddpm.conditioning import ClassEmbedding, add_class_embedding

PAPER_TIMESTEPS = 1000  # the paper's T: the network embeds t/T scaled back to 0..1000


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """The Transformer's sinusoidal embedding (Vaswani et al. 2017) as the paper's code writes it:
    [sin(t w_i), cos(t w_i)] with w_i = 10000^(-i / (dim/2 - 1)), i = 0..dim/2-1."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000) * torch.arange(half, device=timesteps.device) / (half - 1))
    angles = timesteps.float()[:, None] * frequencies[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels, with a residual connection: x + proj(attn(GN(x))).

    q, k and v come from one fused C -> 3C 1x1 conv (initialised as one layer, see DDPMUNet)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.projection = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # (B, 3C, H, W) -> three (B, 1 head, H*W pixels, C)
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, 1, c, h * w).transpose(-1, -2).unbind(1)
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return x + self.projection(attended.transpose(-1, -2).reshape(b, c, h, w))


class ResidualBlock(nn.Module):
    """GN -> SiLU -> conv3x3, + Linear(SiLU(temb)), GN -> SiLU -> dropout -> conv3x3; plus the (1x1-conv)
    shortcut, then self-attention if asked."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float, attention: bool):
        super().__init__()
        self.in_layers = nn.Sequential(
            nn.GroupNorm(GROUPS, in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_channels))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(GROUPS, out_channels), nn.SiLU(), nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.attention = AttentionBlock(out_channels) if attention else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.time_projection(temb)[:, :, None, None]  # one embedding per sample
        return self.attention(self.shortcut(x) + self.out_layers(h))


class DDPMUNet(nn.Module):
    """eps_theta(x_t, t/T) of Ho et al. (2020): x is (B, C, image_size, image_size), t is (B,) holding t/T; with
    num_classes K > 0, eps_theta(x_t, t/T, y) with labels y (B,) in 0..K (K: the null label; labels=None: K for
    every sample).

    The network embeds t/T * 1000, the paper's integer timesteps (T = 1000), so its time input is the same
    as the course UNet's and any num_timesteps works. Level i works at image_size / 2**i with
    hidden_size * channel_mult[i] channels. Initialised like the paper's code: Xavier-uniform weights, zero
    biases, and zero weights in the last conv of every residual block, in every attention output and in
    the output conv, so that each block starts as the identity and the untrained network predicts eps = 0.
    One difference: attention's q, k and v are one fused C -> 3C 1x1 conv, Xavier-initialised as a single
    layer, so their weights have std sqrt(2 / 4C), 1/sqrt(2) of the sqrt(2 / 2C) of the paper's separate
    C -> C q, k and v layers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_size: int = 128,
        image_size: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.1,
        num_classes: int = 0,
    ):
        super().__init__()
        check_ddpm_unet(hidden_size, image_size, channel_mult, num_res_blocks, attention_resolutions, dropout)
        self.in_channels, self.out_channels, self.hidden_size = in_channels, out_channels, hidden_size
        self.image_size, self.num_classes = image_size, check_int("num_classes", num_classes, minimum=0)
        time_dim = 4 * hidden_size

        def block(in_ch: int, out_ch: int, level: int) -> ResidualBlock:
            attention = image_size // 2**level in attention_resolutions
            return ResidualBlock(in_ch, out_ch, time_dim, dropout, attention)

        self.time_mlp = nn.Sequential(nn.Linear(hidden_size, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        # an unconditional network keeps exactly its parameters
        self.class_embedding = ClassEmbedding(num_classes, time_dim) if num_classes else None
        self.stem = nn.Conv2d(in_channels, hidden_size, 3, padding=1)

        skip_channels, channels = [hidden_size], hidden_size  # the widths of the feature maps the up path takes
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(block(channels, hidden_size * mult, level))
                channels = hidden_size * mult
                skip_channels.append(channels)
            self.down.append(blocks)
            if level < len(channel_mult) - 1:
                self.downsample.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
                skip_channels.append(channels)

        self.middle = nn.ModuleList([  # res, attn, res
            ResidualBlock(channels, channels, time_dim, dropout, attention=True),
            ResidualBlock(channels, channels, time_dim, dropout, attention=False),
        ])

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()  # from the coarsest level
        for level, mult in reversed(list(enumerate(channel_mult))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(block(channels + skip_channels.pop(), hidden_size * mult, level))
                channels = hidden_size * mult
            self.up.append(blocks)
            if level > 0:
                self.upsample.append(nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1)
                ))

        self.out = nn.Sequential(
            nn.GroupNorm(GROUPS, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, ResidualBlock):
                nn.init.zeros_(module.out_layers[-1].weight)
            elif isinstance(module, AttentionBlock):
                nn.init.zeros_(module.projection.weight)
        nn.init.zeros_(self.out[-1].weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"DDPMUNet built for image_size={self.image_size} takes {self.image_size}x{self.image_size} "
                f"images; got {tuple(x.shape[-2:])}"
            )
        temb = self.time_mlp(sinusoidal_embedding(t.reshape(-1) * PAPER_TIMESTEPS, self.hidden_size))
        temb = add_class_embedding(temb, self.class_embedding, labels, "DDPMUNet")
        h = self.stem(x)
        skips = [h]
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, temb)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        for block in self.middle:
            h = block(h, temb)
        for level, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat((h, skips.pop()), 1), temb)
            if level < len(self.upsample):
                h = self.upsample[level](h)
        return self.out(h)
