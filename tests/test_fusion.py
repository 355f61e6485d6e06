"""geometry/fusion.py: views of a known sphere fuse into a volume whose surface is that sphere."""
import math

import numpy as np
import pytest
import torch
from helpers import FOV, RADIUS, sphere_views

from geometry import fusion, meshing, views

RESOLUTION = 40


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
