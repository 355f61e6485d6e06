"""tools/pose_stats.py: fitting a pose distribution, choosing the base config, the printed settings."""
import ast
import json
import math
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import configs
from datasets import CATS, FFHQ, PosedImageFolder
from datasets.synthetic import to_carla_extrinsics
from generators import cameras
from tools import pose_stats

KNOWN = {  # one distribution per family, as the configs write them
    'gaussian': {'sample_dist': 'gaussian', 'h_mean': math.pi / 2, 'h_stddev': 0.3, 'v_mean': math.pi / 2, 'v_stddev': 0.155},
    'uniform': {'sample_dist': 'uniform', 'h_mean': math.pi / 2, 'h_stddev': math.pi / 4, 'v_mean': math.pi / 3,
                'v_stddev': math.pi / 12},
    'spherical_uniform': {'sample_dist': 'spherical_uniform', 'h_mean': math.pi / 2, 'h_stddev': math.pi,
                          'v_mean': math.pi * 42.5 / 180, 'v_stddev': math.pi * 42.5 / 180},
}


def draw(params, count, seed=0):
    """camera_pos [count, 2] float64 drawn by the generator's own sampler."""
    generator = torch.Generator().manual_seed(seed)
    _, camera_pos = cameras.sample_camera_positions(count, device='cpu', generator=generator, **params)
    return camera_pos.double().numpy()


@pytest.mark.parametrize('family', list(KNOWN))
def test_fit_recovers_a_known_distribution(family):
    params, distances = pose_stats.fit_pose_distribution(draw(KNOWN[family], 4000))
    assert params['sample_dist'] == family, distances
    for key in ('h_mean', 'h_stddev', 'v_mean', 'v_stddev'):
        assert params[key] == pytest.approx(KNOWN[family][key], abs=0.03, rel=0.03), key


def test_fit_without_flips_keeps_an_off_centre_azimuth():
    known = {**KNOWN['uniform'], 'h_mean': math.pi / 2 + 0.4}
    params, _ = pose_stats.fit_pose_distribution(draw(known, 4000), flip_probability=0.0)
    assert params['h_mean'] == pytest.approx(known['h_mean'], abs=0.03)
    mirrored, _ = pose_stats.fit_pose_distribution(draw(known, 4000), flip_probability=0.5)
    assert mirrored['h_mean'] == pytest.approx(math.pi / 2, abs=0.03)  # the loader's flips centre it


@pytest.mark.parametrize('name, dataset_class', [('FFHQ_default', FFHQ), ('CATS_default', CATS),
                                                 ('CARLA_default', PosedImageFolder)])
def test_nearest_released_config(name, dataset_class):
    config = configs.get_config(name)
    camera_pos = draw({key: config['generator']['kwargs'][key] for key in pose_stats.POSE_KEYS}, 3000, seed=5)
    values, weights = pose_stats.with_mirrors(camera_pos, 0.5)
    fov = config['camera']['fov']
    assert pose_stats.nearest_config(pose_stats.pose_moments(values, weights), lambda size: fov, dataset_class) == name


def write_extrinsics_folder(root, camera_pos, radius=1.0, shift=(0.0, 0.0, 0.0)):
    """A PosedImageFolder of 2x2 images whose cameras sit at camera_pos, `radius` from the origin
    (then moved by `shift`, no longer looking at the origin)."""
    os.makedirs(os.path.join(root, 'poses'))
    origins = cameras.camera_origin_from_pos(torch.from_numpy(camera_pos))
    cam2world = cameras.look_at_cam2world(origins).numpy()
    cam2world[:, :3, 3] = cam2world[:, :3, 3] * radius + shift
    for i, matrix in enumerate(cam2world):
        Image.new('RGB', (2, 2)).save(os.path.join(root, f'{i:04d}.png'))
        np.save(os.path.join(root, 'poses', f'{i:04d}_extrinsics.npy'), to_carla_extrinsics(matrix))


def printed_overrides(out):
    return re.findall(r'--set (\S+)', out)


