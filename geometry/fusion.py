"""Fuse rendered object opacity and depth from many cameras into a signed distance volume (TSDF).

GRAM's radiance network is trained only on the manifolds (docs/design.md §2-4), so its density off
them is meaningless; what the renderer shows is fully described by its per-view object opacity and
depth (geometry/views.py). This module turns those views into a volume whose zero level set is that
surface, in the way of KinectFusion / TSDF fusion:

For a grid point p and a view with camera origin o, p projects to a point of the image; let
r = |p - o| (the renderer's depth convention, docs/design.md §4) and sample the view there
(bilinear, depth interpolated with opacity weights). Then the view says
- background (opacity < threshold): p is free space, value +mu;
- object: value clamp(depth - r, -mu, mu) (positive in front of the surface, negative behind);
  a value of -mu (p more than mu behind the surface) is occluded and carries no information;
- nothing when p projects outside the image.
The volume is the mean of the informative values. A point no view informs on is inside (-mu) when
some view shows it (it lies behind every surface it was seen from) and outside (+mu) when it lies
outside every image. mu = TRUNCATION_FRACTION of the longest side of the object's box.

The grid covers the object's box: the bounding box of all object pixels back-projected to their
depth, plus PADDING_VOXELS steps on each side, with `resolution` points along its longest side; with
a background plane (FFHQ, Cats) the box never reaches behind the plane.
"""
import torch
import torch.nn.functional as F

from generators import cameras, intersections
from geometry.rasterize import world_to_camera

# mu, as a fraction of the longest side of the object's box. Larger values let more views vote on
# points near the silhouette, so fewer are carved away by one view's background (mask IoU with the
# demo renders: 0.90 at 0.025, 0.95 at 0.08) but let surfaces bulge out (docs/shapes.md).
TRUNCATION_FRACTION = 0.08
PADDING_VOXELS = 4        # grid steps of free margin around the object's box
MIN_RESOLUTION = 2 * PADDING_VOXELS + 4  # at least a few grid steps across the object itself
OPACITY_EPS = 1e-12       # guards the opacity-weighted depth interpolation


def object_points(views, fov, threshold):
    """World points [P, 3] of every object pixel (opacity >= threshold) of every view, at its depth.

    views: the dict of views.render_views ('opacity', 'depth' [C, N, N], 'cam2world' [C, 4, 4]).
    """
    size = views['opacity'].shape[-1]
    directions = cameras.camera_ray_directions(size, fov, 0, size * size, 'cpu')   # [N^2, 3]
    origins, world_directions = cameras.world_rays(views['cam2world'], directions)  # [C, 3], [C, N^2, 3]
    mask = views['opacity'].reshape(len(origins), -1) >= threshold                 # [C, N^2]
    depth = views['depth'].reshape(len(origins), -1)
    points = origins[:, None, :] + world_directions * depth.unsqueeze(-1)           # [C, N^2, 3]
    return points[mask]


def object_box(points, resolution, background):
    """Grid of the object's box: (low corner [3], step) with `resolution` points along its longest side.

    points [P, 3] (object_points); background: the renderer has the background plane, which the
    box then does not reach behind.
    """
    low, high = points.min(dim=0).values, points.max(dim=0).values
    step = float((high - low).max()) / (resolution - 1 - 2 * PADDING_VOXELS)
    low = low - PADDING_VOXELS * step
    if background:
        low[2] = max(float(low[2]), intersections.BACKGROUND_PLANE_Z)
    high = high + PADDING_VOXELS * step
    counts = ((high - low) / step).ceil().long() + 1  # points per axis covering the box; the longest = resolution
    return low, step, tuple(int(count) for count in counts.clamp(max=resolution))


def grid_coordinates(low, step, counts):
    """World positions [X, Y, Z, 3] of the grid points low + step * (i, j, k)."""
    axes = [low[axis] + step * torch.arange(counts[axis], dtype=torch.float32) for axis in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1)


@torch.no_grad()
def fuse_views(views, fov, threshold, low, step, counts):
    """Truncated signed distance [X, Y, Z] of the grid (low, step, counts) from the views (module docstring).

    Negative inside the object, positive outside, in world units within [-mu, mu].
    """
    points = grid_coordinates(low, step, counts).reshape(-1, 3)  # [M, 3]
    mu = TRUNCATION_FRACTION * step * (max(counts) - 1 - 2 * PADDING_VOXELS)  # that many steps span the object
    total = torch.zeros(points.shape[0])
    count = torch.zeros(points.shape[0])            # informative views
    in_any_image = torch.zeros(points.shape[0], dtype=torch.bool)
    scale = -cameras.focal_depth(fov)  # 1 / tan(fov / 2)
    for view in range(views['opacity'].shape[0]):
        camera_points = world_to_camera(points, views['cam2world'][view])  # [M, 3], looking down -z
        ndc = scale * camera_points[:, :2] / -camera_points[:, 2:]         # image x right, y up, in [-1, 1]
        in_image = (ndc.abs() <= 1).all(dim=-1) & (camera_points[:, 2] < 0)
        opacity, depth = _sample_view(views['opacity'][view], views['depth'][view], ndc)
        distance = camera_points.norm(dim=-1)
        signed = torch.where(opacity >= threshold, (depth - distance).clamp(-mu, mu), torch.full_like(distance, mu))
        informative = in_image & (signed > -mu)
        total += torch.where(informative, signed, torch.zeros_like(signed))
        count += informative.float()
        in_any_image |= in_image
    uninformed = torch.where(in_any_image, torch.full_like(total, -mu), torch.full_like(total, mu))
    field = torch.where(count > 0, total / count.clamp(min=1), uninformed)
    return field.reshape(counts)


def _sample_view(opacity, depth, ndc):
    """Bilinear opacity [M] and opacity-weighted bilinear depth [M] of one view at image points ndc [M, 2].

    opacity, depth [N, N] (depth NaN where opacity is 0). The pixel grid of docs/design.md §1.4 is
    grid_sample's with align_corners=True (x: column -1 -> 1, y: row -1 -> 1 top to bottom).
    """
    weighted_depth = torch.where(opacity > 0, opacity * depth, torch.zeros_like(opacity))
    image = torch.stack([opacity, weighted_depth]).unsqueeze(0)          # [1, 2, N, N]
    grid = torch.stack([ndc[:, 0], -ndc[:, 1]], dim=-1).view(1, 1, -1, 2)  # image y points up, rows down
    sampled = F.grid_sample(image, grid, mode='bilinear', padding_mode='border', align_corners=True)[0, :, 0]
    return sampled[0], sampled[1] / sampled[0].clamp(min=OPACITY_EPS)

