"""tools.discriminator_check: D's scores on training, held-out and generated images of a training
checkpoint, the reading drawn from them, and one-line errors for bad input."""
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT, write_tiny_dataset

from tools import discriminator_check

NUM_IMAGES = 4


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    """A TINY_test run of two iterations on random images: (run folder, data folder)."""
    data_dir = write_tiny_dataset(str(tmp_path_factory.mktemp('data')))
    output_dir = str(tmp_path_factory.mktemp('run'))
    command = [sys.executable, os.path.join(ROOT, 'train.py'), '--device', 'cpu', '--config', 'TINY_test',
               '--data_dir', data_dir, '--output_dir', output_dir, '--num_workers', '0', '--max_steps', '2',
               '--model_save_interval', '2']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return output_dir, data_dir


def check(run_dir, heldout_dir, *extra):
    output_dir, data_dir = run_dir
    args = discriminator_check.parse_args(['--load_dir', output_dir, '--data_dir', data_dir, '--heldout_dir',
                                           heldout_dir, '--num_images', str(NUM_IMAGES), '--batch_size', '3',
                                           '--device', 'cpu', *extra])
    return discriminator_check.run(args)


def test_training_images_as_held_out_score_identically(run_dir):
    summary = check(run_dir, run_dir[1])
    assert summary['training'] == summary['heldout']
    assert not summary['reading'].startswith('overfitting')
    for side in ('training', 'heldout', 'generated'):
        assert 0.0 <= summary[side]['positive_share'] <= 1.0
        assert summary[side]['loss'] > 0.0 and summary[side]['logit_std'] >= 0.0


def test_scores_are_the_discriminators_logits(run_dir):
    output_dir, data_dir = run_dir
    summary = check(run_dir, run_dir[1])
    path, state = discriminator_check.find_latest_checkpoint(output_dir)
    config = discriminator_check.config_from_checkpoint(state['config'])
    discriminator = discriminator_check.build_discriminator(config).eval()
    discriminator.load_state_dict(state['discriminator'])
    dataset = discriminator_check.build_dataset(config, data_dir)
    logits = discriminator_check.real_logits(discriminator, dataset, NUM_IMAGES, 2, 'cpu', 'real')
    assert logits.shape == (NUM_IMAGES,)
    assert summary['training']['logit_mean'] == pytest.approx(logits.mean().item(), abs=1e-5)
    assert summary['training']['loss'] == pytest.approx(F.softplus(-logits).mean().item(), abs=1e-5)
    # The generated side is reproducible from --seed and changes with it.
    assert check(run_dir, data_dir)['generated'] == summary['generated']
    assert check(run_dir, data_dir, '--seed', '5')['generated'] != summary['generated']


def side(mean, loss):
    return {'logit_mean': mean, 'logit_std': 1.0, 'positive_share': 0.5, 'loss': loss}


@pytest.mark.parametrize('training, heldout, generated, start', [
    (side(3.0, 0.05), side(1.0, 0.3), side(-3.0, 0.05), 'overfitting'),    # gap 2 of 6 >= 25 %
    (side(5.0, 0.03), side(4.9, 0.03), side(-4.0, 0.04), 'the discriminator wins'),
    (side(1.3, 0.26), side(1.3, 0.26), side(-0.1, 0.70), 'balanced'),
    (side(-0.1, 0.7), side(-0.5, 0.9), side(0.0, 0.7), 'balanced'),          # no real - generated gap
])
def test_reading(training, heldout, generated, start):
    summary = {'training': training, 'heldout': heldout, 'generated': generated}
    assert discriminator_check.reading(summary).startswith(start)


def test_batches_must_fill_the_minibatch_std_groups(run_dir, capsys):
    output_dir, data_dir = run_dir
    state_path, state = discriminator_check.find_latest_checkpoint(output_dir)
    assert state['config']['discriminator']['kwargs'].get('minibatch_std_group', 0) == 0  # TINY_test: off
    grouped = os.path.join(os.path.dirname(state_path), 'grouped', 'step_0000002.pt')
    os.makedirs(os.path.dirname(grouped), exist_ok=True)
    state['config']['discriminator']['kwargs']['minibatch_std_group'] = 2
    config = discriminator_check.config_from_checkpoint(state['config'])
    state['discriminator'] = discriminator_check.build_discriminator(config).state_dict()  # one more channel
    torch.save(state, grouped)
    arguments = ['--load_dir', grouped, '--data_dir', data_dir, '--heldout_dir', data_dir, '--device', 'cpu']
    assert discriminator_check.main([*arguments, '--num_images', '3', '--batch_size', '2']) == 1
    assert 'multiples of 2, the discriminator' in capsys.readouterr().err
    summary = discriminator_check.run(discriminator_check.parse_args([*arguments, '--num_images', '4',
                                                                      '--batch_size', '2']))
    assert summary['training'] == summary['heldout']


def test_bad_input_is_one_line(run_dir, tmp_path, capsys):
    output_dir, data_dir = run_dir
    few = tmp_path / 'few'
    shutil.copytree(data_dir, few)
    for name in sorted(os.listdir(few))[:4]:
        if name.endswith('.png'):
            os.remove(few / name)
    cases = [
        (['--heldout_dir', str(tmp_path / 'missing')], 'not found; preprocess images the run did not train on'),
        (['--heldout_dir', str(few)], 'fewer than --num_images'),
        (['--heldout_dir', data_dir, '--load_dir', str(tmp_path)], 'no complete checkpoint'),
    ]
    for extra, message in cases:
        arguments = ['--load_dir', output_dir, '--data_dir', data_dir, '--num_images', str(NUM_IMAGES),
                     '--device', 'cpu', *extra]
        assert discriminator_check.main(arguments) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith('error:') and message in error and '\n' not in error
