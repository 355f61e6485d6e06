"""GRAM's discriminator: a residual CoordConv encoder that scores realism and predicts pose.

    img [B, 3, N, N] -> fromRGB (1x1 conv)      -> [B, c0, N, N]
                     -> log2(N) - 1 residual blocks, each halving the size -> [B, C, 2, 2]
                     -> final 2x2 conv           -> [B, 3] = (logit, phi, theta)

Channel widths follow docs/design.md §5: a stage whose level is i (i = 13 - log2(N) .. 12) has
min(max_channels, 2^i) channels. With the default max_channels=400 the module names, shapes and
state_dict order are those of the released discriminator, so released weights load with
strict=True. All convolutions keep PyTorch's default init (the released behaviour).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

RELEASED_MAX_CHANNELS = 400   # channel cap of the released discriminator
TOP_LEVEL = 12                # the last block outputs min(cap, 2^12) channels
FIRST_LEVEL_OFFSET = 13       # fromRGB has min(cap, 2^(13 - log2(N))) channels
LEAKY_SLOPE = 0.2             # negative slope of every LeakyReLU
FINAL_SIZE = 2                # spatial size reached by the blocks; the final conv kernel
NUM_OUTPUTS = 3               # realism logit + camera_pos (phi, theta)
MIN_IMG_SIZE, MAX_IMG_SIZE = 16, 512  # supported input resolutions (powers of 2)
MINIBATCH_STD_EPS = 1e-8      # added to the variance before the square root (gradient at 0)


def add_coords(x):
    """Append two coordinate channels in [-1, 1] after the input channels.

    Args:
        x: [B, C, H, W] with H, W >= 2.
    Returns:
        [B, C + 2, H, W]; channel C varies along the height axis (-1 at the top row, 1 at the
        bottom row), channel C + 1 along the width axis (-1 left, 1 right).
    """
    batch, _, height, width = x.shape
    rows = torch.arange(height, dtype=x.dtype, device=x.device) / (height - 1) * 2 - 1  # [H]
    cols = torch.arange(width, dtype=x.dtype, device=x.device) / (width - 1) * 2 - 1    # [W]
    row_channel = rows.view(1, 1, height, 1).expand(batch, 1, height, width)
    col_channel = cols.view(1, 1, 1, width).expand(batch, 1, height, width)
    return torch.cat([x, row_channel, col_channel], dim=1)


class CoordConv(nn.Module):
    """Conv2d over the input plus two coordinate channels (see `add_coords`)."""

    def __init__(self, in_channels, out_channels, kernel_size, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 2, out_channels, kernel_size, padding=padding)

    def forward(self, x):
        """x: [B, in_channels, H, W] -> [B, out_channels, H', W']."""
        return self.conv(add_coords(x))


class ResidualCoordConvBlock(nn.Module):
    """Two 3x3 CoordConvs with a residual connection, both paths downsampled by 2.

    out = (avgpool(network(x)) + proj(avgpool(x))) / sqrt(2), where proj is a 1x1 conv present
    only when in_channels != out_channels (identity otherwise).
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.network = nn.Sequential(
            CoordConv(in_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
            CoordConv(out_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
        )
        self.proj = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x):
        """x: [B, in_channels, H, W] -> [B, out_channels, H/2, W/2]."""
        y = F.avg_pool2d(self.network(x), 2)
        skip = F.avg_pool2d(x, 2)
        if self.proj is not None:
            skip = self.proj(skip)  # 1x1 conv commutes with the average pooling
        return (y + skip) / math.sqrt(2)


def append_minibatch_std(x, group_size):
    """Append the mean standard deviation across groups of images as one channel.

    Args:
        x: [B, C, H, W] features; B a multiple of the group size (or smaller than it).
        group_size: images per group G.
    Returns:
        [B, C + 1, H, W]; channel C holds, for every image, the std of its features over its group
        averaged over the non-batch dimensions (the same value at every pixel). Image b belongs
        to group b // G.
    """
    batch, _, height, width = x.shape
    group = min(group_size, batch)
    if batch % group:
        raise ValueError(f"minibatch std: batch of {batch} images is not a multiple of the group size "
                         f"{group}; pick a batch size divisible by it")
    grouped = x.reshape(batch // group, group, -1)                               # [B/G, G, D]
    std = torch.sqrt(grouped.var(dim=1, unbiased=False) + MINIBATCH_STD_EPS)    # [B/G, D]
    std = std.mean(dim=1).repeat_interleave(group)                               # [B]
    std_channel = std.view(batch, 1, 1, 1).expand(batch, 1, height, width)
    return torch.cat([x, std_channel], dim=1)


class AdapterBlock(nn.Module):
    """fromRGB: 1x1 conv from image channels to the first feature width, then LeakyReLU."""

    def __init__(self, out_channels, img_channels=3):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(img_channels, out_channels, 1), nn.LeakyReLU(LEAKY_SLOPE))

    def forward(self, img):
        """img: [B, img_channels, H, W] -> [B, out_channels, H, W]."""
        return self.model(img)


class GramDiscriminator(nn.Module):
    """Realism logit and camera pose prediction for images of one resolution.

    Args:
        img_size: input resolution N, a power of 2 in [16, 512].
        img_channels: channels of the input image.
        max_channels: channel cap (released: 400). A smaller cap gives a slim discriminator
            for CPU training; it replaces 400 everywhere, including the final conv's input.
        minibatch_std_group: 0 (released: off) or a group size G: before the final conv, one
            channel holding the feature standard deviation across each group of G images is
            appended (StyleGAN's minibatch standard deviation), so the discriminator can see
            how varied a batch is (a common counter to mode collapse). The batch size must
            be a multiple of G (or smaller than G: then the whole batch is one group).
    """

    def __init__(self, img_size, img_channels=3, max_channels=RELEASED_MAX_CHANNELS, minibatch_std_group=0):
        super().__init__()
        valid_sizes = [2 ** k for k in range(int(math.log2(MIN_IMG_SIZE)), int(math.log2(MAX_IMG_SIZE)) + 1)]
        if img_size not in valid_sizes:
            raise ValueError(f"GramDiscriminator img_size must be one of {valid_sizes}, got {img_size}; "
                             "resize the images to a supported power of 2")
        if not isinstance(max_channels, int) or max_channels < 1:
            raise ValueError(f"GramDiscriminator max_channels must be a positive int, got {max_channels!r}")
        if not isinstance(minibatch_std_group, int) or minibatch_std_group < 0:
            raise ValueError("GramDiscriminator minibatch_std_group must be an int >= 0 (0 = off), "
                             f"got {minibatch_std_group!r}")
        self.img_size = img_size
        self.max_channels = max_channels
        self.minibatch_std_group = minibatch_std_group

        def width(level):
            return min(max_channels, 2 ** level)

        first_level = FIRST_LEVEL_OFFSET - int(math.log2(img_size))
        # Attribute order fixes the state_dict order: layers, fromRGB, final_layer (released).
        self.layers = nn.ModuleList([
            ResidualCoordConvBlock(width(level), width(level + 1))
            for level in range(first_level, TOP_LEVEL)
        ])
        self.fromRGB = AdapterBlock(width(first_level), img_channels)
        std_channels = 1 if minibatch_std_group else 0
        self.final_layer = nn.Conv2d(width(TOP_LEVEL) + std_channels, NUM_OUTPUTS, FINAL_SIZE)

    def forward(self, img):
        """Score images.

        Args:
            img: [B, img_channels, N, N], nominally in [-1, 1].
        Returns:
            prediction: [B, 1] realism logit.
            position: [B, 2] predicted camera_pos (phi, theta).
        """
        if img.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"GramDiscriminator built for {self.img_size}px got input of shape "
                             f"{tuple(img.shape)}; resize the images to {self.img_size}x{self.img_size}")
        x = self.fromRGB(img)
        for layer in self.layers:
            x = layer(x)
        if self.minibatch_std_group:
            x = append_minibatch_std(x, self.minibatch_std_group)
        x = self.final_layer(x).reshape(x.shape[0], NUM_OUTPUTS)  # [B, 3, 1, 1] -> [B, 3]
        return x[:, 0:1], x[:, 1:3]
