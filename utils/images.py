"""Image tensors -> 8-bit PNGs, with the released encodings (docs/design.md §9, §10).

Generator images are float tensors nominally in [-1, 1] (never clamped upstream). Encoding:
x = img * 0.5 + 0.5, NaN -> 0, clip to [0, 1], times 255, then
- 'truncate': drop the fraction (the released render script; rounding would move about half
  the pixels by one level),
- 'round': round half up (the released FID images, written with torchvision's save_image).
"""
import numpy as np
import torch.nn.functional as F
from PIL import Image

from utils.files import atomic_path

PIXEL_MAX = 255.0              # top of the 8-bit range
ROUNDING_MODES = ('truncate', 'round')


def to_uint8(img, rounding='truncate'):
    """Encode img [3, H, W] or [B, 3, H, W] (float, nominally [-1, 1]) as uint8 pixels.

    Args:
        img: torch tensor (any device) or numpy array, channels first.
        rounding: 'truncate' or 'round' (see module docstring).
    Returns:
        numpy uint8 array, channels last: [H, W, 3] or [B, H, W, 3].
    """
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got '{rounding}'")
    if hasattr(img, 'detach'):
        img = img.detach().cpu().float().numpy()
    pixels = np.asarray(img, dtype=np.float32)
    if pixels.ndim not in (3, 4) or pixels.shape[-3] != 3:
        raise ValueError(f"expected an image [3, H, W] or [B, 3, H, W], got shape {tuple(pixels.shape)}")
    pixels = np.moveaxis(pixels, -3, -1)  # [..., 3, H, W] -> [..., H, W, 3]
    x = pixels * np.float32(0.5) + np.float32(0.5)
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
    x = np.clip(x, 0.0, 1.0) * np.float32(PIXEL_MAX)
    if rounding == 'round':
        x = x + np.float32(0.5)
    return x.astype(np.uint8)  # float -> uint8 truncates; x is in [0, 255.5] here


def resize_images(img, size):
    """Resize img [B, C, H, W] (float) to [B, C, size, size], bicubic (antialiased when shrinking).

    Bicubic interpolation may overshoot [-1, 1] slightly; the encodings above clip. Returns img
    itself when it already has the size.
    """
    if tuple(img.shape[-2:]) == (size, size):
        return img
    return F.interpolate(img.float(), size=(size, size), mode='bicubic', align_corners=False, antialias=True)


def save_png(img, path, rounding='truncate'):
    """Write img [3, H, W] (float, nominally [-1, 1]) to `path` as an RGB PNG, atomically."""
    pixels = to_uint8(img, rounding=rounding)
    if pixels.ndim != 3:
        raise ValueError(f"save_png writes one image [3, H, W]; got a batch of shape {tuple(pixels.shape)}")
    write_png(pixels, path)


def write_png(pixels, path):
    """uint8 pixels [H, W, 3] or [H, W] -> PNG at `path`, atomically."""
    with atomic_path(path) as tmp_path:
        Image.fromarray(pixels).save(tmp_path, format='PNG')
