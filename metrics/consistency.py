"""Multi-view consistency: warp one rendered view into a nearby one with depth; masked colour error.

A 3D-consistent generator renders a point with the same colour from two nearby cameras. For each
pixel of view A we back-project its depth to a world point, project that point into view B,
sample B's colour there (bilinear) and compare. A pixel counts only when it lands inside B and
B's own depth at that spot agrees with the point's distance from B (relative tolerance), so
surfaces hidden in B (occlusion) and depth edges are left out. The error is the mean absolute
colour difference over counted pixels and channels, on the 0-1 colour scale (1 = black vs white);
lower is more consistent. Reported together with the coverage (fraction of counted pixels).

Camera conventions are docs/design.md §1 (generators/cameras.py): pixel grid x in [-1, 1] left -> right over
columns, y in [1, -1] top -> bottom over rows, both at pixel centres; camera-space ray direction
normalize(x, y, -1 / tan(fov / 2)); depth is the distance along that unit ray (the renderer's
depth = sum(weight * z) / sum(weight), z measured from the ray origin).
"""
import torch
import torch.nn.functional as F

from generators import cameras

DEFAULT_YAW_OFFSET = 0.1        # rad between the two views (each is +-offset / 2 from the centre)
DEFAULT_DEPTH_TOLERANCE = 0.01  # |depth_B - distance| <= this * distance counts as the same surface
COLOUR_SCALE = 0.5              # images in [-1, 1]: a difference times 0.5 is on the 0-1 scale


def backproject(depth, cam2world, fov):
    """World points of every pixel: depth [B, N, N] (ray distance), cam2world [B, 4, 4] -> [B, N*N, 3]."""
    batch_size, img_size = depth.shape[0], depth.shape[-1]
    directions = cameras.camera_ray_directions(img_size, fov, 0, img_size * img_size, depth.device)  # [R, 3]
    origins, world_directions = cameras.world_rays(cam2world, directions.to(depth.dtype))  # [B, 3], [B, R, 3]
    return origins[:, None, :] + world_directions * depth.reshape(batch_size, -1, 1)


def project(points, cam2world, fov):
    """Project world points [B, P, 3] into cameras cam2world [B, 4, 4].

    Returns:
        pixel_xy [B, P, 2] on the pixel grid of docs/design.md §1 (x right, y up, +-1 at the outer pixel centres),
        distance [B, P] from the camera centre, in_front [B, P] (camera-space z < 0).
    """
    rotation, origin = cam2world[:, :3, :3], cam2world[:, :3, 3]
    camera_points = torch.einsum('bji,bpj->bpi', rotation, points - origin[:, None, :])  # R^T (p - o)
    in_front = camera_points[..., 2] < 0
    # A direction proportional to (x, y, focal) with focal = -1 / tan(fov / 2) < 0: scale by focal / z.
    safe_z = torch.where(in_front, camera_points[..., 2], -torch.ones_like(camera_points[..., 2]))  # no 0 division
    scale = cameras.focal_depth(fov) / safe_z
    pixel_xy = camera_points[..., :2] * scale[..., None]
    return pixel_xy, camera_points.norm(dim=-1), in_front


def sample_at(image, pixel_xy):
    """Bilinearly sample image [B, C, N, N] at pixel_xy [B, P, 2] (the pixel grid of docs/design.md §1) -> [B, C, P]."""
    grid = torch.stack([pixel_xy[..., 0], -pixel_xy[..., 1]], dim=-1)[:, None]  # y up -> grid rows down; [B, 1, P, 2]
    sampled = F.grid_sample(image, grid, mode='bilinear', padding_mode='border', align_corners=True)
    return sampled[:, :, 0]


