"""What the renderer shows from one camera: per-pixel object opacity, depth and colour.

The object of a render is everything except the background layer (docs/design.md §2.5, §4):
- opacity = sum of the composited weights of the non-background slots, in [0, 1]. Configs with a
  background plane (FFHQ, Cats) give the background slot, which lies on the plane
  z = intersections.BACKGROUND_PLANE_Z, the remaining weight; configs without one (CARLA, the
  synthetic configs) have no background slot, so opacity = W of §4.
- depth = the object slots' weighted mean distance from the camera, sum_k w_k z_k / opacity (for
  configs without background exactly the renderer's depth); NaN where opacity is 0.
- rgb = the renderer's colour [0, 1] (composited over white or over the background).
The object mask is opacity >= a threshold (DEFAULT_OPACITY_THRESHOLD unless told otherwise).

Cameras are (phi, theta) pairs (docs/design.md §1.1) at radius 1 looking at the origin.
"""
import math

import numpy as np
import torch

from generators import cameras, intersections

DEFAULT_OPACITY_THRESHOLD = 0.5   # object mask: composited object weight at least this
BACKGROUND_SLOT_TOLERANCE = 1e-5  # world units: a slot this close to the background plane is the background
POSE_RANGE_STDDEVS = 2.0          # a gaussian pose prior is covered to mean +- this many standard deviations
FULL_TURN = 2 * math.pi
ANGLE_EPS = 1e-9                  # radians: rounding slack when counting cameras over a range


def pose_range(generator_kwargs):
    """The trained camera range of a config: ((phi_min, phi_max), (theta_min, theta_max)), radians.

    uniform: mean +- stddev; gaussian / normal: mean +- POSE_RANGE_STDDEVS stddev; spherical_uniform:
    theta as uniform, phi the range of arccos(1 - 2 v) (docs/design.md §1.2); anything else (fixed
    pose): the single pose. phi is kept POLE_EPS away from the poles.
    """
    dist = generator_kwargs['sample_dist']
    h_mean, h_stddev = generator_kwargs['h_mean'], generator_kwargs['h_stddev']
    v_mean, v_stddev = generator_kwargs['v_mean'], generator_kwargs['v_stddev']
    if dist in ('gaussian', 'normal'):
        h_half, v_half = POSE_RANGE_STDDEVS * h_stddev, POSE_RANGE_STDDEVS * v_stddev
    elif dist in ('uniform', 'spherical_uniform'):
        h_half, v_half = h_stddev, v_stddev
    else:
        h_half = v_half = 0.0
    phi_range = (v_mean - v_half, v_mean + v_half)
    if dist == 'spherical_uniform':
        v_low, v_high = [min(max(v / math.pi, cameras.POLE_EPS), 1 - cameras.POLE_EPS) for v in phi_range]
        phi_range = (math.acos(1 - 2 * v_low), math.acos(1 - 2 * v_high))
    phi_range = tuple(min(max(phi, cameras.POLE_EPS), math.pi - cameras.POLE_EPS) for phi in phi_range)
    return phi_range, (h_mean - h_half, h_mean + h_half)


def random_poses(generator_kwargs, count, seed):
    """camera_pos [count, 2] (phi, theta) uniform inside the config's trained pose range (pose_range),
    drawn from their own torch.Generator seeded with `seed`."""
    (phi_low, phi_high), (theta_low, theta_high) = pose_range(generator_kwargs)
    unit = torch.rand(count, 2, generator=torch.Generator().manual_seed(seed))
    return torch.stack([phi_low + (phi_high - phi_low) * unit[:, 0],
                        theta_low + (theta_high - theta_low) * unit[:, 1]], dim=-1)


