"""Cameras and rays (docs/design.md §1).

Conventions, written down once:
- A camera sits on the unit sphere and looks at the origin. Its position is
  ``camera_pos = [phi, theta]``: phi is the polar angle from +y (pitch), theta the azimuth (yaw);
  ``origin = (sin(phi) cos(theta), cos(phi), sin(phi) sin(theta))``.
  Worked example: phi = theta = pi/2 is the frontal camera at origin (0, 0, 1), looking down -z.
- Look-at frame: forward = normalize(-origin), left = normalize((0, 1, 0) x forward),
  up = normalize(forward x left); cam2world rotation columns = (-left, up, -forward), then the
  translation to ``origin``. In camera space the camera looks down -z, x points right, y up.
- Pixel grid of an N x N image: x from -1 (left column) to +1 (right column), y from +1 (top row)
  to -1 (bottom row); pixels are flattened row-major. Ray direction in camera space:
  normalize(x, y, -1 / tan(fov / 2)).
- EG3D cameras (`dataset.json`) convert with `eg3d_to_cam2world` / `cam2world_to_eg3d` and
  `fov_from_focal` / `focal_from_fov` below; docs/cameras.md maps every pose format to ours.
"""
import math

import torch

POLE_EPS = 1e-5  # phi is kept this far from the poles so the look-at frame stays defined


def sample_camera_positions(n, sample_dist, h_stddev, v_stddev, h_mean, v_mean, device, generator=None):
    """Draw n camera positions on the unit sphere.

    Random draws happen in this order: theta [n, 1], then phi [n, 1] (as the released code).
    Args:
        sample_dist: 'gaussian'/'normal', 'uniform', 'spherical_uniform'; anything else is fixed
            at (v_mean, h_mean).
        generator: optional torch.Generator for the draws.
    Returns:
        origins [n, 3] and camera_pos [n, 2] = (phi, theta).
    """
    def rand():
        return torch.rand((n, 1), device=device, generator=generator)

    def randn():
        return torch.randn((n, 1), device=device, generator=generator)

    if sample_dist in ('gaussian', 'normal'):
        theta = randn() * h_stddev + h_mean
        phi = randn() * v_stddev + v_mean
    elif sample_dist == 'uniform':
        theta = (rand() - 0.5) * 2 * h_stddev + h_mean
        phi = (rand() - 0.5) * 2 * v_stddev + v_mean
    elif sample_dist == 'spherical_uniform':
        theta = (rand() - 0.5) * 2 * h_stddev + h_mean
        v = (rand() - 0.5) * 2 * (v_stddev / math.pi) + v_mean / math.pi
        v = torch.clamp(v, POLE_EPS, 1 - POLE_EPS)
        phi = torch.arccos(1 - 2 * v)
    else:
        theta = torch.full((n, 1), float(h_mean), device=device)
        phi = torch.full((n, 1), float(v_mean), device=device)
    phi = torch.clamp(phi, POLE_EPS, math.pi - POLE_EPS)
    camera_pos = torch.cat([phi, theta], dim=-1)
    return camera_origin_from_pos(camera_pos), camera_pos


def camera_origin_from_pos(camera_pos, radius=1.0):
    """camera_pos [n, 2] = (phi, theta) -> origins [n, 3] on the sphere of `radius`."""
    phi, theta = camera_pos[:, 0:1], camera_pos[:, 1:2]
    return torch.cat([
        radius * torch.sin(phi) * torch.cos(theta),
        radius * torch.cos(phi),
        radius * torch.sin(phi) * torch.sin(theta),
    ], dim=-1)


def camera_pos_from_origin(origins):
    """origins [n, 3] -> camera_pos [n, 2] = (phi, theta); inverse of camera_origin_from_pos."""
    radius = torch.linalg.norm(origins, dim=-1)
    phi = torch.arccos(torch.clamp(origins[:, 1] / radius, -1.0, 1.0))
    theta = torch.atan2(origins[:, 2], origins[:, 0])
    return torch.stack([phi, theta], dim=-1)


def _normalize(vectors):
    return vectors / torch.norm(vectors, dim=-1, keepdim=True)


def look_at_cam2world(origins):
    """Camera-to-world matrices [n, 4, 4] for cameras at `origins` [n, 3] looking at (0, 0, 0)."""
    forward = _normalize(-origins)
    world_up = torch.tensor([0.0, 1.0, 0.0], dtype=origins.dtype, device=origins.device).expand_as(forward)
    left = _normalize(torch.cross(world_up, forward, dim=-1))
    up = _normalize(torch.cross(forward, left, dim=-1))
    cam2world = torch.eye(4, dtype=origins.dtype, device=origins.device).repeat(origins.shape[0], 1, 1)
    cam2world[:, :3, :3] = torch.stack([-left, up, -forward], dim=-1)
    cam2world[:, :3, 3] = origins
    return cam2world


def focal_depth(fov):
    """Camera-space z of the image plane at unit focal scale: -1 / tan(fov / 2), fov in degrees."""
    return -1.0 / math.tan(fov * math.pi / 360)


