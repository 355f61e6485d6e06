"""geometry/rasterize.py: the z-buffer uses the renderer's pixel grid and depth (distance along the ray)."""
import math

import numpy as np
import pytest
import torch

from generators import cameras
from geometry import rasterize

SIZE = 17  # odd: the centre pixel looks straight down the optical axis
FOV = 30.0
FRONT = cameras.look_at_cam2world(torch.tensor([[0.0, 0.0, 1.0]]))[0]  # at (0, 0, 1), looking down -z


def square(z, half, first_index=0):
    """Two triangles covering the square |x|, |y| <= half in the plane z."""
    vertices = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]]) + first_index
    return vertices, faces


def test_depth_is_the_distance_along_each_pixel_ray():
    vertices, faces = square(z=0.0, half=0.5)  # covers the whole view (half width tan 15 deg = 0.27)
    depth = rasterize.rasterize_depth(vertices, faces, FRONT, SIZE, FOV)
    directions = cameras.camera_ray_directions(SIZE, FOV, 0, SIZE * SIZE, 'cpu').reshape(SIZE, SIZE, 3)
    np.testing.assert_allclose(depth, 1.0 / -directions[..., 2], rtol=1e-5)  # plane at distance 1 along -z
    assert depth[SIZE // 2, SIZE // 2] == pytest.approx(1.0)


def test_silhouette_follows_the_renderer_pixel_grid():
    half = 0.1
    vertices, faces = square(z=0.0, half=half)
    covered = torch.isfinite(rasterize.rasterize_depth(vertices, faces, FRONT, SIZE, FOV))
    # Pixel column j looks along x_j = linspace(-1, 1, N)[j] * tan(fov / 2) at unit distance (docs/design.md §1.4).
    inside = np.abs(np.linspace(-1, 1, SIZE) * math.tan(math.radians(FOV / 2))) <= half
    np.testing.assert_array_equal(covered, np.outer(inside, inside))


def test_the_nearest_surface_wins_and_the_back_of_the_camera_is_ignored():
    near, near_faces = square(z=0.2, half=0.05)
    far, far_faces = square(z=-0.2, half=0.5, first_index=4)
    behind, behind_faces = square(z=1.5, half=0.5, first_index=8)  # behind the camera
    vertices = np.concatenate([near, far, behind])
    faces = np.concatenate([near_faces, far_faces, behind_faces])
    depth = rasterize.rasterize_depth(vertices, faces, FRONT, SIZE, FOV)
    assert depth[SIZE // 2, SIZE // 2] == pytest.approx(0.8)
    assert depth[0, 0] > 1.2


def test_agreement_of_a_mesh_with_its_own_render():
    vertices, faces = square(z=0.0, half=0.1)
    depth = rasterize.rasterize_depth(vertices, faces, FRONT, SIZE, FOV)
    opacity = torch.isfinite(depth).float()
    result = rasterize.agreement_with_view(vertices, faces, opacity, depth, FRONT, FOV, 0.5)
    assert result == {'iou': 1.0, 'depth_error': 0.0, 'outside': 0.0}
    shifted = rasterize.agreement_with_view(vertices + np.float32([0, 0, 0.1]), faces, opacity, depth, FRONT, FOV, 0.5)
    assert shifted['iou'] < 1 and shifted['depth_error'] == pytest.approx(0.1, rel=0.01)
