"""Built-in synthetic dataset: ray-cast geometry, stored cameras, flip convention, file layout."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT
from PIL import Image

import configs
from datasets import read_extrinsics_npy, synthetic, transform_matrix_to_camera_pos
from datasets.synthetic import Wheel, box_part, render_view

FRONTAL = (math.pi / 2, math.pi / 2)  # camera at (0, 0, 1) looking down -z


def pixel_directions(img_size, cam2world, fov_deg=synthetic.FOV_DEG):
    """World ray directions [N, N, 3] written out from docs/design.md §1 (independent of the module)."""
    focal = 1 / math.tan(math.radians(fov_deg) / 2)
    directions = np.zeros((img_size, img_size, 3))
    for row in range(img_size):
        for col in range(img_size):
            x = -1 + 2 * col / (img_size - 1)
            y = 1 - 2 * row / (img_size - 1)
            d = np.array([x, y, -focal]) / math.sqrt(x * x + y * y + focal * focal)
            directions[row, col] = cam2world[:3, :3] @ d
    return directions


def project(point_carla, extrinsics, img_size, fov_deg=synthetic.FOV_DEG):
    """Pixel (row, col) of a CARLA-world point seen by a camera with CARLA extrinsics."""
    rotation, position = extrinsics[:3, :3], extrinsics[:3, 3]
    cam = rotation.T @ (point_carla - position)  # camera looks down -z
    focal = 1 / math.tan(math.radians(fov_deg) / 2)
    x, y = cam[0] * focal / -cam[2], cam[1] * focal / -cam[2]
    return (1 - y) / 2 * (img_size - 1), (x + 1) / 2 * (img_size - 1)


def test_frontal_camera_frame():
    cam2world = synthetic.look_at_cam2world(synthetic.camera_origin(*FRONTAL))
    np.testing.assert_allclose(cam2world, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], atol=1e-12)
    directions = synthetic.camera_ray_directions(3, fov_deg=90)  # focal 1
    np.testing.assert_allclose(directions[4], [0, 0, -1])                     # centre pixel
    np.testing.assert_allclose(directions[0], np.array([-1, 1, -1]) / math.sqrt(3))  # top-left


def test_box_depth_matches_analytic_plane():
    # Box front face at z = 0.2 seen from (0, 0, 1): depth = 0.8 / -d_z where the hit is on the face.
    size = 33
    box = box_part([-0.1, -0.1, -0.1], [0.1, 0.1, 0.2], (0.5, 0.5, 0.5))
    rgb, depth, mask, cam2world = render_view([box], FRONTAL, size)
    assert depth[16, 16] == pytest.approx(0.8, abs=1e-6)  # centre pixel, ray (0, 0, -1)
    directions = pixel_directions(size, cam2world)
    t_face = 0.8 / -directions[..., 2]
    hit = directions[..., :2] * t_face[..., None]  # [N, N, 2] x, y on the plane z = 0.2
    expected_mask = (np.abs(hit) <= 0.1).all(axis=-1)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(depth[mask], t_face[mask], rtol=1e-6)
    assert (depth[~mask] == 0).all() and (rgb[~mask] == synthetic.BACKGROUND).all()
    # Face normal (0, 0, 1): shade = ambient + diffuse * light_z.
    expected_shade = synthetic.AMBIENT + synthetic.DIFFUSE * synthetic.LIGHT_DIR[2]
    np.testing.assert_allclose(rgb[16, 16], 0.5 * expected_shade, rtol=1e-6)


def test_box_hits_are_first_surface_points_from_oblique_view():
    size = 24
    half = np.array([0.12, 0.07, 0.2])
    box = box_part(-half, half, (0.3, 0.6, 0.9))
    _, depth, mask, cam2world = render_view([box], (1.0, 0.7), size)
    origin = cam2world[:3, 3]
    directions = pixel_directions(size, cam2world)
    points = origin + directions * depth[..., None]
    # Hit points lie on the box boundary.
    boundary_gap = (np.abs(points) - half).max(axis=-1)
    np.testing.assert_allclose(boundary_gap[mask], 0, atol=1e-6)
    # Dense samples along each ray: missed rays never enter the box; hit rays not before the hit.
    ts = np.linspace(0, 2, 801)
    samples = origin + directions[..., None, :] * ts[:, None]  # [N, N, T, 3]
    inside = (np.abs(samples) < half - 1e-9).all(axis=-1)
    assert not inside[~mask].any()
    assert not (inside & (ts < depth[..., None] - 1e-6))[mask].any()
    assert inside[mask].any(axis=-1).mean() > 0.97  # rays grazing a corner may fall between samples


def test_wheel_depth_and_hub():
    wheel = Wheel(np.zeros(3), 0.1, 0.05)
    _, depth_side, _, _ = render_view([wheel], (math.pi / 2, 0.0), 33)  # camera at (1, 0, 0), on the axis
    assert depth_side[16, 16] == pytest.approx(0.95, abs=1e-6)          # cap at x = 0.05
    rgb, depth_front, mask, cam2world = render_view([wheel], FRONTAL, 33)
    assert depth_front[16, 16] == pytest.approx(0.9, abs=1e-6)          # tread at z = 0.1
    # Tread pixels (not the caps): solve y^2 + z^2 = r^2 along each ray by hand.
    directions = pixel_directions(33, cam2world)
    dy, dz = directions[..., 1], directions[..., 2]
    a, b, c = dy ** 2 + dz ** 2, 2 * dz, 1 - 0.1 ** 2  # origin (0, 0, 1)
    t = (-b - np.sqrt(np.maximum(b * b - 4 * a * c, 0))) / (2 * a)
    x_hit = directions[..., 0] * t
    tread = (b * b - 4 * a * c > 0) & (np.abs(x_hit) < 0.05 - 1e-3)
    assert tread.sum() > 20
    np.testing.assert_allclose(depth_front[tread], t[tread], rtol=1e-6)
    # Seen along the axis the cap centre is hub-coloured, its rim tyre-coloured.
    rgb_side, _, _, _ = render_view([wheel], (math.pi / 2, 0.0), 33)
    shade = synthetic.AMBIENT  # cap normal (1, 0, 0) is perpendicular to the light
    np.testing.assert_allclose(rgb_side[16, 16], np.array(synthetic.HUB) * shade, rtol=1e-6)


def test_stored_extrinsics_reproduce_the_camera():
    size = 41
    camera_pos = (1.1, 2.3)
    point = np.array([0.15, 0.05, -0.1])  # our axes
    marker = box_part(point - 0.006, point + 0.006, (1, 0, 0))
    _, depth, mask, cam2world = render_view([marker], camera_pos, size)
    extrinsics = synthetic.to_carla_extrinsics(cam2world)

    # The CARLA reader recovers the camera; its origin is ours with axes (z, x, y).
    np.testing.assert_allclose(transform_matrix_to_camera_pos(extrinsics).numpy(), camera_pos, atol=1e-6)
    origin = synthetic.camera_origin(*camera_pos)
    np.testing.assert_allclose(extrinsics[:3, 3], [origin[2], origin[0], origin[1]], atol=1e-12)

    # Projecting the marker with the stored matrix lands on the rendered marker.
    point_carla = np.array([point[2], point[0], point[1]])
    row, col = project(point_carla, extrinsics, size)
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - row) < 0.5 and abs(cols.mean() - col) < 0.5
    assert depth[mask].min() == pytest.approx(np.linalg.norm(point - origin), abs=0.012)


def test_dataset_cameras_round_trip_and_objects_fit(tmp_path):
    size = 24
    written, done = synthetic.render_synthetic_dataset(str(tmp_path), num_images=40, img_size=size,
                                                       seed=3, workers=1, progress=False)
    assert (written, done) == (40, 0)
    directions_cam = synthetic.camera_ray_directions(size)
    for index in range(40):
        name = f'{index:06d}'
        extrinsics = np.load(tmp_path / 'poses' / f'{name}_extrinsics.npy')
        depth = np.load(tmp_path / 'depth' / f'{name}_depth.npy')
        mask = np.asarray(Image.open(tmp_path / 'masks' / f'{name}_mask.png')) > 0
        rgb = np.asarray(Image.open(tmp_path / f'{name}.png'))
        assert rgb.shape == (size, size, 3) and depth.dtype == np.float32 and depth.shape == (size, size)
        # The look-at point (world origin) projects to the image centre.
        np.testing.assert_allclose(project(np.zeros(3), extrinsics, size), [(size - 1) / 2] * 2, atol=1e-9)
        # Re-rendering from the pose the CARLA reader recovers gives the same picture.
        camera_pos = read_extrinsics_npy(str(tmp_path / 'poses' / f'{name}_extrinsics.npy')).double().numpy()
        rng = np.random.default_rng([3, index])
        parts = synthetic.sample_car(rng)
        rgb_again, depth_again, _, _ = render_view(parts, camera_pos, size)
        assert np.abs(np.round(rgb_again * 255) - rgb).mean() < 1.0
        # Every surface point lies in the object ball, inside the ray range and inside the frame.
        assert mask.any() and not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        assert (depth[mask] > synthetic.RAY_START).all() and (depth[mask] < synthetic.RAY_END).all()
        assert (depth[~mask] == 0).all()
        cam2world_rotation = synthetic.OURS_TO_CARLA.T @ extrinsics[:3, :3]
        origin = synthetic.OURS_TO_CARLA.T @ extrinsics[:3, 3]
        points = origin + (directions_cam @ cam2world_rotation.T) * depth.reshape(-1, 1)
        assert (np.linalg.norm(points[mask.reshape(-1)], axis=1) < synthetic.OBJECT_RADIUS).all()


def test_flip_is_the_mirrored_camera():
    # The car and the light are mirror-symmetric in x, so the image from (phi, pi - theta) is the
    # left-right flip of the image from (phi, theta) -- the pose the readers give a flipped image.
    parts = synthetic.sample_car(np.random.default_rng(7))
    camera_pos = (1.2, 0.4)
    rgb, depth, mask, cam2world = render_view(parts, camera_pos, 32)
    flipped_pos = transform_matrix_to_camera_pos(synthetic.to_carla_extrinsics(cam2world), flip=True).double().numpy()
    np.testing.assert_allclose(flipped_pos, [camera_pos[0], math.pi - camera_pos[1]], atol=1e-6)
    rgb_m, depth_m, mask_m, _ = render_view(parts, (camera_pos[0], math.pi - camera_pos[1]), 32)
    assert (mask_m != mask[:, ::-1]).sum() <= 2  # silhouette pixels may tip either way
    same = mask_m & mask[:, ::-1]
    np.testing.assert_allclose(depth_m[same], depth[:, ::-1][same], atol=1e-5)
    colour_differs = (np.abs(rgb_m - rgb[:, ::-1]) > 1e-4).any(axis=-1) & same
    assert colour_differs.sum() <= 2  # pixels on an edge between two faces may tip either way


def test_front_and_back_differ_and_seed_determinism():
    rgb_front, _, _, _ = render_view(synthetic.sample_car(np.random.default_rng(1)), FRONTAL, 32)
    rgb_back, _, _, _ = render_view(synthetic.sample_car(np.random.default_rng(1)), (math.pi / 2, -math.pi / 2), 32)
    # Headlights face the front camera, tail lights the back camera.
    assert np.isclose(rgb_front, synthetic.HEADLIGHT, atol=0.35).all(axis=-1).any()
    assert not np.isclose(rgb_back, synthetic.HEADLIGHT, atol=0.35).all(axis=-1).any()
    first, second = synthetic.render_example(5, 3, 16), synthetic.render_example(5, 3, 16)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], synthetic.render_example(5, 4, 16)[0])


def test_rerun_skips_and_parallel_matches(tmp_path):
    serial, parallel = tmp_path / 'serial', tmp_path / 'parallel'
    assert synthetic.render_synthetic_dataset(str(serial), 6, 16, seed=2, workers=1, progress=False) == (6, 0)
    assert synthetic.render_synthetic_dataset(str(parallel), 6, 16, seed=2, workers=2, progress=False) == (6, 0)
    for name in sorted(os.listdir(serial / 'poses')):
        assert (serial / 'poses' / name).read_bytes() == (parallel / 'poses' / name).read_bytes()
    assert (serial / '000004.png').read_bytes() == (parallel / '000004.png').read_bytes()
    assert synthetic.render_synthetic_dataset(str(serial), 6, 16, seed=2, workers=1, progress=False) == (0, 6)
    assert synthetic.render_synthetic_dataset(str(serial), 6, 16, seed=2, workers=1, overwrite=True,
                                              progress=False) == (6, 0)
    with pytest.raises(ValueError, match='img_size=16'):
        synthetic.render_synthetic_dataset(str(serial), 6, 32, seed=2, workers=1, progress=False)
    # Overwriting with another seed but fewer examples would leave the old 000004-000005 mixed in.
    with pytest.raises(ValueError, match='holds 2 more examples of another set than --num_images 4 replaces'):
        synthetic.render_synthetic_dataset(str(serial), 4, 16, seed=3, workers=1, overwrite=True, progress=False)
    assert synthetic.render_synthetic_dataset(str(serial), 6, 16, seed=3, workers=1, overwrite=True,
                                              progress=False) == (6, 0)
    assert synthetic.render_synthetic_dataset(str(serial), 4, 16, seed=3, workers=1, overwrite=True,
                                              progress=False) == (4, 0)  # the same set: no mixing


def test_command_line(tmp_path):
    out = tmp_path / 'synthetic'
    command = [sys.executable, os.path.join(ROOT, 'preprocess_dataset.py'), '--cate=synthetic',
               '--num_images=3', '--img_size=16', f'--output_dir={out}', '--workers=1']
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'synthetic: 3 written, 0 already done, 0 skipped' in result.stdout
    for name in ['000002.png', 'poses/000002_extrinsics.npy', 'depth/000002_depth.npy',
                 'masks/000002_mask.png', 'preprocess_report.json', 'synthetic_info.json']:
        assert (out / name).exists(), name
    assert Image.open(out / '000002.png').size == (16, 16)


def test_config_pose_distribution_bounds_the_dataset_cameras(tmp_path):
    config = configs.get_config('SYNTHETIC_demo')
    poses = synthetic.poses_from_config(config)
    kwargs = config['generator']['kwargs']
    assert poses == {key: kwargs[key] for key in synthetic.POSE_KEYS} and poses['sample_dist'] == 'uniform'
    synthetic.render_synthetic_dataset(str(tmp_path), 30, 16, seed=1, poses=poses, workers=1, progress=False)
    camera_pos = np.stack([read_extrinsics_npy(str(tmp_path / 'poses' / f'{i:06d}_extrinsics.npy')).double().numpy()
                           for i in range(30)])  # [30, 2] = (phi, theta)
    # uniform: phi in v_mean +- v_stddev, theta in h_mean +- h_stddev (slack: float32 draws).
    assert (np.abs(camera_pos[:, 0] - poses['v_mean']) <= poses['v_stddev'] + 1e-6).all()
    assert (np.abs(camera_pos[:, 1] - poses['h_mean']) <= poses['h_stddev'] + 1e-6).all()
    assert camera_pos[:, 1].std() > poses['h_stddev'] / 4  # spread out, not one view
    # The default (CARLA) distribution reaches far outside that range.
    default_pos = [synthetic.sample_camera_pos(np.random.default_rng([1, i])) for i in range(30)]
    assert max(abs(theta - poses['h_mean']) for _, theta in default_pos) > 2 * poses['h_stddev']
    # Same folder, other poses: refused rather than mixed.
    with pytest.raises(ValueError, match='poses='):
        synthetic.render_synthetic_dataset(str(tmp_path), 30, 16, seed=1, workers=1, progress=False)


def test_config_with_another_camera_is_refused():
    with pytest.raises(ValueError, match='fov=12'):
        synthetic.poses_from_config(configs.get_config('FFHQ_default'))


def test_command_line_config_option(tmp_path):
    out = tmp_path / 'demo_poses'
    base = [sys.executable, os.path.join(ROOT, 'preprocess_dataset.py'), '--cate=synthetic', '--num_images=2',
            '--img_size=16', f'--output_dir={out}', '--workers=1']
    result = subprocess.run(base + ['--config=SYNTHETIC_demo'], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    info = json.loads((out / 'synthetic_info.json').read_text())
    assert info['poses'] == synthetic.poses_from_config(configs.get_config('SYNTHETIC_demo'))
    result = subprocess.run(base + ['--config=NOPE'], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and "unknown --config 'NOPE'" in result.stderr