def camera_ray_directions(img_size, fov, pixel_start, pixel_end, device, dtype=torch.float32):
    """Unit ray directions in camera space for flat pixel indices [pixel_start, pixel_end).

    Returns [R, 3], R = pixel_end - pixel_start, pixels in row-major order.
    """
    flat = torch.arange(pixel_start, pixel_end, device=device)
    x = torch.linspace(-1, 1, img_size, device=device, dtype=dtype)[flat % img_size]  # columns, left -> right
    y = torch.linspace(1, -1, img_size, device=device, dtype=dtype)[flat // img_size]  # rows, top -> bottom
    z = torch.full_like(x, focal_depth(fov))
    return _normalize(torch.stack([x, y, z], dim=-1))


def world_rays(cam2world, camera_directions):
    """Move camera-space directions [R, 3] to world space for each camera.

    Args:
        cam2world: [B, 4, 4].
    Returns:
        ray origins [B, 3] and unit world directions [B, R, 3].
    """
    rotation = cam2world[:, :3, :3]
    directions = torch.einsum('bij,rj->bri', rotation, camera_directions)
    return cam2world[:, :3, 3], directions


def sample_depths(ray_start, ray_end, num_samples, device):
    """S depths evenly spaced from ray_start to ray_end inclusive (no jitter): [S]."""
    return torch.linspace(ray_start, ray_end, num_samples, device=device)


# ------------------------------------------------------------------------------------------
# EG3D cameras (docs/cameras.md §EG3D).
# ------------------------------------------------------------------------------------------
# EG3D's world axes are ours (y up, the front of the object towards +z), but its camera axes are
# OpenCV's: x right, y down, z forward (ours: x right, y up, looking down -z), and its cameras
# look at their own point from their own distance (FFHQ: about 2.7 from (0, 0, 0.175..0.2)).
OPENCV_TO_OURS_AXES = (1.0, -1.0, -1.0)  # cam2world rotation column signs: flip camera y and z


def eg3d_to_cam2world(eg3d_cam2world, look_at, radius):
    """EG3D camera-to-world matrices [n, 4, 4] -> ours [n, 4, 4] (same dtype and device).

    R_ours = R_eg3d · diag(1, -1, -1) (the camera's y and z axes flip) and
    t_ours = (t_eg3d - look_at) / radius: the point the cameras look at becomes the origin and a
    camera `radius` away from it lands on the unit sphere. `look_at` is [3], `radius` a float.

    Worked example (EG3D's FFHQ scale: look_at = (0, 0, 0.2), radius = 2.7):
    - the frontal EG3D camera at (0, 0, 2.9), rotation diag(1, -1, -1) (image down = world -y,
      forward = world -z), becomes ours with rotation I at (0, 0, 1): camera_pos = (pi/2, pi/2).
    - the EG3D camera 2.7 from look_at in direction (sin 0.3, 0, cos 0.3), i.e. at
      (0.797905, 0, 2.779409), has rotation columns right = (0.955336, 0, -0.295520),
      down = (0, -1, 0), forward = (-0.295520, 0, -0.955336). Ours: columns
      (0.955336, 0, -0.295520), (0, 1, 0), (0.295520, 0, 0.955336), origin
      (0.295520, 0, 0.955336), camera_pos = (pi/2, pi/2 - 0.3): the camera moved towards +x,
      so our theta decreased (EG3D's LookAtPoseSampler calls this h = pi/2 + 0.3; theta = pi - h).
    """
    look_at = torch.as_tensor(look_at, dtype=eg3d_cam2world.dtype, device=eg3d_cam2world.device)
    signs = torch.tensor(OPENCV_TO_OURS_AXES, dtype=eg3d_cam2world.dtype, device=eg3d_cam2world.device)
    cam2world = eg3d_cam2world.clone()
    cam2world[:, :3, :3] = eg3d_cam2world[:, :3, :3] * signs  # scales columns
    cam2world[:, :3, 3] = (eg3d_cam2world[:, :3, 3] - look_at) / radius
    return cam2world


def cam2world_to_eg3d(cam2world, look_at, radius):
    """Our camera-to-world matrices [n, 4, 4] -> EG3D's [n, 4, 4]; the inverse of eg3d_to_cam2world."""
    look_at = torch.as_tensor(look_at, dtype=cam2world.dtype, device=cam2world.device)
    signs = torch.tensor(OPENCV_TO_OURS_AXES, dtype=cam2world.dtype, device=cam2world.device)
    eg3d_cam2world = cam2world.clone()
    eg3d_cam2world[:, :3, :3] = cam2world[:, :3, :3] * signs
    eg3d_cam2world[:, :3, 3] = cam2world[:, :3, 3] * radius + look_at
    return eg3d_cam2world


def focal_from_fov(fov, img_size):
    """EG3D's normalised focal length (in image widths) for our `fov` (degrees) at img_size N.

    Our grid (module docstring) puts the centres of the outer pixel columns at x = ±tan(fov / 2);
    EG3D's intrinsics put pixel centre j at ((j + 0.5) / N - 0.5) / f, the outer ones at
    ±(N - 1) / (2N·f). The same rays through every pixel centre need f = (N - 1) / (2N·tan(fov / 2)).
    Worked example: fov = 12 at N = 256 gives f = 4.738599 (the image edges alone would give
    1 / (2·tan 6°) = 4.757182); EG3D's FFHQ f = 4.2647 is fov 13.322066 at 256 px.
    """
    return (img_size - 1) / (2 * img_size * math.tan(math.radians(fov) / 2))


def fov_from_focal(focal, img_size):
    """Our fov (degrees) at img_size N for EG3D's normalised focal length; inverse of focal_from_fov."""
    return math.degrees(2 * math.atan((img_size - 1) / (2 * img_size * focal)))
