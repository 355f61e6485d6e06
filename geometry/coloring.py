"""Vertex colours of a fused mesh: the colour the renderer shows there, averaged over the views.

A vertex takes the mean rendered colour (views.render_views 'rgb', bilinear at its projection) of
the views that see it: it projects into the image onto an object pixel (opacity >= threshold), and
its distance from the camera is within `tolerance` of the mesh's own z-buffer there, so it is not
hidden. Vertices no view sees (the parts of the closed mesh outside the trained cameras' sight)
take the radiance network's own rgb at the vertex instead (network_colors). Averaging the
composited colour over the views reproduces the renders about twice as closely as the radiance
network evaluated at the vertex itself, which lies off the trained manifolds (docs/shapes.md).
"""
import torch
import torch.nn.functional as F

from generators import cameras
from geometry.rasterize import project, rasterize_depth, world_to_camera


@torch.no_grad()
def view_colors(vertices, faces, views, fov, threshold, tolerance):
    """Mean rendered colour of each vertex over the views that see it.

    Args:
        vertices [V, 3], faces [T, 3]: the mesh; views: the dict of views.render_views.
        threshold: object opacity; tolerance: world distance to the z-buffer still counted as visible.
    Returns:
        colours [V, 3] float in ~[0, 1] (0 where unseen) and seen [V] bool.
    """
    vertices = torch.as_tensor(vertices, dtype=torch.float32)
    size = views['opacity'].shape[-1]
    scale = -cameras.focal_depth(fov)
    total = torch.zeros(len(vertices), 3)
    count = torch.zeros(len(vertices))
    for view in range(views['opacity'].shape[0]):
        cam2world = views['cam2world'][view]
        zbuffer = rasterize_depth(vertices, faces, cam2world, size, fov)              # [N, N]
        camera_points = world_to_camera(vertices, cam2world)                         # [V, 3]
        pixel = project(camera_points, size, fov).round().long().clamp(0, size - 1)  # [V, 2] nearest (row, col)
        nearest = zbuffer[pixel[:, 0], pixel[:, 1]]
        ndc = scale * camera_points[:, :2] / -camera_points[:, 2:]
        image = torch.cat([views['rgb'][view], views['opacity'][view].unsqueeze(-1)], dim=-1)  # [N, N, 4]
        grid = torch.stack([ndc[:, 0], -ndc[:, 1]], dim=-1).view(1, 1, -1, 2)    # image y up, rows down
        sampled = F.grid_sample(image.permute(2, 0, 1).unsqueeze(0), grid, mode='bilinear',
                                padding_mode='border', align_corners=True)[0, :, 0].T  # [V, 4]
        seen = ((ndc.abs() <= 1).all(dim=-1) & (sampled[:, 3] >= threshold)
                & ((camera_points.norm(dim=-1) - nearest).abs() <= tolerance))
        total += torch.where(seen.unsqueeze(-1), sampled[:, :3], torch.zeros_like(sampled[:, :3]))
        count += seen.float()
    seen = count > 0
    return total / count.clamp(min=1).unsqueeze(-1), seen


@torch.no_grad()
def network_colors(rf_network, frequencies, phase_shifts, vertices, direction, chunk_points):
    """rgb [V, 3] in ~[0, 1] (CPU) of the radiance network at vertices [V, 3] seen along `direction` [3].

    frequencies, phase_shifts: [1, 9 H]; the network runs on their device, chunk_points vertices at a time.
    """
    device = frequencies.device
    vertices = torch.as_tensor(vertices, dtype=torch.float32)
    colors = [torch.zeros(0, 3)]
    for first in range(0, len(vertices), chunk_points):
        points = vertices[first:first + chunk_points].to(device).unsqueeze(0)  # [1, n, 3]
        colors.append(rf_network.forward_with_frequencies_phase_shifts(
            points, frequencies, phase_shifts, direction.to(device).expand_as(points))[0, :, :3].cpu())
    return torch.cat(colors)