def warp_consistency(image_a, depth_a, cam2world_a, image_b, depth_b, cam2world_b, fov,
                     depth_tolerance=DEFAULT_DEPTH_TOLERANCE):
    """Warp view B onto view A's pixels and measure the colour error (one direction, A <- B).

    Args:
        image_a, image_b: [B, 3, N, N] in [-1, 1] (any channel count C works).
        depth_a, depth_b: [B, N, N] ray distances; pixels with non-finite or non-positive depth
            (empty background) are not counted.
        cam2world_a, cam2world_b: [B, 4, 4] camera-to-world matrices.
        fov: vertical field of view in degrees (same for both views).
        depth_tolerance: relative depth agreement required in B.
    Returns:
        dict: 'error' [B] (mean |A - warped B| on the 0-1 scale over counted pixels; NaN when none),
        'coverage' [B] (counted fraction of A's pixels), 'warped' [B, C, N, N] (B seen from A),
        'mask' [B, N, N] (counted pixels).
    """
    batch_size, channels, img_size = image_a.shape[0], image_a.shape[1], image_a.shape[-1]
    points = backproject(depth_a, cam2world_a, fov)                       # [B, P, 3]
    pixel_xy, distance, in_front = project(points, cam2world_b, fov)     # [B, P, 2], [B, P], [B, P]
    warped = sample_at(image_b, pixel_xy)                                 # [B, C, P]
    depth_in_b = sample_at(depth_b[:, None], pixel_xy)[:, 0]              # [B, P]

    valid_a = torch.isfinite(depth_a.reshape(batch_size, -1)) & (depth_a.reshape(batch_size, -1) > 0)
    inside = in_front & (pixel_xy.abs() <= 1).all(dim=-1)
    same_surface = (depth_in_b - distance).abs() <= depth_tolerance * distance  # False for NaN depths
    mask = valid_a & inside & same_surface                                 # [B, P]

    difference = (image_a.reshape(batch_size, channels, -1) - warped).abs().mean(dim=1) * COLOUR_SCALE  # [B, P]
    counted = mask.sum(dim=1)
    error = torch.where(mask, difference, torch.zeros_like(difference)).sum(dim=1) / counted
    return {
        'error': error,  # 0 / 0 = NaN when nothing is counted
        'coverage': counted.float() / mask.shape[1],
        'warped': warped.reshape(batch_size, channels, img_size, img_size),
        'mask': mask.reshape(batch_size, img_size, img_size),
    }


@torch.no_grad()
def render_with_depth(generator, z, camera_pos, fov, ray_start, ray_end, img_size=None, lock_view_dependence=False):
    """Render z [B, z_dim] from camera_pos [B, 2] -> (img [B, 3, N, N], depth [B, N, N], cam2world [B, 4, 4]).

    Uses generator.experiment (psi 1); depth is the renderer's expected ray distance.
    """
    img, camera_pos, detail = generator.experiment(z, fov, ray_start, ray_end, img_size=img_size,
                                                   camera_pos=camera_pos, truncation_psi=1,
                                                   lock_view_dependence=lock_view_dependence)
    depth = detail['depth'][..., 0, 0]  # [B, N, N, 1, 1] -> [B, N, N]
    cam2world = cameras.look_at_cam2world(cameras.camera_origin_from_pos(camera_pos))
    return img, depth, cam2world


@torch.no_grad()
def generator_consistency(generator, z, fov, ray_start, ray_end, img_size=None, yaw_offset=DEFAULT_YAW_OFFSET,
                          depth_tolerance=DEFAULT_DEPTH_TOLERANCE, lock_view_dependence=False):
    """Consistency of each latent z [B, z_dim] between two views around the mean training pose.

    The views sit at yaw h_mean -+ yaw_offset / 2 and pitch v_mean (the generator's pose prior).
    The error is averaged over both warping directions (A <- B and B <- A).
    Returns (error [B], coverage [B]).
    """
    batch_size, device = z.shape[0], z.device
    centre = torch.tensor([[generator.v_mean, generator.h_mean]], dtype=torch.float32, device=device)
    half_step = torch.tensor([[0.0, yaw_offset / 2]], device=device)
    views = [render_with_depth(generator, z, (centre + sign * half_step).expand(batch_size, 2), fov, ray_start,
                               ray_end, img_size, lock_view_dependence) for sign in (-1, 1)]
    a_from_b = warp_consistency(*views[0], *views[1], fov, depth_tolerance)
    b_from_a = warp_consistency(*views[1], *views[0], fov, depth_tolerance)
    error = (a_from_b['error'] + b_from_a['error']) / 2
    coverage = (a_from_b['coverage'] + b_from_a['coverage']) / 2
    return error, coverage
