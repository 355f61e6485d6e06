"""tools/fid_floor.py: FID / KID between disjoint sets of real images (stand-in features)."""
import json
import shutil

import numpy as np
import pytest
import torch
from metric_stand_ins import numpy_fid, quadrant_features, stand_in_networks, stand_in_source

import configs
from datasets import build_dataset
from datasets.synthetic import poses_from_config, render_synthetic_dataset
from tools import fid_floor
from utils.images import to_uint8

PER_SET = 3


@pytest.fixture
def cars_with_copies(tmp_path, monkeypatch):
    """9 synthetic cars where images 6-8 are byte copies of images 0-2 (same poses)."""
    monkeypatch.setattr(fid_floor, 'resolve_feature_source', stand_in_source)
    monkeypatch.setattr(fid_floor, 'build_feature_networks', stand_in_networks)
    data = tmp_path / 'cars'
    render_synthetic_dataset(str(data), num_images=2 * PER_SET, img_size=32, seed=5,
                             poses=poses_from_config(configs.get_config('SYNTHETIC_demo')), workers=1, progress=False)
    for index in range(PER_SET):
        copy = 2 * PER_SET + index
        shutil.copy(data / f'{index:06d}.png', data / f'{copy:06d}.png')
        shutil.copy(data / 'poses' / f'{index:06d}_extrinsics.npy', data / 'poses' / f'{copy:06d}_extrinsics.npy')
    return data


def test_identical_sets_score_zero_and_others_match_numpy(cars_with_copies, tmp_path):
    output = tmp_path / 'floor.json'
    summary = fid_floor.run(fid_floor.parse_args(['--data_dir', str(cars_with_copies), '--num_images', str(PER_SET),
                                                  '--splits', '3', '--output', str(output)]))
    pairs = {tuple(pair['sets']): pair for pair in summary['pairs']}
    assert sorted(pairs) == [(0, 1), (0, 2), (1, 2)]
    assert pairs[0, 2]['fid'] == pytest.approx(0.0, abs=1e-3)  # set 2 is a copy of set 0
    assert pairs[0, 1]['fid'] > 1.0
    dataset = build_dataset(configs.get_config('SYNTHETIC_demo'), str(cars_with_copies))
    pixels = to_uint8(torch.stack([dataset.load_image(index) for index in range(2 * PER_SET)]), rounding='round')
    features = quadrant_features(pixels)  # [6, 12]
    expected = numpy_fid(features[:PER_SET], features[PER_SET:])
    assert pairs[0, 1]['fid'] == pytest.approx(expected, rel=1e-4)
    assert json.loads(output.read_text())['pairs'] == summary['pairs']
    assert np.isfinite([pair['kid_mean'] for pair in summary['pairs']]).all()


def test_too_few_images_is_a_one_line_error_before_any_work(cars_with_copies, tmp_path, capsys):
    output = tmp_path / 'floor.json'
    assert fid_floor.main(['--data_dir', str(cars_with_copies), '--num_images', '5', '--output', str(output)]) == 1
    assert 'has 9 images, fewer than --splits x --num_images = 10' in capsys.readouterr().err
    assert not output.exists()
    assert fid_floor.main(['--data_dir', str(cars_with_copies), '--splits', '1']) == 1
    assert '--splits and --num_images must both be at least 2' in capsys.readouterr().err


def test_unusable_output_is_a_one_line_error_before_any_work(cars_with_copies, tmp_path, capsys):
    assert fid_floor.main(['--data_dir', str(cars_with_copies), '--num_images', '2', '--output', str(tmp_path)]) == 1
    assert capsys.readouterr().err == f'error: is a folder, not a file name: {tmp_path}\n'
