"""geometry/views.py: trained pose ranges, camera grids, and what counts as the object in a render."""
import math

import pytest
import torch

import configs
from generators import build_generator, intersections
from geometry import views


@pytest.mark.parametrize('name, phi_range, theta_range', [
    ('SYNTHETIC_demo', (math.pi / 4, 5 * math.pi / 12), (math.pi / 4, 3 * math.pi / 4)),  # uniform
    ('FFHQ_default', (math.pi / 2 - 0.31, math.pi / 2 + 0.31), (math.pi / 2 - 0.6, math.pi / 2 + 0.6)),  # 2 sd
    ('CARLA_default', (math.acos(1 - 2e-5), math.acos(1 - 2 * 85 / 180)), (-math.pi / 2, 3 * math.pi / 2)),
])
def test_pose_range(name, phi_range, theta_range):
    phi, theta = views.pose_range(configs.get_config(name)['generator']['kwargs'])
    assert phi == pytest.approx(phi_range, abs=1e-6) and theta == pytest.approx(theta_range, abs=1e-6)


def test_pose_grid_spans_the_range_with_fewer_cameras_near_the_pole():
    grid = views.pose_grid((math.pi / 6, math.pi / 2), (1.0, 2.0), max_step=0.6)
    # Rings at phi = pi/6, pi/3, pi/2 hold arcs of 0.5, 0.87 and 1 radian: 2, 3 and 3 cameras.
    rings = [(math.pi / 6, [1.0, 2.0]), (math.pi / 3, [1.0, 1.5, 2.0]), (math.pi / 2, [1.0, 1.5, 2.0])]
    expected = [[phi, theta] for phi, thetas in rings for theta in thetas]
    torch.testing.assert_close(grid, torch.tensor(expected))


def test_pose_grid_goes_once_around_a_full_turn_and_has_one_camera_at_the_pole():
    grid = views.pose_grid((0.0, math.pi / 2), (0.0, 2 * math.pi), max_step=math.pi / 2)
    expected = [[0.0, 0.0], [math.pi / 2, 0.0], [math.pi / 2, math.pi / 2], [math.pi / 2, math.pi],
                [math.pi / 2, 3 * math.pi / 2]]
    torch.testing.assert_close(grid, torch.tensor(expected))


def test_a_single_pose_gives_one_camera():
    assert views.pose_grid((1.0, 1.0), (2.0, 2.0), max_step=0.1).tolist() == [[1.0, 2.0]]


def test_mean_view_direction_of_faces_is_the_locked_direction():
    direction = views.mean_view_direction(configs.get_config('FFHQ_default')['generator']['kwargs'])
    assert direction.tolist() == pytest.approx([0.0, 0.0, -1.0], abs=1e-6)


def test_object_opacity_excludes_the_background_slot():
    # One ray, three sorted slots: two level points and the background point on the plane.
    weights = torch.tensor([[[0.2], [0.3], [0.5]]])
    z_vals = torch.tensor([[[0.9], [1.0], [1.2]]])
    points = torch.tensor([[[0.0, 0.0, 0.1], [0.0, 0.0, 0.0], [0.0, 0.0, intersections.BACKGROUND_PLANE_Z]]])
    opacity, depth = views.object_opacity_and_depth(weights, z_vals, points, background=True)
    assert opacity.tolist() == pytest.approx([0.5])
    assert depth.tolist() == pytest.approx([(0.2 * 0.9 + 0.3 * 1.0) / 0.5])
    opacity, depth = views.object_opacity_and_depth(weights, z_vals, points, background=False)
    assert opacity.tolist() == pytest.approx([1.0])
    empty, no_depth = views.object_opacity_and_depth(torch.zeros(1, 3, 1), z_vals, points, background=False)
    assert empty.tolist() == [0.0] and torch.isnan(no_depth).all()


def test_render_views_matches_the_generator():
    torch.manual_seed(0)
    config = configs.get_config('TINY_test')
    generator = build_generator(config).eval()
    z = torch.randn(1, generator.z_dim)
    camera_pos = torch.tensor([[1.0, 1.2], [1.3, 2.0]])
    rendered = views.render_views(generator, *generator.film_parameters(z), camera_pos, 8, config['camera'])
    with torch.no_grad():
        img, _, detail = generator.experiment(z.expand(2, -1), img_size=8, camera_pos=camera_pos, **config['camera'])
    torch.testing.assert_close(rendered['opacity'], detail['weights'].sum(dim=(-2, -1)))  # no background slot
    torch.testing.assert_close(rendered['depth'], detail['depth'][..., 0, 0], equal_nan=True)
    torch.testing.assert_close(rendered['rgb'] * 2 - 1, img.permute(0, 2, 3, 1))
