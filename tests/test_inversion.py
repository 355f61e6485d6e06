"""invert.py and inversion/: camera-differentiable rendering, pose search, fitting, files, CLI.

The quality tests invert images of the shipped demo model (32 px) with fewer steps than the
defaults and check the behaviour (camera found, PSNR gain, depth); docs/inversion.md has the
numbers of the full defaults.
"""
import json
import math
import os
import re
import types

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

import configs
import invert
import render_multiview_images as render_script
from checkpoints.loading import load_generator
from datasets import synthetic
from datasets.poses import transform_matrix_to_camera_pos
from generators import build_generator
from inversion import optimize
from inversion.images import WHITE, load_target, read_image
from inversion.losses import psnr, ssim
from inversion.rendering import render
from inversion.storage import inversion_payload, load_inversion, read_inversion, save_inversion
from utils.cli import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_MODEL = os.path.join(ROOT, 'demo', 'synthetic_demo.pt')
HELD_OUT_DATA_SEED = 777  # synthetic cars never seen in training (the demo data used seed 0)


@pytest.fixture(scope='module')
def demo():
    generator, config = load_generator(DEMO_MODEL, None, 'cpu')
    return generator, config, dict(config['camera'])


def seed_render(generator, camera, seed, camera_pos):
    """The demo model's render [1, 3, N, N] of `seed` (psi 1) at camera_pos (phi, theta)."""
    z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        frequencies, phase_shifts = generator.film_parameters(z)
        return render(generator, frequencies, phase_shifts, torch.tensor([camera_pos]), camera), (frequencies, phase_shifts)


def write_synthetic_car(path, index, size):
    """A held-out synthetic car as a PNG of `size` px (like the dataset's); returns (true camera [2],
    true depth [32, 32], object mask [32, 32]) at the demo's 32 px."""
    poses = synthetic.poses_from_config(configs.get_config('SYNTHETIC_demo'))
    rgb, _, _, extrinsics = synthetic.render_example(index, HELD_OUT_DATA_SEED, size, poses)
    _, depth, mask, _ = synthetic.render_example(index, HELD_OUT_DATA_SEED, 32, poses)
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(path)
    return transform_matrix_to_camera_pos(extrinsics), depth, mask


# ----------------------------------------------------------------------------------- rendering, losses
def test_render_is_the_generators_render_and_has_camera_gradients(demo):
    generator, _, camera = demo
    pos = torch.tensor([[1.1, 1.8]])
    target, (frequencies, phase_shifts) = seed_render(generator, camera, 3, pos[0].tolist())
    with torch.no_grad():
        expected, _ = generator.forward_with_frequencies_phase_shifts(frequencies, phase_shifts, camera_pos=pos, **camera)
    assert torch.equal(target, expected)

    # Gradient of the camera: moving towards the true camera lowers the loss (finite differences agree in sign).
    start = pos + torch.tensor([[0.0, 0.15]])
    camera_pos = start.clone().requires_grad_(True)
    image = render(generator, frequencies, phase_shifts, camera_pos, camera)
    assert torch.equal(image.detach(), render(generator, frequencies, phase_shifts, start, camera))  # R is exactly I
    (image - target).pow(2).mean().backward()
    assert camera_pos.grad[0, 1] > 0  # theta is too large: the loss grows with it
    with torch.no_grad():
        step = torch.tensor([[0.0, 0.05]])
        moved = (render(generator, frequencies, phase_shifts, start - step, camera) - target).pow(2).mean()
        assert moved < (image - target).pow(2).mean()


def test_ssim_and_psnr():
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert float(ssim(image, image)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(image, -image)) < 0.5
    assert psnr(image, image + 2 * 0.1) == pytest.approx(20.0, abs=1e-4)  # error 0.1 on the [0, 1] scale


def test_pose_grid_covers_the_pose_distribution(demo):
    generator, _, _ = demo
    grid = optimize.pose_grid(generator)
    phis, thetas = grid[:, 0], grid[:, 1]
    assert thetas.min() < generator.h_mean - 0.6 * generator.h_stddev  # +-45 degrees of azimuth
    assert thetas.max() > generator.h_mean + 0.6 * generator.h_stddev
    slack = 1e-6  # float32 grid
    assert thetas.min() >= generator.h_mean - generator.h_stddev - slack
    assert thetas.max() <= generator.h_mean + generator.h_stddev + slack
    assert phis.min() >= generator.v_mean - generator.v_stddev - slack
    assert phis.max() <= generator.v_mean + generator.v_stddev + slack
    assert len(torch.unique(phis)) >= 3 and len(grid) <= 60
    fixed = optimize.pose_grid(types.SimpleNamespace(sample_dist='fixed', h_mean=1.5, v_mean=1.2, h_stddev=0.3,
                                                     v_stddev=0.1))
    assert fixed.tolist() == [[pytest.approx(1.2), pytest.approx(1.5)]]


