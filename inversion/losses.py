"""Reconstruction losses and image metrics on images in [-1, 1] ([B, 3, N, N])."""
import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 7           # Gaussian window side (pixels); small because the demo renders 32 px
SSIM_SIGMA = 1.5          # its standard deviation, pixels (the usual SSIM setting)
SSIM_C1 = 0.01 ** 2       # SSIM stabilisers for data range 1 (Wang et al. 2004)
SSIM_C2 = 0.03 ** 2
MIN_MSE = 1e-12           # PSNR floors the MSE here, so identical images give 120 dB, not infinity


def _gaussian_window(device, dtype):
    """The normalised 2D Gaussian window (SSIM_WINDOW px, SSIM_SIGMA) once per RGB channel:
    [3, 1, SSIM_WINDOW, SSIM_WINDOW], the weight of a depthwise (groups=3) conv2d."""
    coords = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - (SSIM_WINDOW - 1) / 2
    kernel = torch.exp(-coords ** 2 / (2 * SSIM_SIGMA ** 2))
    kernel = kernel / kernel.sum()
    return (kernel[:, None] * kernel[None, :]).expand(3, 1, SSIM_WINDOW, SSIM_WINDOW)


def ssim(image, target):
    """Mean SSIM of image vs target, both [B, 3, N, N] in [-1, 1] (compared on the [0, 1] scale,
    Gaussian window, reflect-padded so every pixel counts). Differentiable; 1 = identical."""
    x, y = image * 0.5 + 0.5, target * 0.5 + 0.5
    window = _gaussian_window(x.device, x.dtype)
    pad = SSIM_WINDOW // 2

    def blur(t):
        return F.conv2d(F.pad(t, [pad] * 4, mode='reflect'), window, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    score = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2))
    return score.mean()


def psnr(image, target):
    """PSNR in dB of image vs target ([..., 3, N, N] in [-1, 1]) on the [0, 1] scale."""
    mse = ((image - target) * 0.5).pow(2).mean()
    return -10 * math.log10(max(float(mse), MIN_MSE))
