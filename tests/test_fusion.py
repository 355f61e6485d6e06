"""geometry/fusion.py: views of a known sphere fuse into a volume whose surface is that sphere."""
import math

import numpy as np
import pytest
import torch

from generators import cameras
from geometry import fusion, meshing, views

RADIUS = 0.2
FOV = 30.0
SIZE = 48
COLOR = (0.25, 0.5, 0.75)
RESOLUTION = 40


def sphere_views(camera_pos, size=SIZE, fov=FOV, radius=RADIUS, center=(0.0, 0.0, 0.0)):
    """Exact views (as views.render_views returns them) of an opaque sphere of constant colour COLOR."""
    cam2world = cameras.look_at_cam2world(cameras.camera_origin_from_pos(camera_pos))
    directions = cameras.camera_ray_directions(size, fov, 0, size * size, 'cpu')
    origins, world_directions = cameras.world_rays(cam2world, directions)         # [C, 3], [C, R, 3]
    offset = origins - torch.tensor(center)                                        # [C, 3]
    b = (world_directions * offset[:, None, :]).sum(-1)                            # [C, R]
    c = (offset * offset).sum(-1, keepdim=True) - radius ** 2
    disc = b * b - c
    hit = disc > 0
    depth = torch.where(hit, -b - disc.clamp(min=0).sqrt(), torch.full_like(b, float('nan')))
    shape = (len(camera_pos), size, size)
    return {'opacity': hit.float().reshape(shape), 'depth': depth.reshape(shape),
            'rgb': torch.tensor(COLOR).expand(*shape, 3).clone(), 'cam2world': cam2world}


def all_around(max_step=math.pi / 4):
    return views.pose_grid((math.pi / 6, 5 * math.pi / 6), (0.0, 2 * math.pi), max_step)


def test_object_points_lie_on_the_sphere():
    points = fusion.object_points(sphere_views(all_around()), FOV, 0.5)
    assert len(points) > 1000
    np.testing.assert_allclose(points.norm(dim=-1), RADIUS, atol=1e-5)


def test_object_box_has_resolution_points_on_its_longest_side_and_stays_before_the_background():
    points = torch.tensor([[-0.1, -0.2, -0.3], [0.1, 0.2, 0.3]])
    low, step, counts = fusion.object_box(points, RESOLUTION, background=False)
    assert max(counts) == RESOLUTION and counts[2] == RESOLUTION
    assert step == pytest.approx(0.6 / (RESOLUTION - 1 - 2 * fusion.PADDING_VOXELS))
    np.testing.assert_allclose(low, [-0.1 - 4 * step, -0.2 - 4 * step, -0.3 - 4 * step], atol=1e-6)
    low, _, _ = fusion.object_box(points, RESOLUTION, background=True)
    assert float(low[2]) == pytest.approx(-0.12)  # intersections.BACKGROUND_PLANE_Z


def test_fused_sphere_is_the_sphere():
    sphere = sphere_views(all_around())
    points = fusion.object_points(sphere, FOV, 0.5)
    low, step, counts = fusion.object_box(points, RESOLUTION, background=False)
    field = fusion.fuse_views(sphere, FOV, 0.5, low, step, counts)
    grid = fusion.grid_coordinates(low, step, counts)
    distance = grid.norm(dim=-1) - RADIUS
    # The sign is right wherever the point is more than a grid step from the surface.
    assert ((field < 0) == (distance < 0))[distance.abs() > step].all()
    vertices, _ = meshing.mesh_from_field(field.numpy(), low.numpy(), step)
    radii = np.linalg.norm(vertices, axis=1)
    assert np.abs(radii - RADIUS).max() < step
    assert abs(np.median(radii) - RADIUS) < 0.2 * step


def test_unseen_space_behind_the_object_is_inside():
    front = views.pose_grid((math.pi / 2, math.pi / 2), (math.pi / 2, math.pi / 2), 1.0)  # one frontal camera
    sphere = sphere_views(front)
    points = fusion.object_points(sphere, FOV, 0.5)  # the front half only: the box ends at z = 0
    low, step, counts = fusion.object_box(points, RESOLUTION, background=False)
    field = fusion.fuse_views(sphere, FOV, 0.5, low, step, counts)
    grid = fusion.grid_coordinates(low, step, counts)
    back_layer = grid[:, :, 0]                                   # the box's far face, never seen
    field_back = field[:, :, 0]
    radius = back_layer[..., :2].norm(dim=-1)
    assert (field_back[radius < 0.8 * RADIUS] < 0).all()          # behind the seen surface: inside
    assert (field_back[radius > 1.2 * RADIUS] > 0).all()          # beside the silhouette: outside