def test_pose_search_finds_the_camera_of_a_render(demo):
    generator, _, camera = demo
    for seed, pos in ((5, (1.25, 0.9)), (7, (0.85, 2.25))):  # near the edges of the trained range
        target, _ = seed_render(generator, camera, seed, pos)
        found = optimize.search_poses(generator, camera, target, optimize.film_prior(generator), 1)[0]
        assert (found - torch.tensor(pos)).abs().max() < math.radians(12)  # within about one grid step


# ----------------------------------------------------------------------------------- images
def test_load_target_composites_converts_and_resizes(tmp_path, demo):
    _, config, _ = demo
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[16:48, 16:48, 3] = 255  # an opaque red square on a transparent background
    Image.fromarray(rgba).save(tmp_path / 'rgba.png')
    target, pixels = load_target(str(tmp_path / 'rgba.png'), config)
    assert target.shape == (1, 3, 32, 32) and pixels.shape == (64, 64, 3)
    assert target[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]     # white_back config: transparent -> white
    assert target[0, :, 16, 16].tolist() == [1.0, -1.0, -1.0]  # red stays red
    ffhq = configs.get_config('FFHQ_default')
    target, _ = load_target(str(tmp_path / 'rgba.png'), ffhq)
    assert target.shape == (1, 3, 256, 256) and target[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0]  # black
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(tmp_path / 'grey.png')
    target, pixels = load_target(str(tmp_path / 'grey.png'), config)
    assert pixels.shape == (8, 8, 3) and torch.allclose(target[0, 0], target[0, 2])
    Image.fromarray(np.full((8, 8), 0x80FF, dtype=np.uint16)).save(tmp_path / 'grey16.png')  # Pillow mode I;16
    target, pixels = load_target(str(tmp_path / 'grey16.png'), config)
    assert (pixels == 0x80).all() and torch.allclose(target, torch.full_like(target, 0x80 / 255 * 2 - 1), atol=1e-6)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown rotated by 90 degrees
    Image.fromarray(np.zeros((48, 32, 3), dtype=np.uint8)).save(tmp_path / 'rotated.jpg', exif=exif)
    assert read_image(str(tmp_path / 'rotated.jpg'), WHITE).size == (48, 32)  # (width, height), upright


# ----------------------------------------------------------------------------------- quality
def test_inverts_a_generated_image(demo):
    generator, _, camera = demo
    true_pos = (1.15, 1.35)  # 24 degrees above the horizon, 12.6 degrees off the front
    target, (frequencies, phase_shifts) = seed_render(generator, camera, 23, true_pos)
    settings = optimize.Settings(steps=80)
    mean_pose = (generator.v_mean, generator.h_mean)  # 5.9 and 12.6 degrees away: the camera must move
    result = optimize.invert(generator, camera, target, settings, pose=mean_pose, optimize_pose=True, progress=False)
    error = (result.camera_pos[0] - torch.tensor(true_pos)).abs()
    assert error.max() < math.radians(5)
    with torch.no_grad():
        start = render(generator, *generator.get_avg_w(), result.starts[:1], camera)
        reconstruction = render(generator, result.frequencies, result.phase_shifts, result.camera_pos, camera)
        novel_true = render(generator, frequencies, phase_shifts, torch.tensor([[true_pos[0], true_pos[1] + 0.5]]), camera)
        novel = render(generator, result.frequencies, result.phase_shifts,
                       torch.tensor([[true_pos[0], true_pos[1] + 0.5]]), camera)
    assert psnr(reconstruction, target) > psnr(start, target) + 10
    assert psnr(reconstruction, target) > 28
    assert psnr(novel, novel_true) > 20
    assert result.losses[-1] < result.losses[0] / 5


