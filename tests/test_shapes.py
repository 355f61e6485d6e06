"""extract_shapes.py: the demo mesh reproduces the renders; random-weight configs give sane meshes; CLI.

Acceptance: for the shipped demo model, from cameras drawn inside its trained pose range
(not the fused grid), the mesh's silhouette matches the object mask with IoU >= 0.85 and its
front-surface depth matches the rendered depth with a median relative error <= 2%, and no part of
the mesh floats outside the object. The object mask is the generator's own composited weight
(geometry/views.py): SYNTHETIC_demo has no background slot, so the object opacity of a pixel is the
sum of its slot weights, and the mask is opacity >= 0.5 (views.DEFAULT_OPACITY_THRESHOLD).
benchmarks/mesh_accuracy.py prints the same quantities for more seeds (docs/shapes.md).
"""
import math
import os

import numpy as np
import pytest
import torch
from helpers import ROOT, read_ply, write_inversion

import configs
import extract_shapes
from checkpoints.loading import load_generator
from generators import build_generator, intersections
from geometry import extraction, meshing, views
from utils.seeds import latent_for_seed

DEMO_MODEL = os.path.join(ROOT, 'demo', 'synthetic_demo.pt')
DEMO_SEEDS = (0, 1, 2)
DEMO_PSI = extract_shapes.DEFAULT_PSI
NUM_TEST_CAMERAS = 4       # random cameras inside the trained pose range, per seed
TEST_CAMERA_SEED = 123
TEST_IMAGE_SIZE = 64       # twice the demo's training resolution
MIN_IOU = 0.85
MAX_DEPTH_ERROR = 0.02     # median relative error
MAX_OUTSIDE = 0.05         # fraction of mesh pixels outside the object mask (floaters would raise it)
MIN_COMPONENT_SHARE = 0.01  # every connected component holds at least this share of the vertices
MAX_RADIUS = 0.5           # sane bounds: the subject stays well inside the camera sphere (radius 1)
RANDOM_FACE_THRESHOLD = 0.3  # random FFHQ / Cats weights composite a smooth object opacity of 0.3-0.5
TINY_THRESHOLD = 0.05     # random TINY_test weights composite to an object opacity of at most ~0.08
TINY_ARGS = ['--resolution', '16', '--view_size', '12', '--view_step', '60', '--device', 'cpu']
SMALL_ARGS = ['--resolution', '24', '--view_size', '16', '--view_step', '30', '--device', 'cpu']  # fast demo meshes
LATENT_SEED = 2            # the demo seed stored as an inversion
LATENT_CAMERA = (1.0, 1.5)  # (phi, theta) stored with it; meshing does not use it
VERTEX_TOLERANCE = 1e-6    # world units between the vertices of its --latent and --seeds meshes