def test_command_line_prints_overrides_and_a_config(tmp_path, capsys):
    data = tmp_path / 'data'
    write_extrinsics_folder(data, draw(KNOWN['uniform'], 300))
    output = tmp_path / 'poses.png'
    assert pose_stats.main(['--data_dir', str(data), '--config', 'SYNTHETIC_demo', '--new_config', 'MINE',
                            '--output', str(output)]) == 0
    out = capsys.readouterr().out
    assert output.stat().st_size > 0
    assert 'fitted pose distribution: sample_dist=uniform' in out and 'warning' not in out
    assert 'fov: not stored with this folder' in out
    sets = printed_overrides(out)
    assert sets[0] == 'generator.kwargs.sample_dist=uniform' and len(sets) == 5  # poses only: same class, fov, size
    # The --set overrides and the printed config are the same config.
    from_sets = configs.apply_overrides(configs.get_config('SYNTHETIC_demo'), sets)
    from_sets['dataset']['kwargs']['dataset_path'] = str(data)
    snippet = out.split('config for configs.py:\n')[1].split('\n# and in CONFIGS')[0]
    call = ast.parse(snippet).body[0]  # MINE = _merge(SYNTHETIC_demo, {...})
    assert call.targets[0].id == 'MINE' and [arg.id for arg in call.value.args[:1]] == ['SYNTHETIC_demo']
    from_snippet = configs._merge(configs.get_config('SYNTHETIC_demo'), ast.literal_eval(call.value.args[1]))
    assert from_snippet == from_sets


def test_command_line_chooses_the_base_and_reads_the_fov(tmp_path, capsys):
    data = tmp_path / 'data'
    write_extrinsics_folder(data, draw(KNOWN['spherical_uniform'], 300))
    (data / 'camera.json').write_text(json.dumps({'focal': cameras.focal_from_fov(25.0, 128)}))
    assert pose_stats.main(['--data_dir', str(data), '--output', str(tmp_path / 'p.png')]) == 0
    out = capsys.readouterr().out
    assert 'base config: CARLA_default (nearest released config)' in out
    assert 'fov: 25.0000 deg for our pixel grid at 128 px' in out
    assert 'camera.fov=25.0' in printed_overrides(out)


def test_printed_fov_override_applies(tmp_path, capsys):
    data = tmp_path / 'data'
    write_extrinsics_folder(data, draw(KNOWN['spherical_uniform'], 50))
    (data / 'camera.json').write_text(json.dumps({'focal': cameras.focal_from_fov(25.0, 128)}))
    assert pose_stats.main(['--data_dir', str(data), '--output', str(tmp_path / 'p.png')]) == 0
    configs.apply_overrides(configs.get_config('CARLA_default'), printed_overrides(capsys.readouterr().out))


def test_warnings_for_radius_and_centre(tmp_path, capsys):
    write_extrinsics_folder(tmp_path / 'far', draw(KNOWN['uniform'], 100), radius=2.7)
    assert pose_stats.main(['--data_dir', str(tmp_path / 'far'), '--output', str(tmp_path / 'p.png')]) == 0
    out = capsys.readouterr().out
    assert 'warning: cameras lie 2.7 to 2.7 from the origin, ours at 1' in out and 'not centred' not in out
    write_extrinsics_folder(tmp_path / 'shifted', draw(KNOWN['uniform'], 100), shift=(0.0, 0.0, 0.2))
    assert pose_stats.main(['--data_dir', str(tmp_path / 'shifted'), '--output', str(tmp_path / 'p.png')]) == 0
    out = capsys.readouterr().out
    assert 'warning: poses are not centred: the cameras look at [0.0, 0.0, 0.2]' in out


def test_folder_without_poses_is_one_line_error(tmp_path, capsys):
    Image.new('RGB', (2, 2)).save(tmp_path / 'a.png')
    assert pose_stats.main(['--data_dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'holds no pose files' in err and err.count('\n') == 1
