"""Shape and colour diversity: silhouette and paint statistics, the pose residual, and the tool."""
import json
import math

import pytest
import torch
from helpers import ROOT

import configs
from datasets.synthetic import poses_from_config, render_synthetic_dataset
from geometry.views import pose_range
from metrics.diversity import image_statistics, residual_std, summarize
from tools import diversity

WHITE = (1.0, 1.0, 1.0)


def test_silhouette_and_paint_of_a_red_box_and_of_an_empty_image():
    images = torch.ones(2, 3, 20, 20)
    images[0, 1:, 4:12, 6:10] = 0.0  # red box, 8 rows x 4 columns
    stats = image_statistics(images, WHITE)
    assert stats['area'][0].item() == pytest.approx(32 / 400)
    assert stats['aspect'][0].item() == pytest.approx(4 / 8)
    assert stats['saturation'][0].item() == pytest.approx(math.sqrt(6) / 3, rel=1e-6)  # |(2, -1, -1) / 3|
    assert stats['area'][1].item() == 0
    assert math.isnan(stats['aspect'][1].item()) and math.isnan(stats['saturation'][1].item())


def test_the_residual_removes_what_pose_explains():
    rng = torch.Generator().manual_seed(0)
    camera_pos = torch.rand(400, 2, generator=rng) + 1.0
    explained = 0.3 + 0.2 * camera_pos[:, 0] - 0.1 * camera_pos[:, 1] ** 2
    assert residual_std(explained, camera_pos) < 1e-6
    noise = 0.05 * torch.randn(400, generator=rng)
    assert residual_std(explained + noise, camera_pos) == pytest.approx(noise.std().item(), rel=0.05)


def test_summary_leaves_out_empty_images():
    images = torch.ones(8, 3, 16, 16)
    for index in range(6):
        images[index, 1:, 2:4 + index, 3:9] = 0.0
    camera_pos = torch.rand(8, 2) + 1.0
    summary = summarize(image_statistics(images, WHITE), images, camera_pos)
    assert summary['empty_images'] == 2
    assert summary['area_mean'] == pytest.approx(image_statistics(images[:6], WHITE)['area'].mean().item())
    assert math.isfinite(summary['area_std']) and summary['area_std'] > 0
    assert math.isnan(summary['area_residual_std'])  # 6 images with a silhouette: too few for 6 pose terms


@pytest.mark.parametrize('config_name', ['SYNTHETIC_demo', 'CARLA_default', 'FFHQ_default'])
def test_shared_views_sweep_the_yaw_inside_the_trained_pose_range(config_name):
    kwargs = configs.get_config(config_name)['generator']['kwargs']
    (phi_low, phi_high), (theta_low, theta_high) = pose_range(kwargs)
    views = diversity.shared_views(kwargs)  # [V, 2] = (phi, theta)
    assert views.shape == (diversity.VIEW_COUNT, 2)
    assert torch.all(views[:, 0] == views[0, 0]) and phi_low <= views[0, 0] <= phi_high  # one polar angle
    assert torch.all(views[:, 1] >= theta_low - 1e-6) and torch.all(views[:, 1] <= theta_high + 1e-6)
    steps = views[1:, 1] - views[:-1, 1]
    assert torch.allclose(steps, steps[0]) and steps[0] > 0  # evenly spaced yaws, none repeated
    assert views[-1, 1] - views[0, 1] < 2 * math.pi - 1e-3


def test_tool_compares_the_demo_model_with_synthetic_cars(tmp_path):
    data = tmp_path / 'cars'
    render_synthetic_dataset(str(data), num_images=10, img_size=32, seed=3,
                             poses=poses_from_config(configs.get_config('SYNTHETIC_demo')), workers=1,
                             progress=False)
    output = tmp_path / 'diversity.json'
    assert diversity.main(['--generator_file', f'{ROOT}/demo/synthetic_demo.pt', '--data_dir', str(data),
                           '--num_images', '10', '--batch_size', '5', '--output', str(output)]) == 0
    summary = json.loads(output.read_text())
    for side in ('generated', 'real'):
        assert summary[side]['empty_images'] == 0
        assert 0.05 < summary[side]['area_mean'] < 0.6  # a car, not an empty or full frame
    assert all(math.isfinite(value) and value > 0 for value in summary['spread_ratio'].values())
    # The data's paint belongs to each car: it hardly changes over the shared views.
    assert summary['real']['hue_over_views'] < 0.3 * summary['real']['hue_over_objects']
    assert math.isfinite(summary['generated']['hue_over_views'])


def test_tool_needs_a_background_colour_for_configs_without_white(tmp_path, capsys):
    assert diversity.main(['--generator_file', f'{ROOT}/demo/synthetic_demo.pt', '--config', 'SYNTHETIC_demo',
                           '--num_images', '1']) != 0
    assert '--num_images must be > 6' in capsys.readouterr().err
    with pytest.raises(ValueError, match='--background'):
        diversity.background_colour(configs.get_config('FFHQ_default'), None)
    assert diversity.background_colour(configs.get_config('FFHQ_default'), [0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_unusable_output_is_a_one_line_error_before_any_work(tmp_path, capsys):
    (tmp_path / 'taken').write_text('x')
    assert diversity.main(['--generator_file', f'{ROOT}/demo/synthetic_demo.pt', '--config', 'SYNTHETIC_demo',
                           '--num_images', '10', '--output', str(tmp_path / 'taken' / 'diversity.json')]) == 1
    assert capsys.readouterr().err == f"error: not a folder: {tmp_path / 'taken'}\n"
