"""Shape and colour diversity of object images on a plain background.

Each image is reduced to a few numbers that vary between object identities: its silhouette (the
pixels that differ from the background colour) gives the area it covers and the aspect of its
bounding box; its object pixels give the paint's saturation; the set gives the spread of mean hue
(metrics/diagnostics.py). Measured the same way on generated and on real images drawn from the
same pose distribution, the spreads tell whether a generator varies its objects as much as the
data does. Pose varies the silhouette too, so each statistic also gets a residual spread: the
standard deviation left after a least-squares fit on the camera angles (quadratic in phi and
theta), i.e. the part pose does not explain. A generator can also fake colour variety by painting
by camera angle; metrics/diagnostics.py's `hue_over_objects_and_views` compares the two.
"""
import math

import torch

from metrics.diagnostics import hue_spread

FOREGROUND_TOLERANCE = 0.05  # a pixel is object when a channel differs from the background by more (0-1 scale)
STATISTICS = ('area', 'aspect', 'saturation')
NUM_POSE_FEATURES = 6  # pose_features: 1, phi, theta, phi^2, theta^2, phi * theta


def foreground_masks(images, background):
    """images [B, 3, H, W] in [0, 1], background [3] in [0, 1] -> bool [B, H, W]."""
    background = torch.as_tensor(background, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - background).abs().amax(dim=1) > FOREGROUND_TOLERANCE


def silhouette_statistics(masks):
    """masks [B, H, W] -> (area [B]: covered fraction of the image, aspect [B]: bounding-box width /
    height, NaN for an empty mask)."""
    area = masks.float().mean(dim=(1, 2))
    rows, columns = masks.any(dim=2), masks.any(dim=1)  # [B, H], [B, W]
    aspect = torch.full_like(area, math.nan)
    for index in range(len(masks)):
        if rows[index].any():
            row_ids, column_ids = rows[index].nonzero().squeeze(1), columns[index].nonzero().squeeze(1)
            height = (row_ids[-1] - row_ids[0] + 1).item()
            width = (column_ids[-1] - column_ids[0] + 1).item()
            aspect[index] = width / height
    return area, aspect


def object_saturation(images, masks):
    """Mean chroma magnitude (distance of a pixel's colour from its own grey level) over each
    image's object pixels: images [B, 3, H, W], masks [B, H, W] -> [B] (NaN for an empty mask)."""
    chroma = (images - images.mean(dim=1, keepdim=True)).norm(dim=1)  # [B, H, W]
    pixels = masks.float().sum(dim=(1, 2))
    total = (chroma * masks).sum(dim=(1, 2))
    return torch.where(pixels > 0, total / pixels.clamp(min=1), torch.full_like(total, math.nan))


def image_statistics(images, background):
    """images [B, 3, H, W] in [0, 1] -> {'area', 'aspect', 'saturation'}: [B] each."""
    masks = foreground_masks(images, background)
    area, aspect = silhouette_statistics(masks)
    return {'area': area, 'aspect': aspect, 'saturation': object_saturation(images, masks)}


def pose_features(camera_pos):
    """camera_pos [B, 2] = (phi, theta) -> [B, 6]: 1, phi, theta, phi^2, theta^2, phi * theta."""
    phi, theta = camera_pos.double().unbind(dim=1)
    return torch.stack([torch.ones_like(phi), phi, theta, phi ** 2, theta ** 2, phi * theta], dim=1)


def residual_std(values, camera_pos):
    """Standard deviation of values [B] after the least-squares fit on pose_features(camera_pos)."""
    features = pose_features(camera_pos)
    solution = torch.linalg.lstsq(features, values.double().unsqueeze(1)).solution
    return (values.double() - (features @ solution).squeeze(1)).std(unbiased=False).item()


def summarize(statistics, images, camera_pos):
    """Mean, standard deviation and pose-residual standard deviation of each per-image statistic
    over the images with a non-empty silhouette, the hue spread of all `images` [B, 3, H, W] in
    [0, 1], and the count of empty images. camera_pos [B, 2] = (phi, theta) of each image.
    A value that needs more images than there are is NaN."""
    seen = statistics['area'] > 0
    count = int(seen.sum())
    summary = {}
    for name in STATISTICS:
        values = statistics[name][seen]
        summary[f'{name}_mean'] = values.mean().item() if count else math.nan
        summary[f'{name}_std'] = values.std(unbiased=False).item() if count else math.nan
        summary[f'{name}_residual_std'] = (residual_std(values, camera_pos[seen])
                                           if count > NUM_POSE_FEATURES else math.nan)
    summary['hue_spread'] = hue_spread(images)
    summary['empty_images'] = int((statistics['area'] == 0).sum())
    return summary

