"""geometry/coloring.py: vertices take the colour of the views that see them; hidden ones are left to the fallback."""
import math

import numpy as np
import torch
from helpers import COLOR, FOV, RADIUS, sphere_views

from geometry import coloring, fusion, meshing, views


def test_seen_vertices_take_the_view_colour_and_hidden_ones_are_unseen():
    front = views.pose_grid((math.pi / 2, math.pi / 2), (math.pi / 2, math.pi / 2), 1.0)  # one camera on +z
    sphere = sphere_views(front)
    points = fusion.object_points(sphere, FOV, 0.5)
    low, step, counts = fusion.object_box(points, 40, background=False)
    field = fusion.fuse_views(sphere, FOV, 0.5, low, step, counts)
    vertices, faces = meshing.mesh_from_field(field.numpy(), low.numpy(), step)
    colors, seen = coloring.view_colors(vertices, faces, sphere, FOV, 0.5, 2 * step)
    facing = vertices[:, 2] > 0.5 * RADIUS   # the front cap, in plain sight
    back = vertices[:, 2] < 0.5 * step        # the flat cap closing the unseen back
    assert seen.numpy()[facing].all() and not seen.numpy()[back].any()
    np.testing.assert_allclose(colors[seen], np.broadcast_to(COLOR, (int(seen.sum()), 3)), atol=1e-6)
    assert (colors[~seen] == 0).all()


def test_network_colors_evaluates_in_chunks():
    class Network:
        @staticmethod
        def forward_with_frequencies_phase_shifts(points, frequencies, phase_shifts, directions):
            return torch.cat([points.abs(), torch.ones_like(points[..., :1])], dim=-1)  # rgb = |p|

    vertices = np.random.default_rng(0).uniform(-1, 1, (10, 3)).astype(np.float32)
    rgb = coloring.network_colors(Network(), torch.zeros(1, 4), torch.zeros(1, 4), vertices,
                                  torch.tensor([0.0, 0.0, -1.0]), chunk_points=3)
    np.testing.assert_allclose(rgb, np.abs(vertices))
