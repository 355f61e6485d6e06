"""render_multiview_images.py: angle lists, seeds, watermark, released-pair rendering, CLI."""
import math
import os

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from helpers import CONFIG, ROOT, make_released_pair
from PIL import Image

import configs
import render_multiview_images as render
from checkpoints.loading import load_generator
from generators import build_generator
from geometry import trajectories
from utils.images import resize_images, to_uint8
from utils.seeds import latent_for_seed, parse_seeds
from utils.watermark import apply_watermark, make_watermark

TINY_SIZE = 16  # render size of the CLI tests (TINY_test's own size)


def read_png(path):
    return np.asarray(Image.open(path))


def origin(pitch, yaw):
    """docs/design.md §9: (sin p cos y, cos p, sin p sin y)."""
    return [math.sin(pitch) * math.cos(yaw), math.cos(pitch), math.sin(pitch) * math.sin(yaw)]


# ----------------------------------------------------------------------------------- angles
def test_sweep_even_frames_are_the_released_lists():
    assert trajectories.sweep_yaw_offsets(4) == pytest.approx([-0.4, 0.0, 0.4, 0.0], abs=1e-12)
    released = list(np.linspace(-0.4, 0.4, 16)[:-1]) + list(np.linspace(0.4, -0.4, 16)[:-1])
    assert trajectories.sweep_yaw_offsets(30) == released  # exactly, F = 30


def test_sweep_odd_frames_give_every_frame_a_real_angle():
    # The released lists would hold only 4 angles for F = 5; ours samples the triangle wave at t = i / 5:
    # -0.4 + 0.8 (1 - |2t - 1|) at t = 0, .2, .4, .6, .8.
    assert trajectories.sweep_yaw_offsets(5) == pytest.approx([-0.4, -0.08, 0.24, 0.24, -0.08], abs=1e-12)
    assert trajectories.sweep_yaw_offsets(1) == pytest.approx([-0.4])


def test_orbit_and_grid_angles():
    face = trajectories.camera_family(configs.get_config('FFHQ_default'))
    carla = trajectories.camera_family(configs.get_config('CARLA_default'))
    pitches, yaws = trajectories.trajectory_angles('released', 4, carla)
    assert yaws == pytest.approx([-math.pi / 2, 0.0, math.pi / 2, math.pi])
    assert pitches == pytest.approx([math.pi / 3] * 4)
    pitches, yaws = trajectories.trajectory_angles('released', 4, face)
    assert yaws == pytest.approx([math.pi / 2 - 0.4, math.pi / 2, math.pi / 2 + 0.4, math.pi / 2])
    assert pitches == [math.pi / 2] * 4

    assert trajectories.grid_shape(30) == (5, 6) and trajectories.grid_shape(7) == (1, 7)
    pitches, yaws = trajectories.trajectory_angles('grid', 6, face)  # 2 rows x 3 columns, serpentine
    assert [p - math.pi / 2 for p in pitches] == pytest.approx([-0.2] * 3 + [0.2] * 3)
    assert [y - math.pi / 2 for y in yaws] == pytest.approx([-0.4, 0.0, 0.4, 0.4, 0.0, -0.4])

    # --yaw_amplitude widens the sweep and the grid (the demo sweeps +-pi/4); the orbit ignores it.
    _, yaws = trajectories.trajectory_angles('sweep', 4, carla, yaw_amplitude=math.pi / 4)
    assert [y - math.pi / 2 for y in yaws] == pytest.approx([-math.pi / 4, 0.0, math.pi / 4, 0.0])
    _, yaws = trajectories.trajectory_angles('grid', 6, face, yaw_amplitude=0.1)
    assert [y - math.pi / 2 for y in yaws] == pytest.approx([-0.1, 0.0, 0.1, 0.1, 0.0, -0.1])
    assert trajectories.trajectory_angles('orbit', 4, carla, yaw_amplitude=0.1)[1] == pytest.approx(
        [-math.pi / 2, 0.0, math.pi / 2, math.pi])


