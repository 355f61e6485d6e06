"""Smoke test of the demo path: `make demo-train` (dataset, training, export, `make demo`) on a few steps,
`make demo` and `make demo-eval` on the shipped model."""
import json
import math
import os
import re
import subprocess

import numpy as np
import torch
from helpers import ROOT
from PIL import Image

import configs
from checkpoints import checkpoint
from checkpoints.loading import config_from_checkpoint

SHIPPED_MODEL = os.path.join(ROOT, 'demo', 'synthetic_demo.pt')


def run_make(target, **variables):
    command = ['make', '--no-print-directory', '-C', ROOT, target] + [f'{k}={v}' for k, v in variables.items()]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_demo_train_runs_end_to_end_on_a_few_steps(tmp_path):
    out = tmp_path / 'out'
    stdout = run_make('demo-train', DEMO_STEPS=2, DEMO_NUM_IMAGES=16, DEMO_DATA=tmp_path / 'data',
                      DEMO_RUN=tmp_path / 'run', DEMO_OUT=out, DEMO_SEEDS=0, DEMO_SIZE=32, DEMO_RENDER_SIZE=32,
                      DEMO_THRESHOLD=0.05, DEMO_MESH_RESOLUTION=32)
    assert f'demo outputs in {out}/' in stdout
    model = torch.load(tmp_path / 'run' / 'synthetic_demo.pt', weights_only=True)
    assert model['step'] == 2 and set(model) >= {'config', 'ema', 'generator'}
    assert 'discriminator' not in model and 'optimizer_G' not in model  # stripped for shipping
    frames = sorted(p for p in os.listdir(out) if p.startswith('grid_0_') and p.endswith('.png'))
    assert len(frames) == 30
    assert np.asarray(Image.open(out / frames[0])).shape == (32, 32, 3)
    for name in ('grid_0.gif', 'grid_0.mp4', 'depth_0.gif', 'demo_grid.png', 'shape_0.ply'):
        assert (out / name).stat().st_size > 0, name
    # resuming a finished run trains nothing more and keeps the step
    run_make('demo-train', DEMO_STEPS=2, DEMO_NUM_IMAGES=16, DEMO_DATA=tmp_path / 'data',
             DEMO_RUN=tmp_path / 'run', DEMO_OUT=out, DEMO_SEEDS=0, DEMO_SIZE=32, DEMO_RENDER_SIZE=32,
             DEMO_THRESHOLD=0.05, DEMO_MESH_RESOLUTION=32)
    assert torch.load(tmp_path / 'run' / 'synthetic_demo.pt', weights_only=True)['step'] == 2



def test_shipped_demo_model_renders(tmp_path):
    model = torch.load(SHIPPED_MODEL, weights_only=True)
    assert os.path.getsize(SHIPPED_MODEL) < 8 * 2 ** 20
    assert model['config']['dataset']['class'] == 'PosedImageFolder'
    stdout = run_make('demo', DEMO_OUT=tmp_path, DEMO_SEEDS=1, DEMO_SIZE=32, DEMO_RENDER_SIZE=16,
                      DEMO_MESH_RESOLUTION=48)
    assert 'at 16 px, resized to 32 px' in stdout
    frames = [np.asarray(Image.open(tmp_path / f'grid_1_{i}.png'), dtype=np.float32) for i in (0, 15)]
    assert frames[0].shape == (32, 32, 3)
    assert frames[0].std() > 5  # an object, not a blank frame
    assert np.abs(frames[0] - frames[1]).mean() > 1  # the camera moved
    assert (tmp_path / 'shape_0.ply').stat().st_size > 1000


def test_demo_eval_measures_the_shipped_model(tmp_path):
    evaluation = tmp_path / 'eval'
    run_make('demo-eval', DEMO_MODEL=SHIPPED_MODEL, DEMO_NUM_IMAGES=12, DEMO_DATA=tmp_path / 'data',
             DEMO_EVAL=evaluation, DEMO_EVAL_IMAGES=8, DEMO_DIVERSITY_IMAGES=8)
    record = json.loads((evaluation / 'metrics.json').read_text())
    assert record['num_images'] == 8 and record['feature_sources']  # the offline Inception was found
    results = record['results']
    assert results['fid'] > 0 and math.isfinite(results['kid_mean'])
    assert 0 <= results['consistency_error'] < 0.5
    diversity = json.loads((evaluation / 'diversity.json').read_text())
    assert diversity['num_images'] == 8 and diversity['generated']['empty_images'] == 0


def test_shipped_demo_model_is_what_demo_train_makes():
    # `make demo-train` must reproduce the shipped model: same config, same number of iterations.
    model = torch.load(SHIPPED_MODEL, weights_only=True)
    expected = checkpoint.config_to_json(configs.get_config('SYNTHETIC_demo'))
    assert checkpoint.config_to_json(config_from_checkpoint(model['config'])) == expected
    with open(os.path.join(ROOT, 'Makefile')) as handle:
        demo_steps = re.search(r'^DEMO_STEPS\s*\?=\s*(\d+)', handle.read(), re.MULTILINE)
    assert model['step'] == int(demo_steps.group(1))
