"""Multi-view consistency metric on synthetic scenes: the plane z = 0 seen from two cameras."""
import math

import pytest
import torch

from configs import get_config
from generators import build_generator, cameras
from metrics.consistency import generator_consistency, project, warp_consistency

FOV = 30.0      # degrees
SIZE = 32       # pixels
YAW = 0.1       # rad between the views


def camera(yaw_offset):
    """cam2world [1, 4, 4] of the camera at distance 1 on the equator, yaw pi/2 + offset."""
    camera_pos = torch.tensor([[math.pi / 2, math.pi / 2 + yaw_offset]])
    return cameras.look_at_cam2world(cameras.camera_origin_from_pos(camera_pos))


def render_plane(cam2world, colour_fn):
    """Ray-cast the plane z = 0 by hand: (image [1, 3, N, N], depth [1, N, N], points [N*N, 3]).

    colour_fn(points [R, 3], directions [R, 3]) -> colours [R, 3] in [-1, 1].
    """
    steps = torch.linspace(-1, 1, SIZE)
    y, x = torch.meshgrid(-steps, steps, indexing='ij')  # row 0 is the top (y = +1)
    directions = torch.stack([x, y, torch.full_like(x, -1 / math.tan(math.radians(FOV) / 2))], dim=-1).reshape(-1, 3)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    directions = directions @ cam2world[0, :3, :3].T  # to world space
    origin = cam2world[0, :3, 3]
    distance = -origin[2] / directions[:, 2]          # hit z = 0
    points = origin + directions * distance[:, None]
    colours = colour_fn(points, directions)
    return colours.T.reshape(1, 3, SIZE, SIZE), distance.reshape(1, SIZE, SIZE), points


def constant(points, directions):
    return torch.tensor([0.2, -0.4, 0.6]).expand(points.shape[0], 3)


def painted(points, directions):
    """A smooth texture fixed on the plane (view-independent)."""
    return torch.stack([torch.sin(4 * points[:, 0]), torch.cos(3 * points[:, 1]), 0.5 * points[:, 0] * points[:, 1]],
                       dim=-1)


def view_dependent(points, directions):
    """The colour follows the viewing direction, like a specular highlight."""
    return torch.stack([10 * directions[:, 0], 10 * directions[:, 1], directions[:, 2]], dim=-1).clamp(-1, 1)


def both_views(colour_fn):
    cam_a, cam_b = camera(-YAW / 2), camera(YAW / 2)
    image_a, depth_a, points_a = render_plane(cam_a, colour_fn)
    image_b, depth_b, _ = render_plane(cam_b, colour_fn)
    return (image_a, depth_a, cam_a, image_b, depth_b, cam_b), points_a


def test_plane_warps_exactly_onto_the_analytic_projection():
    """Colour view B with its own pixel coordinates (x, y, 0): bilinear sampling of a linear ramp is
    exact, so the warped image must equal the projection of A's points into B, computed here by
    hand. B is A's camera turned about the y axis by -YAW, so camera-space points are
    R_y(-YAW)^T p - (0, 0, 1) and the pixel is x = -k X / Z with k = 1 / tan(fov / 2)."""
    cam_a, cam_b = camera(0.0), camera(YAW)
    _, depth_a, points = render_plane(cam_a, constant)
    _, depth_b, _ = render_plane(cam_b, constant)
    steps = torch.linspace(-1, 1, SIZE)
    y, x = torch.meshgrid(-steps, steps, indexing='ij')
    coordinates_b = torch.stack([x, y, torch.zeros_like(x)])[None]  # [1, 3, N, N]

    result = warp_consistency(torch.zeros(1, 3, SIZE, SIZE), depth_a, cam_a, coordinates_b, depth_b, cam_b, FOV)

    c, s = math.cos(-YAW), math.sin(-YAW)
    rotation = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # R_y(-YAW)
    camera_points = points @ rotation - torch.tensor([0.0, 0.0, 1.0])   # R^T p for row vectors is p R
    k = 1 / math.tan(math.radians(FOV) / 2)
    expected = -k * camera_points[:, :2] / camera_points[:, 2:3]      # [P, 2]
    mask = result['mask'].reshape(-1)
    inside = (expected.abs() <= 1).all(dim=-1)
    assert torch.equal(mask, inside)                                   # all of the plane is visible in B
    assert 0.8 < mask.float().mean() < 1.0                             # most pixels land in B, not all
    warped = result['warped'][0, :2].reshape(2, -1).T                  # [P, 2]
    torch.testing.assert_close(warped[mask], expected[mask], atol=2e-5, rtol=0)


