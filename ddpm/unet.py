"""The course UNet: minDiffusion's NaiveUnet, with the time embedding broadcast per sample.

Residual 3-conv blocks with GroupNorm(8), three down and three up levels, and a learned sine
("SIREN") embedding of t/T added at the bottleneck. At hidden_size=128 with 3 channels it has
11,349,635 parameters, like the homework's model. With `num_classes` K > 0 it is class-conditional: a learned
embedding of the label, whose row K is the null label of classifier-free guidance (Ho & Salimans 2022), is added
to the time embedding wherever that enters.
"""

import torch
import torch.nn as nn

from ddpm.checks import COURSE_GROUPS as GROUPS
from ddpm.checks import COURSE_IMAGE_SIZES as SUPPORTED_IMAGE_SIZES
from ddpm.checks import check_course_unet, check_int
from ddpm.conditioning import ClassEmbedding, add_class_embedding


class ConvBlock(nn.Module):
    """Conv3x3 -> GN -> ReLU, then two more; residual blocks return (x + conv(x)) / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = False):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1), nn.GroupNorm(GROUPS, out_channels), nn.ReLU()
        )
        self.conv = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.GroupNorm(GROUPS, out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.GroupNorm(GROUPS, out_channels), nn.ReLU(),
        )
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.main(x)
        if self.residual:
            return (x + self.conv(x)) / 1.414
        return self.conv(x)


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(ConvBlock(in_channels, out_channels), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class UpBlock(nn.Module):
    """Concatenate the skip, upsample by 2, then two conv blocks."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 2, 2),
            ConvBlock(out_channels, out_channels),
            ConvBlock(out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat((x, skip), 1))


class TimestepEmbedding(nn.Module):
    """Learned sine embedding of the scalar t/T: Linear(1, d) -> sin -> Linear(d, d)."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin1 = nn.Linear(1, dim, bias=False)
        self.lin2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.lin2(torch.sin(self.lin1(t.reshape(-1, 1))))


class UNet(nn.Module):
    """eps_theta(x_t, t/T[, y]): x is (B, C, H, W), t is (B,) holding t/T, labels y (B,) in 0..K for a network
    built with num_classes K > 0 (K: the null label, "no class"; labels=None: K for every sample).

    `image_size` fixes the bottleneck: after three 2x poolings the map is pooled by min(4, size/8),
    so one model serves every power-of-two size from 8 to 256 (the default, 32, also accepts any
    multiple of 32, as the course model does).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_size: int = 128, image_size: int = 32,
                 num_classes: int = 0):
        super().__init__()
        check_course_unet(hidden_size, image_size)
        h = hidden_size
        self.in_channels, self.out_channels, self.hidden_size = in_channels, out_channels, hidden_size
        self.image_size, self.num_classes = image_size, check_int("num_classes", num_classes, minimum=0)
        self.bottleneck_pool = min(4, image_size // 8)

        self.init_conv = ConvBlock(in_channels, h, residual=True)
        self.down1 = DownBlock(h, h)
        self.down2 = DownBlock(h, 2 * h)
        self.down3 = DownBlock(2 * h, 2 * h)
        self.to_vec = nn.Sequential(nn.AvgPool2d(self.bottleneck_pool), nn.ReLU())
        self.timestep_embedding = TimestepEmbedding(2 * h)
        # an unconditional network keeps exactly its parameters
        self.class_embedding = ClassEmbedding(num_classes, 2 * h) if num_classes else None
        self.up0 = nn.Sequential(
            nn.ConvTranspose2d(2 * h, 2 * h, self.bottleneck_pool, self.bottleneck_pool),
            nn.GroupNorm(GROUPS, 2 * h),
            nn.ReLU(),
        )
        self.up1 = UpBlock(4 * h, 2 * h)
        self.up2 = UpBlock(4 * h, h)
        self.up3 = UpBlock(2 * h, h)
        self.out = nn.Conv2d(2 * h, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        size = x.shape[-1]
        if x.shape[-2] != size or size % (8 * self.bottleneck_pool):
            fix = (f"build the UNet with image_size={size}" if x.shape[-2] == size and size in SUPPORTED_IMAGE_SIZES
                   else f"images must be square with a side in {SUPPORTED_IMAGE_SIZES}")
            raise ValueError(
                f"UNet built for image_size={self.image_size} takes square images whose side is a multiple "
                f"of {8 * self.bottleneck_pool}; got {tuple(x.shape[-2:])}: {fix}"
            )
        x = self.init_conv(x)
        down1 = self.down1(x)
        down2 = self.down2(down1)
        down3 = self.down3(down2)
        thro = self.to_vec(down3)
        temb = self.timestep_embedding(t)
        temb = add_class_embedding(temb, self.class_embedding, labels, "UNet")
        temb = temb[:, :, None, None]  # (B, 2h, 1, 1): one embedding per sample

        thro = self.up0(thro + temb)
        up1 = self.up1(thro, down3) + temb
        up2 = self.up2(up1, down2)
        up3 = self.up3(up2, down1)
        return self.out(torch.cat((up3, x), 1))