def test_inverts_a_synthetic_photo_with_its_depth(tmp_path, demo):
    # A held-out car of the built-in dataset (rendered by datasets/synthetic.py, not the generator),
    # 64 px like the demo data: camera, reconstruction and depth against the ray-cast truth.
    generator, config, camera = demo
    true_pos, true_depth, mask = write_synthetic_car(tmp_path / 'car.png', 1, 64)
    target, _ = load_target(str(tmp_path / 'car.png'), config)
    result = optimize.invert(generator, camera, target, optimize.Settings(steps=100), progress=False)
    assert (result.camera_pos[0] - true_pos).abs().max() < math.radians(10)
    with torch.no_grad():
        image, depth, _ = render(generator, result.frequencies, result.phase_shifts, result.camera_pos, camera,
                                 with_depth=True)
    assert psnr(image, target) > 22
    depth = depth[0].numpy()[mask]
    relative_error = np.where(np.isfinite(depth), np.abs(depth - true_depth[mask]) / true_depth[mask], np.inf)
    assert np.median(relative_error) < 0.03


def test_a_given_pose_is_kept_unless_optimised(demo):
    generator, _, camera = demo
    target, _ = seed_render(generator, camera, 4, (1.0, 1.6))
    settings = optimize.Settings(steps=3)
    fixed = optimize.invert(generator, camera, target, settings, pose=(1.1, 1.7), optimize_pose=False, progress=False)
    assert fixed.camera_pos.tolist() == [[pytest.approx(1.1), pytest.approx(1.7)]] and len(fixed.starts) == 1
    moved = optimize.invert(generator, camera, target, settings, pose=(1.1, 1.7), optimize_pose=True, progress=False)
    assert moved.camera_pos.tolist() != fixed.camera_pos.tolist()


def test_fixed_seed_gives_the_same_result(demo):
    generator, _, camera = demo
    target, _ = seed_render(generator, camera, 4, (1.0, 1.6))
    settings = optimize.Settings(steps=4, pose_starts=2, start_steps=2, finetune_steps=2, seed=3)
    first = optimize.invert(generator, camera, target, settings, progress=False)
    second = optimize.invert(generator, camera, target, settings, progress=False)
    assert torch.equal(first.frequencies, second.frequencies) and torch.equal(first.camera_pos, second.camera_pos)
    assert first.losses == second.losses and first.finetune_losses == second.finetune_losses
    for (name, a), b in zip(first.generator.state_dict().items(), second.generator.state_dict().values()):
        assert torch.equal(a, b), name
    # The base generator is untouched (weights and requires_grad flags).
    base, _ = load_generator(DEMO_MODEL, None, 'cpu')
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), generator.state_dict().values()))
    assert all(p.requires_grad for p in generator.parameters())


# ----------------------------------------------------------------------------------- CLI
def test_cli_on_a_synthetic_photo_then_render_the_latent(tmp_path, demo):
    true_pos, _, _ = write_synthetic_car(tmp_path / 'car.png', 0, 64)
    out = tmp_path / 'inv'
    assert invert.main(['--generator_file', DEMO_MODEL, '--image', str(tmp_path / 'car.png'), '--output_dir', str(out),
                        '--steps', '30', '--pose_starts', '1', '--finetune_steps', '3', '--device', 'cpu']) == 0
    payload = torch.load(out / 'inversion.pt', weights_only=True)
    assert payload['frequencies'].shape == (1, 9 * 64) and payload['phase_shifts'].shape == (1, 9 * 64)
    assert payload['camera_pos'].shape == (1, 2) and 'generator' in payload
    assert payload['loss_curve'].shape == (30,) and payload['finetune_loss_curve'].shape == (3,)
    json.dumps(payload['config'])
    assert np.asarray(Image.open(out / 'reconstruction.png')).shape == (64, 64, 3)
    assert np.asarray(Image.open(out / 'comparison.png')).shape == (64, 3 * 64, 3)
    assert np.asarray(Image.open(out / 'views.png')).shape == (64, 6 * 64, 3)
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['psnr'] > 15 and 0 < metrics['ssim'] <= 1 and metrics['steps'] == 30
    assert (torch.tensor(metrics['camera_pos']) - true_pos).abs().max() < math.radians(15)
    assert not [name for name in os.listdir(out) if name.startswith('.tmp')]

    frames = tmp_path / 'frames'
    assert render_script.main(['--generator_file', DEMO_MODEL, '--latent', str(out / 'inversion.pt'),
                               '--output_dir', str(frames), '--frames', '2', '--depth', '--video',
                               '--trajectory', 'sweep', '--img_size', '48', '--render_size', '24',
                               '--device', 'cpu']) == 0
    for name in ('grid_inversion_0.png', 'grid_inversion_1.png', 'grid_inversion.gif', 'grid_inversion.mp4',
                 'depth_inversion_0.png', 'depth_inversion.gif'):
        assert (frames / name).is_file(), name
    assert np.asarray(Image.open(frames / 'grid_inversion_1.png')).shape == (48, 48, 3)
    assert np.asarray(Image.open(frames / 'depth_inversion_1.png')).shape == (48, 48)

    # The loader extract_shapes.py can use: fine-tuned weights applied, the stored config.
    inverted = load_inversion(str(out / 'inversion.pt'), DEMO_MODEL)
    tuned = payload['generator']
    assert all(torch.equal(inverted.generator.state_dict()[key], value) for key, value in tuned.items())
    assert inverted.frequencies.shape == (1, 576) and inverted.camera_pos.shape == (1, 2)