def test_camera_families():
    face = trajectories.camera_family(configs.get_config('CATS_default'))
    assert (face['fov'], face['pitch'], face['lock_view_dependence']) == (12, math.pi / 2, True)
    for name in ('CARLA_default', 'TINY_test', 'SYNTHETIC_demo'):
        family = trajectories.camera_family(configs.get_config(name))
        assert (family['fov'], family['lock_view_dependence']) == (35, False)
    pitches, yaws = trajectories.trajectory_angles('sweep', 4, trajectories.camera_family(configs.get_config('FFHQ_default')))
    assert (pitches[1], yaws[1]) == (math.pi / 2, math.pi / 2)  # the middle frame is frontal: origin (0, 0, 1)


# ----------------------------------------------------------------------------------- seeds
def test_parse_seeds():
    assert parse_seeds('0-3') == [0, 1, 2, 3]
    assert parse_seeds('0,5,9') == [0, 5, 9]
    assert parse_seeds('3') == [3]
    assert parse_seeds('1-2, 7') == [1, 2, 7]
    for bad in ('', 'a', '3-1', '-1', '1,,2', '0-', '1.5'):
        with pytest.raises(ValueError, match='invalid seeds'):
            parse_seeds(bad)


def test_latent_for_seed_is_the_released_cpu_draw():
    torch.manual_seed(11)
    expected = torch.randn(1, 256)
    torch.manual_seed(0)  # the global state before the call does not matter
    assert torch.equal(latent_for_seed(11, 256, 'cpu'), expected)


# ----------------------------------------------------------------------------------- watermark
def test_watermark_only_touches_the_bottom_right_corner():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    marked = apply_watermark(img, make_watermark(64, 64))
    changed = (marked != img).any(dim=1)  # [2, 64, 64]
    assert changed[:, 48:, 40:].any()                       # visible in the corner
    assert not changed[:, :48].any() and not changed[:, :, :40].any()  # bit-identical elsewhere
    alpha, color = make_watermark(64, 64)
    assert alpha.min() == 0 and 0.5 < alpha.max() <= 1 and color.shape == (3, 64, 64)


# ----------------------------------------------------------------------------------- rendering
def test_released_pair_renders_with_ema_weights(tmp_path):
    """The script's frames equal a direct call of a generator holding the shadow weights."""
    generator_path, shadow = make_released_pair(str(tmp_path))
    out = tmp_path / 'out'
    render.main(['--generator_file', generator_path, '--config', CONFIG, '--output_dir', str(out),
                 '--seeds', '3', '--frames', '2', '--no_watermark', '--psi', '0.7'])
    expected_generator = build_generator(configs.get_config(CONFIG))
    expected_generator.load_state_dict(shadow)
    torch.manual_seed(3)
    z = torch.randn(1, 16)
    camera = configs.get_config(CONFIG)['camera']
    for index, yaw in enumerate([-math.pi / 2, math.pi / 2]):  # orbit, 2 frames: offsets -pi, 0
        with torch.no_grad():
            img, _ = expected_generator(z, 35, camera['ray_start'], camera['ray_end'], img_size=TINY_SIZE,
                                        camera_origin=origin(math.pi / 3, yaw), truncation_psi=0.7)
        np.testing.assert_array_equal(read_png(out / f'grid_3_{index}.png'), to_uint8(img[0], 'truncate'))

    # The watermark run differs from the unmarked frames only in the bottom-right corner.
    marked_out = tmp_path / 'marked'
    render.main(['--generator_file', generator_path, '--config', CONFIG, '--output_dir', str(marked_out),
                 '--seeds', '3', '--frames', '2', '--img_size', '32'])
    render.main(['--generator_file', generator_path, '--config', CONFIG, '--output_dir', str(out),
                 '--seeds', '3', '--frames', '2', '--img_size', '32', '--no_watermark'])
    marked, plain = read_png(marked_out / 'grid_3_1.png'), read_png(out / 'grid_3_1.png')
    differs = (marked != plain).any(axis=-1)
    assert differs[24:, 16:].any() and not differs[:24].any() and not differs[:, :16].any()


