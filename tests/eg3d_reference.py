"""Test helpers for the EG3D conversions (not tests): EG3D's own camera code restated in numpy,
independent of generators/cameras.py, and the numbers of its FFHQ setting."""
import math

import numpy as np

FFHQ_LOOK_AT = (0.0, 0.0, 0.2)  # EG3D's FFHQ camera pivot
FFHQ_RADIUS = 2.7               # EG3D's FFHQ camera distance
FFHQ_FOCAL = 2985.29 / 700      # EG3D's FFHQ normalised focal length (4.2647)


def normalize(vector):
    return vector / np.linalg.norm(vector)


def eg3d_create_cam2world(forward, origin):
    """EG3D's camera_utils.create_cam2world_matrix, restated for one camera."""
    forward = normalize(forward)
    right = -normalize(np.cross([0.0, 1.0, 0.0], forward))
    up = normalize(np.cross(forward, right))
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([right, up, forward], axis=-1)
    matrix[:3, 3] = origin
    return matrix


def eg3d_direction(h, v):
    """Unit camera direction of EG3D's LookAtPoseSampler for horizontal h and vertical v."""
    phi = math.acos(1 - 2 * v / math.pi)
    return np.array([math.sin(phi) * math.cos(math.pi - h), math.cos(phi), math.sin(phi) * math.sin(math.pi - h)])


def eg3d_camera(h, v, look_at, radius):
    """An EG3D camera `radius` from `look_at` in direction (h, v), looking at it (EG3D's
    preprocess_cameras.py 'simplify' mode)."""
    origin = np.asarray(look_at) + radius * eg3d_direction(h, v)
    return eg3d_create_cam2world(np.asarray(look_at) - origin, origin)