def pose_grid(phi_range, theta_range, max_step):
    """camera_pos [C, 2] = (phi, theta) covering the ranges with neighbours at most max_step radians apart.

    Rings of constant phi, evenly spaced from phi_range[0] to phi_range[1] (both included); on each
    ring the thetas span theta_range (both ends included) with at most max_step of arc between
    neighbours, so rings near a pole hold fewer cameras (one at the pole itself). A theta range of
    a full turn or more is sampled once around, without repeating its end.
    """
    phi_span, theta_span = phi_range[1] - phi_range[0], theta_range[1] - theta_range[0]
    full_turn = theta_span >= FULL_TURN - ANGLE_EPS
    positions = []
    for phi in _evenly_spaced(*phi_range, 1 + math.ceil(phi_span / max_step - ANGLE_EPS)):
        arc = min(theta_span, FULL_TURN) * math.sin(phi)
        if full_turn:
            count = max(1, math.ceil(arc / max_step - ANGLE_EPS))
            thetas = [theta_range[0] + index * FULL_TURN / count for index in range(count)]
        else:
            thetas = _evenly_spaced(*theta_range, 1 + math.ceil(arc / max_step - ANGLE_EPS))
        positions += [(phi, theta) for theta in thetas]
    return torch.tensor(positions, dtype=torch.float32)


def _evenly_spaced(first, last, count):
    """count values from first to last inclusive; their middle when count is 1."""
    return [(first + last) / 2] if count == 1 else list(np.linspace(first, last, count))


def mean_view_direction(generator_kwargs):
    """Unit direction [3] from the camera of the pose prior's mean (h_mean, v_mean) to the origin."""
    camera_pos = torch.tensor([[generator_kwargs['v_mean'], generator_kwargs['h_mean']]], dtype=torch.float32)
    return -cameras.camera_origin_from_pos(camera_pos)[0]


def object_opacity_and_depth(weights, z_vals, points, background):
    """Object opacity [R] and depth [R] (NaN where opacity is 0) from the renderer's sorted slots.

    weights, z_vals [R, L, 1], points [R, L, 3] (as ManifoldRenderer.render returns them per camera);
    background: the renderer's `background` flag.
    """
    weights = weights[..., 0]
    if background:
        on_plane = (points[..., 2] - intersections.BACKGROUND_PLANE_Z).abs() < BACKGROUND_SLOT_TOLERANCE
        weights = torch.where(on_plane, torch.zeros_like(weights), weights)
    opacity = weights.sum(dim=-1)
    depth = (weights * z_vals[..., 0]).sum(dim=-1) / opacity
    return opacity, torch.where(opacity > 0, depth, torch.full_like(depth, float('nan')))


@torch.no_grad()
def render_views(generator, frequencies, phase_shifts, camera_pos, img_size, camera, progress=None):
    """Render one identity from several cameras, with the real view directions (as in training).

    Args:
        frequencies, phase_shifts: [1, 9 H] FiLM parameters (generator.film_parameters).
        camera_pos: [C, 2] (phi, theta).
        camera: {'fov', 'ray_start', 'ray_end'} (a config's camera section).
        progress: optional tqdm bar advanced once per camera.
    Returns:
        dict of CPU tensors: 'opacity' [C, N, N], 'depth' [C, N, N] (NaN without object),
        'rgb' [C, N, N, 3] in ~[0, 1], 'cam2world' [C, 4, 4].
    """
    device = frequencies.device
    renderer = generator.renderer
    cam2world = cameras.look_at_cam2world(cameras.camera_origin_from_pos(camera_pos.to(device)))
    opacities, depths, colours = [], [], []
    for view in range(camera_pos.shape[0]):
        result = renderer.render(generator.representation, frequencies, phase_shifts, cam2world[view:view + 1],
                                 img_size, camera['fov'], camera['ray_start'], camera['ray_end'],
                                 (0, img_size * img_size))
        opacity, depth = object_opacity_and_depth(result['weights'][0], result['z_vals'][0], result['points'][0],
                                                  renderer.background)
        opacities.append(opacity.reshape(img_size, img_size).cpu())
        depths.append(depth.reshape(img_size, img_size).cpu())
        colours.append(result['rgb'][0].reshape(img_size, img_size, 3).cpu())
        if progress is not None:
            progress.update(1)
    return {'opacity': torch.stack(opacities), 'depth': torch.stack(depths), 'rgb': torch.stack(colours),
            'cam2world': cam2world.cpu()}
