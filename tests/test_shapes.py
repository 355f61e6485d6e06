"""extract_shapes.py: a known density sphere gives a mesh of that radius; PLY round trip; CLI."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import configs
import extract_shapes
from generators import build_generator

SPHERE_RADIUS = 0.07   # r0 of the fake density, world units
SHARPNESS = 200.0      # k in sigma = SCALE * softplus(k (r0 - |p|))
SCALE = 20.0
THRESHOLD = SCALE * math.log(2)  # softplus(0) = ln 2: the level set is exactly |p| = r0
COLOR = (0.25, 0.5, 0.75)        # constant rgb of the fake network
HALF_EXTENT = 0.12
RESOLUTION = 24


def sphere_network(points, frequencies, phase_shifts, ray_directions):
    """Fake radiance network: points [B, N, 3] -> [B, N, 4], constant colour, spherical density."""
    radius = points.norm(dim=-1, keepdim=True)
    sigma = SCALE * F.softplus(SHARPNESS * (SPHERE_RADIUS - radius))
    rgb = torch.tensor(COLOR).expand(*points.shape[:-1], 3)
    return torch.cat([rgb, sigma], dim=-1)


@pytest.fixture
def sphere_generator(monkeypatch):
    torch.manual_seed(0)
    generator = build_generator(configs.get_config('TINY_test')).eval()
    monkeypatch.setattr(generator.representation.rf_network, 'forward_with_frequencies_phase_shifts', sphere_network)
    return generator


def read_ply(path):
    """Minimal reader for the files write_ply produces -> (vertices, faces, colors)."""
    with open(path, 'rb') as handle:
        data = handle.read()
    header, body = data.split(b'end_header\n', 1)
    lines = header.decode('ascii').splitlines()
    assert lines[:2] == ['ply', 'format binary_little_endian 1.0']
    num_vertices = int(next(line for line in lines if line.startswith('element vertex')).split()[-1])
    num_faces = int(next(line for line in lines if line.startswith('element face')).split()[-1])
    vertex_type = np.dtype([('xyz', '<f4', (3,)), ('rgb', 'u1', (3,))])
    face_type = np.dtype([('count', 'u1'), ('indices', '<i4', (3,))])
    vertices = np.frombuffer(body, vertex_type, num_vertices)
    faces = np.frombuffer(body, face_type, num_faces, offset=num_vertices * vertex_type.itemsize)
    assert len(body) == num_vertices * vertex_type.itemsize + num_faces * face_type.itemsize
    assert (faces['count'] == 3).all()
    return vertices['xyz'], faces['indices'], vertices['rgb']


def test_sphere_density_gives_a_mesh_of_that_radius(sphere_generator):
    z = torch.randn(1, sphere_generator.z_dim)
    vertices, faces, colors = extract_shapes.extract_mesh(
        sphere_generator, z, resolution=RESOLUTION, threshold=THRESHOLD, half_extent=HALF_EXTENT,
        chunk_points=1000)
    cell = 2 * HALF_EXTENT / (RESOLUTION - 1)
    radii = np.linalg.norm(vertices, axis=1)
    assert len(vertices) > 100
    assert np.abs(radii - SPHERE_RADIUS).max() < cell  # within one grid cell everywhere
    assert abs(radii.mean() - SPHERE_RADIUS) < 0.1 * cell
    # Faces point outwards (away from the dense inside).
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert ((normals * corners.mean(axis=1)).sum(axis=1) > 0).all()
    # Vertex colours: round(255 * COLOR) = (64, 128, 191).
    assert (colors == np.array([64, 128, 191], dtype=np.uint8)).all()


def test_threshold_outside_the_density_range_is_refused(sphere_generator):
    z = torch.randn(1, sphere_generator.z_dim)
    with pytest.raises(ValueError, match='never crosses --threshold 1e\\+06'):
        extract_shapes.extract_mesh(sphere_generator, z, resolution=6, threshold=1e6, half_extent=HALF_EXTENT)


def test_ply_round_trip(tmp_path):
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int32)
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [7, 8, 9]], dtype=np.uint8)
    extract_shapes.write_ply(str(tmp_path / 'tetra.ply'), vertices, faces, colors)
    read_vertices, read_faces, read_colors = read_ply(tmp_path / 'tetra.ply')
    np.testing.assert_array_equal(read_vertices, vertices)
    np.testing.assert_array_equal(read_faces, faces)
    np.testing.assert_array_equal(read_colors, colors)


def test_cli_writes_a_mesh_per_seed(tmp_path, capsys):
    torch.manual_seed(0)
    generator = build_generator(configs.get_config('TINY_test'))
    torch.save(generator.state_dict(), tmp_path / 'generator_ema.pth')
    # Pick a threshold inside the density range of seed 4 on the CLI's grid (TINY_test: bounds 1).
    resolution = 8
    torch.manual_seed(4)
    z = torch.randn(1, generator.z_dim)
    _, points = extract_shapes.grid_points(resolution, 1.0)
    with torch.no_grad():
        frequencies, phase_shifts = generator.film_parameters(z, 0.7)
        sigma = extract_shapes.evaluate_radiance(generator.representation.rf_network, frequencies, phase_shifts,
                                                 points, 4096)[:, 3]
    threshold = float(sigma.median())
    argv = ['--generator_file', str(tmp_path / 'generator_ema.pth'), '--config', 'TINY_test',
            '--output_dir', str(tmp_path / 'shapes'), '--resolution', str(resolution), '--device', 'cpu']
    extract_shapes.main(argv + ['--seeds', '4', '--threshold', str(threshold)])
    vertices, faces, colors = read_ply(tmp_path / 'shapes' / 'shape_4.ply')
    assert len(vertices) > 0 and len(faces) > 0 and len(colors) == len(vertices)
    assert np.abs(vertices).max() <= 1.0 + 1e-6  # inside the normalize box of TINY_test (normalize 2)

    assert extract_shapes.main(argv + ['--seeds', '4', '--threshold', '1e9']) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the tqdm bar
    assert last_line.startswith('error: density on the grid ranges')