@pytest.fixture(autouse=True)
def one_thread():
    """Run single-threaded: on a loaded 2-core machine, OpenMP threads spinning at barriers made the
    demo test ~10x slower with 2 threads (117 s instead of 9 s); one thread needs no barrier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_mesh_matches_the_renders():
    generator, config = load_generator(DEMO_MODEL, None, 'cpu', use_ema=True)
    assert not generator.renderer.background  # the mask definition above relies on it
    fused_cameras = extraction.fusion_cameras(config, extraction.DEFAULT_VIEW_STEP)
    test_cameras = views.random_poses(config['generator']['kwargs'], NUM_TEST_CAMERAS, TEST_CAMERA_SEED)
    for seed in DEMO_SEEDS:
        z = latent_for_seed(seed, generator.z_dim, 'cpu')
        vertices, faces, colors, _ = extraction.extract_mesh(
            generator, config, *generator.film_parameters(z, DEMO_PSI), fused_cameras)
        assert len(vertices) > 1000 and colors.shape == vertices.shape and colors.dtype == np.uint8
        assert np.linalg.norm(vertices, axis=1).max() < MAX_RADIUS
        sizes = meshing.component_sizes(faces, len(vertices))
        assert sizes.min() >= MIN_COMPONENT_SHARE * len(vertices), f'seed {seed}: floating parts {sizes}'

        agreements = extraction.agreement_with_renders(generator, config, *generator.film_parameters(z, DEMO_PSI),
                                                       vertices, faces, test_cameras, TEST_IMAGE_SIZE)
        for pose, result in zip(test_cameras.tolist(), agreements):
            where = f'seed {seed}, camera {pose}: {result}'
            assert result['iou'] >= MIN_IOU, where
            assert result['depth_error'] <= MAX_DEPTH_ERROR, where
            assert result['outside'] <= MAX_OUTSIDE, where


@pytest.mark.parametrize('config_name', ['FFHQ_default', 'CATS_default'])
def test_random_weights_give_a_surface_in_front_of_the_background(config_name):
    torch.manual_seed(0)
    config = configs.get_config(config_name)
    generator = build_generator(config).eval()
    frequencies, phase_shifts = generator.film_parameters(latent_for_seed(0, generator.z_dim, 'cpu'), DEMO_PSI)
    camera_pos = extraction.fusion_cameras(config, 60.0)
    vertices, faces, colors, agreement = extraction.extract_mesh(
        generator, config, frequencies, phase_shifts, camera_pos, resolution=16, view_size=12,
        threshold=RANDOM_FACE_THRESHOLD)
    assert len(vertices) > 0 and len(faces) > 0 and len(colors) == len(vertices)
    assert np.isfinite(vertices).all()
    assert vertices[:, 2].min() >= intersections.BACKGROUND_PLANE_Z - 1e-6
    assert np.linalg.norm(vertices, axis=1).max() < MAX_RADIUS
    assert len(agreement) == len(camera_pos)


def test_fusion_cameras_cover_the_trained_range():
    config = configs.get_config('SYNTHETIC_demo')  # uniform: azimuth pi/2 +- pi/4, phi pi/3 +- pi/12
    camera_pos = extraction.fusion_cameras(config, 15.0)
    assert len(camera_pos) == 6 + 7 + 7  # rings at phi = 45, 60 and 75 degrees from +y
    phi, theta = camera_pos[:, 0], camera_pos[:, 1]
    assert (float(theta.min()), float(theta.max())) == pytest.approx((math.pi / 4, 3 * math.pi / 4))
    assert (float(phi.min()), float(phi.max())) == pytest.approx((math.pi / 4, 5 * math.pi / 12))


@pytest.fixture
def tiny_generator_file(tmp_path):
    torch.manual_seed(0)
    generator = build_generator(configs.get_config('TINY_test'))
    path = tmp_path / 'generator_ema.pth'
    torch.save(generator.state_dict(), path)
    return str(path)


@pytest.mark.parametrize('mesh_format', ['ply', 'obj'])
def test_cli_writes_a_mesh_per_seed(tiny_generator_file, tmp_path, mesh_format):
    output_dir = tmp_path / 'shapes'
    code = extract_shapes.main(['--generator_file', tiny_generator_file, '--config', 'TINY_test', '--seeds', '3,4',
                                '--output_dir', str(output_dir), '--format', mesh_format,
                                '--threshold', str(TINY_THRESHOLD)] + TINY_ARGS)
    assert code == 0
    assert sorted(os.listdir(output_dir)) == [f'shape_3.{mesh_format}', f'shape_4.{mesh_format}']


def test_cli_failed_seed_is_named_and_writes_nothing(tiny_generator_file, tmp_path, capsys):
    output_dir = tmp_path / 'shapes'
    code = extract_shapes.main(['--generator_file', tiny_generator_file, '--config', 'TINY_test', '--seeds', '4',
                                '--output_dir', str(output_dir), '--threshold', '0.999999'] + TINY_ARGS)
    assert code == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last_line.startswith("error: seed 4: the object's opacity never reaches --threshold")
    assert not output_dir.exists() or os.listdir(output_dir) == []


@pytest.mark.parametrize('flags, message', [
    (['--threshold', '10'], '--threshold is an object opacity between 0 and 1'),
    (['--resolution', '4'], '--resolution must be >='),
    (['--view_size', '2'], '--view_size must be >='),
    (['--view_step', '0'], '--view_step must be > 0'),
    (['--view_step', 'inf'], '--view_step must be > 0'),
    (['--psi', 'nan'], '--psi must be in [0, 1]'),
    (['--seeds', '3-1'], "invalid seeds '3-1'"),
    (['--latent', 'inversion.pt', '--seeds', '1'], '--latent meshes the inverted subject instead of seeds; drop --seeds'),
    (['--latent', 'inversion.pt', '--config', 'SYNTHETIC_demo'], '--latent meshes with the config stored in it'),
])
def test_cli_checks_arguments_before_loading(tmp_path, capsys, flags, message):
    missing = str(tmp_path / 'missing.pt')  # never read: the arguments fail first
    assert extract_shapes.main(['--generator_file', missing, '--output_dir', str(tmp_path)] + flags) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f'error: {message}') and len(error.splitlines()) == 1


def test_cli_refuses_an_output_dir_that_is_a_file_before_loading(tmp_path, capsys):
    occupied = tmp_path / 'shapes'
    occupied.write_text('not a folder')
    assert extract_shapes.main(['--generator_file', str(tmp_path / 'missing.pt'), '--output_dir', str(occupied)]) == 1
    error = capsys.readouterr().err.strip()
    assert 'not a folder' in error and len(error.splitlines()) == 1 and occupied.read_text() == 'not a folder'


def test_cli_latent_meshes_the_inverted_subject_like_its_seed(tmp_path):
    generator, config = load_generator(DEMO_MODEL)
    with torch.no_grad():
        frequencies, phase_shifts = generator.film_parameters(latent_for_seed(LATENT_SEED, generator.z_dim, 'cpu'),
                                                              DEMO_PSI)
    latent = write_inversion(tmp_path / 'inversion.pt', config, frequencies, phase_shifts, torch.tensor([LATENT_CAMERA]))
    base = ['--generator_file', DEMO_MODEL, '--output_dir', str(tmp_path / 'shapes')] + SMALL_ARGS
    assert extract_shapes.main(base + ['--seeds', str(LATENT_SEED)]) == 0
    assert extract_shapes.main(base + ['--latent', latent]) == 0
    assert sorted(os.listdir(tmp_path / 'shapes')) == [f'shape_{LATENT_SEED}.ply', 'shape_inversion.ply']
    seed_vertices, seed_faces, seed_colors = read_ply(tmp_path / 'shapes' / f'shape_{LATENT_SEED}.ply')
    vertices, faces, colors = read_ply(tmp_path / 'shapes' / 'shape_inversion.ply')
    assert len(vertices) == len(seed_vertices) > 0
    np.testing.assert_allclose(vertices, seed_vertices, rtol=0, atol=VERTEX_TOLERANCE)
    np.testing.assert_array_equal(faces, seed_faces)
    np.testing.assert_array_equal(colors, seed_colors)


def test_cli_unreadable_latent_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / 'garbage.pt').write_bytes(b'not an inversion')
    output_dir = tmp_path / 'shapes'
    for latent, message in ((tmp_path / 'garbage.pt', 'as an inversion file'), (tmp_path / 'missing.pt', 'not found')):
        assert extract_shapes.main(['--generator_file', DEMO_MODEL, '--latent', str(latent),
                                    '--output_dir', str(output_dir)] + SMALL_ARGS) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith('error: ') and message in error and len(error.splitlines()) == 1, error
    assert not output_dir.exists()