def test_cli_large_input_metrics_and_reused_folder(tmp_path, monkeypatch):
    # Tiles of comparison.png / views.png stay at the render size; reconstruction.png has the input's.
    Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(tmp_path / 'big.png')
    monkeypatch.setattr(invert, 'MAX_RENDER_SIZE', 48)
    monkeypatch.setattr(invert, 'image_metrics', lambda image, target: (math.inf, 1.0))  # a pixel-identical render
    out = tmp_path / 'inv'
    base = ['--generator_file', DEMO_MODEL, '--image', str(tmp_path / 'big.png'), '--output_dir', str(out),
            '--device', 'cpu']
    assert invert.main(base + ['--steps', '2', '--pose_starts', '2', '--finetune_steps', '1']) == 0
    assert np.asarray(Image.open(out / 'reconstruction.png')).shape == (64, 64, 3)
    assert np.asarray(Image.open(out / 'comparison.png')).shape == (48, 3 * 48, 3)
    assert np.asarray(Image.open(out / 'views.png')).shape == (48, 6 * 48, 3)
    text = (out / 'metrics.json').read_text()
    metrics = json.loads(text)
    assert 'Infinity' not in text and metrics['psnr'] is None
    assert sorted(metrics) == sorted([
        'psnr', 'ssim', 'resolution', 'camera_pos', 'camera_pos_degrees', 'start_cameras', 'optimize_pose', 'steps',
        'start_steps', 'finetune_steps', 'seed', 'final_loss', 'final_finetune_loss', 'wall_time_s', 'device'])
    assert metrics['start_steps'] == 2 and metrics['optimize_pose'] is True and metrics['resolution'] == 32

    # A fit that diverged writes nothing: the previous outputs stay as they were.
    before = {name: (out / name).read_bytes() for name in invert.OUTPUT_FILES}
    fit = optimize.invert

    def diverged(*args, **kwargs):
        result = fit(*args, **kwargs)
        result.losses[-1] = math.nan
        return result

    monkeypatch.setattr(optimize, 'invert', diverged)
    assert invert.main(base + ['--steps', '1', '--pose', '1.2,1.5']) == 1
    assert {name: (out / name).read_bytes() for name in invert.OUTPUT_FILES} == before
    monkeypatch.setattr(optimize, 'invert', fit)

    # A failed write into the reused folder leaves no inversion.pt beside the new pictures.
    def disk_full(text, path):
        raise OSError(28, 'No space left on device', path)

    monkeypatch.setattr(invert, 'atomic_write_text', disk_full)
    assert invert.main(base + ['--steps', '1', '--pose', '1.2,1.5']) == 1
    assert not (out / 'inversion.pt').exists() and (out / 'reconstruction.png').is_file()


