"""Camera conventions (docs/cameras.md): EG3D <-> ours, and every pose file format both ways."""
import math

import numpy as np
import pytest
import scipy.io
import torch
from eg3d_reference import (
    FFHQ_FOCAL,
    FFHQ_LOOK_AT,
    FFHQ_RADIUS,
    eg3d_camera,
    eg3d_create_cam2world,
)

from datasets import read_extrinsics_npy, read_pose, read_pose_npy
from datasets.synthetic import to_carla_extrinsics
from generators import cameras


def to_ours(matrix, look_at=FFHQ_LOOK_AT, radius=FFHQ_RADIUS):
    return cameras.eg3d_to_cam2world(torch.from_numpy(matrix)[None], look_at, radius)[0].numpy()


def our_camera(phi, theta):
    origin = cameras.camera_origin_from_pos(torch.tensor([[phi, theta]], dtype=torch.float64))
    return cameras.look_at_cam2world(origin)[0].numpy()


def test_frontal_eg3d_camera_is_our_frontal_camera():
    # EG3D's LookAtPoseSampler.sample(pi/2, pi/2, (0, 0, 0.2), radius=2.7): at (0, 0, 2.7), image down = -y.
    eg3d = eg3d_create_cam2world(np.array(FFHQ_LOOK_AT) - [0, 0, 2.7], [0, 0, 2.7])
    np.testing.assert_allclose(eg3d[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    ours = to_ours(eg3d, radius=2.5)  # 2.5 from the pivot
    frontal = np.eye(4)
    frontal[:3, 3] = [0, 0, 1]  # rotation I at (0, 0, 1): our frontal camera
    np.testing.assert_allclose(ours, frontal, atol=1e-12)
    camera_pos = cameras.camera_pos_from_origin(torch.from_numpy(ours[None, :3, 3]))[0]
    np.testing.assert_allclose(camera_pos.numpy(), [math.pi / 2, math.pi / 2], atol=1e-12)


def test_docstring_worked_example():
    eg3d = eg3d_camera(math.pi / 2 + 0.3, math.pi / 2, FFHQ_LOOK_AT, FFHQ_RADIUS)
    np.testing.assert_allclose(eg3d[:3, 3], [0.797905, 0, 2.779409], atol=1e-6)
    np.testing.assert_allclose(eg3d[:3, :3], [[0.955336, 0, -0.295520], [0, -1, 0], [-0.295520, 0, -0.955336]], atol=1e-6)
    ours = to_ours(eg3d)
    np.testing.assert_allclose(ours[:3, :3], [[0.955336, 0, 0.295520], [0, 1, 0], [-0.295520, 0, 0.955336]], atol=1e-6)
    np.testing.assert_allclose(ours[:3, 3], [0.295520, 0, 0.955336], atol=1e-6)
    assert cameras.focal_from_fov(12, 256) == pytest.approx(4.738599, abs=1e-6)
    assert cameras.fov_from_focal(FFHQ_FOCAL, 256) == pytest.approx(13.322066, abs=1e-6)


@pytest.mark.parametrize('h, v', [(math.pi / 2, math.pi / 2), (math.pi / 2 + 0.4, math.pi / 2 - 0.2),
                                  (0.3, 1.0), (math.pi + 1.0, 2.0)])
def test_eg3d_sampler_angles_map_to_ours(h, v):
    # EG3D (h, v) is our theta = pi - h, phi = arccos(1 - 2v / pi); both give the same look-at camera.
    ours = to_ours(eg3d_camera(h, v, FFHQ_LOOK_AT, FFHQ_RADIUS))
    np.testing.assert_allclose(ours, our_camera(math.acos(1 - 2 * v / math.pi), math.pi - h), atol=1e-12)


def test_eg3d_conversion_round_trip():
    rotations = torch.linalg.qr(torch.randn(5, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0]
    rotations = rotations * torch.linalg.det(rotations)[:, None, None]  # det +1
    matrices = torch.eye(4, dtype=torch.float64).repeat(5, 1, 1)
    matrices[:, :3, :3] = rotations
    matrices[:, :3, 3] = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = cameras.eg3d_to_cam2world(matrices, FFHQ_LOOK_AT, FFHQ_RADIUS)
    torch.testing.assert_close(cameras.cam2world_to_eg3d(ours, FFHQ_LOOK_AT, FFHQ_RADIUS), matrices, rtol=0, atol=1e-12)
    for size in (16, 64, 256, 512):
        for fov in (12.0, 13.37, 30.0):
            assert cameras.fov_from_focal(cameras.focal_from_fov(fov, size), size) == pytest.approx(fov, abs=1e-10)


@pytest.mark.parametrize('size, fov', [(8, 30.0), (5, 12.0)])
def test_every_pixel_ray_matches_eg3d(size, fov):
    """Our rays equal EG3D's ray sampler for the converted camera and focal_from_fov."""
    eg3d = eg3d_camera(math.pi / 2 - 0.5, math.pi / 2 - 0.3, FFHQ_LOOK_AT, FFHQ_RADIUS)
    focal = cameras.focal_from_fov(fov, size)
    # EG3D: pixel (row i, column j) at uv = ((j + 0.5) / N, (i + 0.5) / N), camera ray ((u - 0.5) / f, (v - 0.5) / f, 1).
    rows, columns = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
    camera_rays = np.stack([((columns + 0.5) / size - 0.5) / focal, ((rows + 0.5) / size - 0.5) / focal,
                            np.ones_like(rows, dtype=np.float64)], axis=-1).reshape(-1, 3)
    eg3d_rays = camera_rays @ eg3d[:3, :3].T
    eg3d_rays /= np.linalg.norm(eg3d_rays, axis=-1, keepdims=True)
    ours = torch.from_numpy(to_ours(eg3d))[None]
    directions = cameras.camera_ray_directions(size, fov, 0, size * size, 'cpu', dtype=torch.float64)
    _, our_rays = cameras.world_rays(ours, directions)
    np.testing.assert_allclose(our_rays[0].numpy(), eg3d_rays, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Our pose files, both ways (docs/cameras.md: the inverse formulas).
# ------------------------------------------------------------------------------------------
POSES = [(math.pi / 2, math.pi / 2), (math.pi / 2 + 0.3, math.pi / 2 - 0.4), (1.0, 2.0)]


@pytest.mark.parametrize('phi, theta', POSES)
def test_ffhq_mat_both_ways(tmp_path, phi, theta):
    pitch, yaw = math.pi / 2 - phi + 0.1, theta - math.pi / 2  # docs/cameras.md inverse
    scipy.io.savemat(tmp_path / 'a.mat', {'angle': np.array([[pitch, yaw, 0.05]])})
    np.testing.assert_allclose(read_pose(tmp_path / 'a.mat').numpy(), [phi, theta], atol=1e-6)
    np.testing.assert_allclose(read_pose(tmp_path / 'a.mat', flip=True).numpy(), [phi, math.pi - theta], atol=1e-6)


@pytest.mark.parametrize('phi, theta', POSES)
def test_cats_pose_both_ways(tmp_path, phi, theta):
    np.save(tmp_path / 'a_pose.npy', np.array([phi - 0.14, theta]))  # docs/cameras.md inverse
    np.testing.assert_allclose(read_pose_npy(tmp_path / 'a_pose.npy').numpy(), [phi, theta], atol=1e-6)
    np.testing.assert_allclose(read_pose_npy(tmp_path / 'a_pose.npy', flip=True).numpy(), [phi, math.pi - theta], atol=1e-6)


@pytest.mark.parametrize('phi, theta', POSES)
def test_carla_extrinsics_both_ways(tmp_path, phi, theta):
    np.save(tmp_path / 'a_extrinsics.npy', to_carla_extrinsics(our_camera(phi, theta)))
    np.testing.assert_allclose(read_extrinsics_npy(tmp_path / 'a_extrinsics.npy').numpy(), [phi, theta], atol=1e-6)
    np.testing.assert_allclose(read_extrinsics_npy(tmp_path / 'a_extrinsics.npy', flip=True).numpy(),
                               [phi, math.pi - theta], atol=1e-6)


def test_docs_worked_camera_in_every_format(tmp_path):
    """docs/cameras.md §1-§2: phi = pi/2 - 0.3, theta = pi/2 + 0.5 in each format."""
    phi, theta = math.pi / 2 - 0.3, math.pi / 2 + 0.5
    ours = our_camera(phi, theta)
    np.testing.assert_allclose(ours, [[0.877583, 0.141680, -0.458013, -0.458013], [0, 0.955336, 0.295520, 0.295520],
                                      [0.479426, -0.259343, 0.838387, 0.838387], [0, 0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(to_carla_extrinsics(ours)[:3], [[0.479426, -0.259343, 0.838387, 0.838387],
                                                               [0.877583, 0.141680, -0.458013, -0.458013],
                                                               [0, 0.955336, 0.295520, 0.295520]], atol=1e-6)
    eg3d = cameras.cam2world_to_eg3d(torch.from_numpy(ours)[None], FFHQ_LOOK_AT, FFHQ_RADIUS)[0].numpy()
    np.testing.assert_allclose(eg3d[:3], [[0.877583, -0.141680, 0.458013, -1.236634],
                                          [0, -0.955336, -0.295520, 0.797905],
                                          [0.479426, 0.259343, -0.838387, 2.463644]], atol=1e-6)
    h, v = 1.070796, 1.106594  # EG3D's LookAtPoseSampler angles of the same camera
    np.testing.assert_allclose(eg3d, eg3d_camera(h, v, FFHQ_LOOK_AT, FFHQ_RADIUS), atol=1e-5)
    assert cameras.focal_from_fov(30.0, 64) == pytest.approx(1.836869, abs=1e-6)
    scipy.io.savemat(tmp_path / 'a.mat', {'angle': np.array([[0.4, 0.5, 0.0]])})
    np.testing.assert_allclose(read_pose(tmp_path / 'a.mat').numpy(), [phi, theta], atol=1e-6)
    np.save(tmp_path / 'a_pose.npy', np.array([1.130796, 2.070796]))
    np.testing.assert_allclose(read_pose_npy(tmp_path / 'a_pose.npy').numpy(), [phi, theta], atol=1e-6)