def test_batched_frames_match_single_frames():
    torch.manual_seed(0)
    generator = build_generator(configs.get_config(CONFIG)).eval()
    z = torch.randn(1, generator.z_dim)
    camera = configs.get_config(CONFIG)['camera']
    origins = [origin(math.pi / 3, yaw) for yaw in (0.1, 1.0, 2.0)]
    single, _ = render.render_frames(generator, z, origins, camera, 8, 0.7, False, batch_size=1)
    batched, _ = render.render_frames(generator, z, origins, camera, 8, 0.7, False, batch_size=2)
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-5)


def test_cli_end_to_end_with_video_and_depth(tmp_path):
    generator_path, _ = make_released_pair(str(tmp_path))
    out = tmp_path / 'out'
    render.main(['--generator_file', generator_path, '--config', CONFIG, '--output_dir', str(out),
                 '--seeds', '0,2', '--frames', '3', '--img_size', str(TINY_SIZE), '--batch_size', '2',
                 '--video', '--depth', '--device', 'cpu'])
    for seed in (0, 2):
        for index in range(3):
            assert read_png(out / f'grid_{seed}_{index}.png').shape == (TINY_SIZE, TINY_SIZE, 3)
            assert read_png(out / f'depth_{seed}_{index}.png').shape == (TINY_SIZE, TINY_SIZE)
        assert not (out / f'grid_{seed}_3.png').exists()
        assert iio.imread(out / f'grid_{seed}.gif', index=None).shape[0] == 3
        assert iio.imread(out / f'depth_{seed}.gif', index=None).shape[0] == 3
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out / f'grid_{seed}.mp4'))
        assert frames == 3
        depth = np.stack([read_png(out / f'depth_{seed}_{i}.png') for i in range(3)])
        assert depth.max() == 255  # normalised over the seed's frames: the nearest pixel is white
    assert not [name for name in os.listdir(out) if name.startswith('.tmp')]  # atomic writes cleaned up


def test_render_size_renders_small_and_resizes(tmp_path):
    """--render_size 8 --img_size 16: the frames are the 8 px render, resized bicubically to 16 px."""
    generator_path, _ = make_released_pair(str(tmp_path))
    out, small = tmp_path / 'out', tmp_path / 'small'
    common = ['--generator_file', generator_path, '--config', CONFIG, '--seeds', '1', '--frames', '2',
              '--no_watermark', '--depth']
    render.main([*common, '--output_dir', str(out), '--img_size', str(TINY_SIZE), '--render_size', '8'])
    render.main([*common, '--output_dir', str(small), '--img_size', '8'])
    generator, config = load_generator(generator_path, CONFIG, 'cpu', use_ema=True)
    camera = {'fov': trajectories.camera_family(config)['fov'], 'ray_start': config['camera']['ray_start'],
              'ray_end': config['camera']['ray_end']}
    origins = [origin(math.pi / 3, yaw) for yaw in (-math.pi / 2, math.pi / 2)]  # orbit, 2 frames
    images, _ = render.render_frames(generator, latent_for_seed(1, generator.z_dim, 'cpu'), origins, camera, 8, 0.7,
                                     False, batch_size=1)
    expected = to_uint8(resize_images(images, TINY_SIZE), 'truncate')
    for index in range(2):
        frame = read_png(out / f'grid_1_{index}.png')
        assert frame.shape == (TINY_SIZE, TINY_SIZE, 3)
        np.testing.assert_array_equal(frame, expected[index])
        depth, small_depth = read_png(out / f'depth_1_{index}.png'), read_png(small / f'depth_1_{index}.png')
        np.testing.assert_array_equal(depth, small_depth.repeat(2, axis=0).repeat(2, axis=1))  # nearest, x2
    upsampled = resize_images(torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]), 4)
    assert upsampled.shape == (1, 1, 4, 4) and not torch.equal(upsampled[..., 0, 0], upsampled[..., 0, 1])