def test_inversion_file_round_trip_and_refusals(tmp_path, demo):
    _, config, _ = demo
    result = optimize.Result(torch.zeros(1, 576), torch.ones(1, 576), torch.tensor([[1.0, 1.5]]), None,
                             [0.5, 0.25], [], torch.tensor([[1.0, 1.5]]))
    save_inversion(inversion_payload(result, config), str(tmp_path / 'inv.pt'))
    payload = read_inversion(str(tmp_path / 'inv.pt'))
    assert 'generator' not in payload and payload['loss_curve'].tolist() == [0.5, 0.25]
    inverted = load_inversion(str(tmp_path / 'inv.pt'), DEMO_MODEL)
    assert torch.equal(inverted.phase_shifts, torch.ones(1, 576))
    tiny = tmp_path / 'tiny.pth'
    torch.save(build_generator(configs.get_config('TINY_test')).state_dict(), tiny)
    with pytest.raises(ValueError, match='does not match'):
        load_inversion(str(tmp_path / 'inv.pt'), str(tiny))
    torch.save({'format': 'something else'}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='not an inversion file'):
        read_inversion(str(tmp_path / 'other.pt'))
    for change, expected in (({'version': 2}, 'has version 2'),
                             ({'camera_pos': torch.tensor([[math.nan, 1.5]])}, "malformed 'camera_pos' (not finite)"),
                             ({'camera_pos': torch.tensor([[4.0, 1.5]])}, 'phi 4.0000 outside (0, pi)'),
                             ({'generator': [torch.zeros(1)]}, "'generator' entry that is not a state_dict")):
        torch.save({**payload, **change}, tmp_path / 'bad.pt')
        with pytest.raises(ValueError, match=re.escape(expected)) as error:
            read_inversion(str(tmp_path / 'bad.pt'))
        assert 'bad.pt' in str(error.value) and '\n' not in str(error.value)


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / 'ok.png')
    (tmp_path / 'garbage.png').write_bytes(b'not an image')
    (tmp_path / 'taken').write_text('a file')
    Image.fromarray(np.zeros((32, 48, 3), dtype=np.uint8)).save(tmp_path / 'wide.png')
    out = tmp_path / 'out'
    base = ['--generator_file', DEMO_MODEL, '--output_dir', str(out), '--steps', '1', '--device', 'cpu']
    cases = [
        (['--image', str(tmp_path / 'missing.png')], "image '"),
        (['--image', str(tmp_path / 'missing.png'), '--generator_file', str(tmp_path / 'no.pth')], "image '"),  # first
        (['--image', str(tmp_path / 'ok.png'), '--landmarks', str(tmp_path / 'missing.txt')],
         'not found; pass the photo'),
        (['--image', str(tmp_path / 'garbage.png')], 'cannot read image'),
        (['--image', str(tmp_path / 'wide.png')], 'is 48x32'),
        (['--image', str(tmp_path / 'ok.png'), '--pose', '1.0'], "--pose '1.0' must be two numbers"),
        (['--image', str(tmp_path / 'ok.png'), '--pose', 'a,b'], 'must be two numbers'),
        (['--image', str(tmp_path / 'ok.png'), '--pose', '4,1'], 'phi must lie in (0, pi)'),
        (['--image', str(tmp_path / 'ok.png'), '--config', 'TINY_test'], 'does not match TINY_test'),
        (['--image', str(tmp_path / 'ok.png'), '--landmarks', str(tmp_path / 'ok.png')], '--landmarks aligns FFHQ'),
        (['--image', str(tmp_path / 'ok.png'), '--steps', '0'], '--steps must be >= 1'),
    ]
    for argv, expected in cases:
        assert invert.main(base + argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith('error: ') and expected in err and '\n' not in err, (argv, err)
        assert not out.exists()
    assert invert.main(['--generator_file', DEMO_MODEL, '--image', str(tmp_path / 'ok.png'),
                        '--output_dir', str(tmp_path / 'taken'), '--steps', '1', '--device', 'cpu']) == 1
    assert capsys.readouterr().err.strip() == f"error: not a folder: {tmp_path / 'taken'}"
    for argv, expected in ((['--latent', str(tmp_path / 'ok.png')], 'as an inversion file'),
                           (['--latent', str(tmp_path / 'missing.pt')], 'not found'),
                           (['--latent', str(tmp_path / 'ok.png'), '--config', 'SYNTHETIC_demo'], 'drop --config'),
                           (['--latent', str(tmp_path / 'ok.png'), '--seeds', '1'], 'drop --seeds')):
        assert render_script.main(['--generator_file', DEMO_MODEL, '--output_dir', str(out)] + argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith('error: ') and expected in err and '\n' not in err, (argv, err)
    assert not out.exists()


def test_landmarks_align_raw_photos_like_the_preprocessing(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(tmp_path / 'raw.png')
    # FFHQ lm5p: 5 rows "x y" (eyes, nose, mouth corners) in image coordinates.
    np.savetxt(tmp_path / 'raw.txt', [[170, 120], [230, 120], [200, 160], [175, 195], [225, 195]])
    ffhq = configs.get_config('FFHQ_default')
    target, pixels = load_target(str(tmp_path / 'raw.png'), ffhq, str(tmp_path / 'raw.txt'))
    assert target.shape == (1, 3, 256, 256) and pixels.shape == (256, 256, 3)
    (tmp_path / 'bad.txt').write_text('1 2\n')
    with pytest.raises(UserError, match='cannot align the image: garbled landmarks'):
        load_target(str(tmp_path / 'raw.png'), ffhq, str(tmp_path / 'bad.txt'))
    with pytest.raises(UserError, match='is 400x300'):
        load_target(str(tmp_path / 'raw.png'), ffhq)
