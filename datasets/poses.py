"""Pose file readers: each returns camera_pos = [phi, theta] as a float32 tensor [2] (docs/design.md §7).

phi is the polar angle from the +y axis (pi/2 = level), theta the azimuth (pi/2 = frontal).
`flip=True` gives the pose of the left-right mirrored image.
"""
import math

import numpy as np
import scipy.io
import torch

FFHQ_PITCH_OFFSET = 0.1   # Deep3DFaceRecon pitch of a level face, subtracted before use
CATS_PITCH_OFFSET = 0.14  # added to the preprocessed cat pitch


def read_pose(path, flip=False):
    """FFHQ: read a Deep3DFaceRecon `.mat` file with key 'angle' = [pitch, yaw, roll] (radians).

    Returns [phi, theta] = [-(pitch - 0.1) + pi/2, yaw + pi/2]; flipped: theta = -yaw + pi/2.
    """
    try:
        contents = scipy.io.loadmat(path)
    except scipy.io.matlab.MatReadError as error:
        raise ValueError(f"'{path}' is not a readable .mat file ({error})") from None
    if 'angle' not in contents:
        raise KeyError(f"pose file '{path}' has no 'angle' entry; expected a Deep3DFaceRecon .mat file")
    pitch, yaw = np.asarray(contents['angle'], dtype=np.float64).reshape(-1)[:2]
    phi = -(pitch - FFHQ_PITCH_OFFSET) + math.pi / 2
    theta = (-yaw if flip else yaw) + math.pi / 2
    return torch.tensor([phi, theta], dtype=torch.float32)


def read_pose_npy(path, flip=False):
    """Cats: read a `_pose.npy` file holding [pitch, yaw] from preprocessing.

    Returns [pitch + 0.14, yaw]; flipped: [pitch + 0.14, -yaw + pi].
    """
    pitch, yaw = np.asarray(np.load(path), dtype=np.float64).reshape(-1)[:2]
    theta = -yaw + math.pi if flip else yaw
    return torch.tensor([pitch + CATS_PITCH_OFFSET, theta], dtype=torch.float32)


def transform_matrix_to_camera_pos(c2w, flip=False):
    """CARLA: camera-to-world matrix (3x4 or 4x4, array or tensor) -> [phi, theta].

    The rows are reordered (new rows 0, 1, 2 = old rows 1, 2, 0) and c is the translation column
    of the result: theta = atan2(-c0, c2) + pi/2, phi = atan(-c1 / |(c0, c2)|) + pi/2;
    flipped: theta = -theta + pi. The caller's matrix is not modified.
    """
    if isinstance(c2w, torch.Tensor):
        c2w = c2w.detach().cpu().numpy()
    matrix = np.array(c2w, dtype=np.float64)  # a copy, never a view of the caller's array
    if matrix.shape not in ((3, 4), (4, 4)):
        raise ValueError(f"camera-to-world matrix must be 3x4 or 4x4, got shape {matrix.shape}")
    c0, c1, c2 = matrix[[1, 2, 0], 3]  # translation column after the row reorder
    theta = math.atan2(-c0, c2) + math.pi / 2
    phi = math.atan2(-c1, math.hypot(c0, c2)) + math.pi / 2  # = atan(-c1 / |(c0, c2)|), safe at the pole
    if flip:
        theta = -theta + math.pi
    return torch.tensor([phi, theta], dtype=torch.float32)


def read_extrinsics_npy(path, flip=False):
    """CARLA / posed image folder: read a `_extrinsics.npy` camera-to-world matrix -> [phi, theta]."""
    return transform_matrix_to_camera_pos(np.load(path), flip=flip)