def test_rerender_with_fewer_frames_removes_only_that_seeds_extra_frames(tmp_path, capsys):
    generator_path, _ = make_released_pair(str(tmp_path))
    out = tmp_path / 'out'
    common = ['--generator_file', generator_path, '--config', CONFIG, '--output_dir', str(out), '--img_size', '8']
    render.main([*common, '--seeds', '1,10', '--frames', '3', '--depth'])
    render.main([*common, '--seeds', '1', '--frames', '2'])
    names = set(os.listdir(out))
    assert {'grid_1_0.png', 'grid_1_1.png', 'depth_1_0.png', 'depth_1_1.png'} <= names
    assert not {'grid_1_2.png', 'depth_1_2.png'} & names                       # stale frames of seed 1 removed
    assert {'grid_10_0.png', 'grid_10_2.png', 'depth_10_2.png'} <= names      # seed 10 untouched
    assert 'removed 2 frames of 1' in capsys.readouterr().out


def test_fov_override_frames_the_object_tighter(tmp_path):
    covered = {}
    for name, fov_args in (('released', []), ('training', ['--fov', '30'])):
        out = tmp_path / name
        assert render.main(['--generator_file', os.path.join(ROOT, 'demo', 'synthetic_demo.pt'), '--output_dir', str(out),
                            '--seeds', '1', '--frames', '1', '--img_size', '32', '--no_watermark', '--device', 'cpu',
                            *fov_args]) == 0
        covered[name] = (read_png(out / 'grid_1_0.png').min(axis=-1) < 240).mean()  # non-white pixels
    assert covered['training'] > 1.15 * covered['released']  # tan(17.5 deg) / tan(15 deg) = 1.17 per axis


def test_cli_errors_are_one_line(tmp_path, capsys):
    generator_path, _ = make_released_pair(str(tmp_path))
    empty, junk = tmp_path / 'empty.pth', tmp_path / 'junk.pth'
    empty.write_bytes(b'')
    junk.write_text('hello')
    cases = [
        (['--generator_file', str(tmp_path / 'missing.pth')], "generator file '"),
        (['--generator_file', generator_path, '--config', 'SYNTHETIC_demo'],
         'does not match SYNTHETIC_demo'),
        (['--generator_file', generator_path, '--config', CONFIG, '--seeds', '5-2'], 'invalid seeds'),
        (['--generator_file', generator_path, '--config', CONFIG, '--frames', '0'], '--frames must be >= 1'),
        (['--generator_file', generator_path, '--config', CONFIG, '--psi', 'nan'], '--psi must be in [0, 1]'),
        (['--generator_file', generator_path, '--config', CONFIG, '--psi', '2'], '--psi must be in [0, 1]'),
        (['--generator_file', generator_path, '--config', CONFIG, '--yaw_amplitude', 'inf'], '--yaw_amplitude must be'),
        (['--generator_file', generator_path, '--config', CONFIG, '--fov', '0'], '--fov must be in (0, 180)'),
        (['--generator_file', generator_path, '--config', CONFIG, '--seeds', '0-999999999999'], 'more than 100000 seeds'),
        (['--generator_file', str(empty), '--config', CONFIG], 'is empty'),
        (['--generator_file', str(junk), '--config', CONFIG], 'is not a torch weights file'),
    ]
    for argv, expected in cases:
        assert render.main(argv + ['--output_dir', str(tmp_path / 'out')]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith('error: ') and expected in err and '\n' not in err
    (tmp_path / 'taken').write_text('a file')
    assert render.main(['--generator_file', generator_path, '--config', CONFIG,
                        '--output_dir', str(tmp_path / 'taken')]) == 1
    assert capsys.readouterr().err.strip() == f"error: not a folder: {tmp_path / 'taken'}"