def test_project_hand_computed_frontal_camera():
    """Frontal camera at (0, 0, 1), fov 90 (k = 1): the point (0.25, -0.5, 0) is at depth 1 straight
    ahead, so it projects to pixel (0.25, -0.5) at distance sqrt(1 + 0.0625 + 0.25)."""
    cam = camera(0.0)
    pixel_xy, distance, in_front = project(torch.tensor([[[0.25, -0.5, 0.0], [0.0, 0.0, 2.0]]]), cam, 90.0)
    torch.testing.assert_close(pixel_xy[0, 0], torch.tensor([0.25, -0.5]))
    assert distance[0, 0].item() == pytest.approx(math.sqrt(1.3125))
    assert in_front.tolist() == [[True, False]]  # (0, 0, 2) is behind the camera


def test_constant_colour_scene_gives_zero():
    views, _ = both_views(constant)
    result = warp_consistency(*views, FOV)
    assert result['coverage'].item() > 0.8
    assert result['error'].item() < 1e-6


def test_view_independent_texture_is_nearly_consistent_and_view_dependent_is_not():
    views, _ = both_views(painted)
    consistent = warp_consistency(*views, FOV)['error'].item()
    views, _ = both_views(view_dependent)
    inconsistent = warp_consistency(*views, FOV)['error'].item()
    assert consistent < 1e-3       # only bilinear resampling error (about 5e-5 here)
    assert inconsistent > 0.03     # the colour moved with the camera (about 0.065 here)
    assert inconsistent > 100 * consistent


def test_occluded_pixels_are_masked_out():
    """An occluder in front of the plane in view B only (depth 0.5, wrong colour): those pixels
    do not count, so the constant-colour scene stays at ~0; without the depth test they would."""
    (image_a, depth_a, cam_a, image_b, depth_b, cam_b), _ = both_views(constant)
    free = warp_consistency(image_a, depth_a, cam_a, image_b, depth_b, cam_b, FOV)
    image_b, depth_b = image_b.clone(), depth_b.clone()
    image_b[..., 8:20, 8:20] = -1.0
    depth_b[..., 8:20, 8:20] = 0.5
    occluded = warp_consistency(image_a, depth_a, cam_a, image_b, depth_b, cam_b, FOV)
    assert occluded['error'].item() < 1e-3
    assert free['coverage'].item() - occluded['coverage'].item() > 0.1
    no_depth_test = warp_consistency(image_a, depth_a, cam_a, image_b, depth_b, cam_b, FOV, depth_tolerance=1e9)
    assert no_depth_test['error'].item() > 0.05


def test_empty_background_is_not_counted():
    views, _ = both_views(constant)
    image_a, depth_a, cam_a, image_b, depth_b, cam_b = views
    depth_a = torch.full_like(depth_a, float('nan'))  # e.g. sum of weights 0 on a white background
    result = warp_consistency(image_a, depth_a, cam_a, image_b, depth_b, cam_b, FOV)
    assert result['coverage'].item() == 0 and math.isnan(result['error'].item())


def test_generator_consistency_runs_on_tiny_generator():
    torch.manual_seed(0)
    generator = build_generator(get_config('TINY_test')).eval()
    config = get_config('TINY_test')['camera']
    z = torch.randn(2, generator.z_dim)
    error, coverage = generator_consistency(generator, z, config['fov'], config['ray_start'], config['ray_end'],
                                            img_size=16)
    assert error.shape == (2,) and coverage.shape == (2,)
    assert ((coverage > 0) & (coverage <= 1)).all()
    assert torch.isfinite(error).all() and (error >= 0).all()
