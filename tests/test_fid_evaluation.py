"""fid_evaluation.py end to end on a TINY_test generator (16 px): seeds, protocols, the real-image
statistics cache (written once, never unpickled: planted malicious pickles never run), two ranks
without a shared folder, one-line errors.

Most runs use the 12-d stand-in feature networks of metric_stand_ins (FID on 2048-d Inception
features costs ~20 s of eigenvalues on a 2-core CPU); one run uses the real offline Inception."""
import json
import math
import os
import socket
import sys
from unittest import mock

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from metric_stand_ins import plant_malicious_pickle, stand_in_networks, stand_in_source

import fid_evaluation
from metrics import inception
from metrics.statistics import CACHE_EXTENSION

NUM_DATA_IMAGES = 6


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """A TINY_test generator state_dict and a 6-image synthetic dataset at 16 px."""
    from configs import get_config
    from datasets.synthetic import render_synthetic_dataset
    from generators import build_generator
    folder = tmp_path_factory.mktemp('tiny_run')
    render_synthetic_dataset(str(folder / 'data'), num_images=NUM_DATA_IMAGES, img_size=16, seed=0, workers=1,
                             progress=False)
    torch.manual_seed(0)
    generator = build_generator(get_config('TINY_test'))
    torch.save(generator.state_dict(), folder / 'generator_ema.pth')
    return folder, generator


def command(folder, out, real_cache, *extra):
    """fid_evaluation.py arguments for the tiny run, writing to `out`, caching in `real_cache`."""
    return ['--config', 'TINY_test', '--generator_file', str(folder / 'generator_ema.pth'), '--output_dir', str(out),
            '--data_dir', str(folder / 'data'), '--real_cache_dir', str(real_cache), '--device', 'cpu', *extra]


def read_record(out):
    with open(os.path.join(out, fid_evaluation.RESULTS_FILE)) as handle:
        return json.load(handle)


@pytest.fixture
def stand_ins(monkeypatch):
    """fid_evaluation with the 12-d stand-in networks (a source with logits, so IS runs too)."""
    monkeypatch.setattr(fid_evaluation, 'resolve_feature_source', stand_in_source)
    monkeypatch.setattr(fid_evaluation, 'build_feature_networks', stand_in_networks)


# --------------------------------------------------------------------------------------------
# Seeds and protocols.
# --------------------------------------------------------------------------------------------
def test_image_seed_is_the_render_script_seed(tiny_run):
    from utils.seeds import latent_for_seed
    _, generator = tiny_run
    z, camera_pos = fid_evaluation.image_latent_and_pose(generator, 5)
    torch.testing.assert_close(z, latent_for_seed(5, generator.z_dim, 'cpu'), rtol=0, atol=0)
    z_again, camera_pos_again = fid_evaluation.image_latent_and_pose(generator, 5)
    assert torch.equal(z, z_again) and torch.equal(camera_pos, camera_pos_again)
    assert not torch.equal(fid_evaluation.image_latent_and_pose(generator, 6)[1], camera_pos)


@pytest.mark.parametrize('argv, name, num_real, num_images', [
    ([], 'released', 8000, 1000),
    (['--protocol', 'fid20k'], 'fid20k', 8000, 20000),
    (['--protocol', 'fid50k_full'], 'fid50k_full', None, 50000),
    (['--protocol', 'fid20k', '--num_images', '20000'], 'fid20k', 8000, 20000),  # the protocol's own count
    (['--num_images', '20000'], 'custom', 8000, 20000),
    (['--protocol', 'fid50k_full', '--num_real_images', '1000'], 'custom', 1000, 50000),
])
def test_protocols(argv, name, num_real, num_images):
    protocol = fid_evaluation.resolve_protocol(fid_evaluation.parse_args(['--generator_file', 'g.pth', *argv]))
    assert (protocol.name, protocol.num_real_images, protocol.num_images) == (name, num_real, num_images)
    if argv == ['--num_images', '20000']:
        assert protocol.description == 'released with explicit image counts (the counts of fid20k)'


# --------------------------------------------------------------------------------------------
# The command line, the statistics cache and its safety.
# --------------------------------------------------------------------------------------------
def test_statistics_are_cached_once_and_protocol_recorded(tiny_run, tmp_path, stand_ins, capsys):
    folder, _ = tiny_run
    argv = command(folder, tmp_path / 'out', tmp_path / 'real', '--protocol', 'fid50k_full', '--num_images', '10',
                   '--metrics', 'fid,kid,is', '--fid_backend', 'pytorch-fid', '--batch_size', '5')
    assert fid_evaluation.main(argv) == 0
    record = read_record(tmp_path / 'out')
    assert record['protocol'] == {'name': 'custom', 'description': 'fid50k_full with explicit image counts',
                                  'num_real_images': NUM_DATA_IMAGES, 'num_images': 10, 'truncation_psi': 1}
    assert record['num_images'] == 10 and record['num_real_images'] == NUM_DATA_IMAGES
    assert set(record['results']) == {'fid', 'kid_mean', 'kid_std', 'is_mean', 'is_std'}
    assert all(np.isfinite(value) for value in record['results'].values())
    assert record['feature_sources'] == {'pytorch-fid': 'stand-in quadrant colours',
                                         'torch-fidelity': 'stand-in quadrant colours'}
    paths = record['real_statistics']
    assert set(paths) == {'pytorch-fid', 'torch-fidelity'}
    assert sorted(os.listdir(tmp_path / 'real')) == sorted(os.path.basename(path) for path in paths.values())
    assert all(path.endswith(f'_16px_{NUM_DATA_IMAGES}_seed0-{backend}-000000000000{CACHE_EXTENSION}')
               for backend, path in paths.items())
    assert sorted(os.listdir(tmp_path / 'out' / 'generated')) == [f'{index:06d}.png' for index in range(10)]
    stamps = {path: os.path.getmtime(path) for path in paths.values()}
    capsys.readouterr()

    assert fid_evaluation.main(argv) == 0  # the statistics are read back, not recomputed
    assert read_record(tmp_path / 'out')['results'] == record['results']
    assert all(os.path.getmtime(path) == stamp for path, stamp in stamps.items())
    assert capsys.readouterr().out.count('reusing real-image statistics') == 2


def test_end_to_end_offline_inception_never_unpickles_a_cache(tiny_run, tmp_path, monkeypatch, capsys):
    """The real offline Inception (fid-helper) on 3 + 3 images, KID, IS refused, consistency.

    Malicious pickles (which create a marker file when unpickled) are planted where torch-fidelity's
    cache would be read (the folder the previous version of this script pointed it to, and its
    default cache root): nothing runs them. Every torch.load of a file is weights_only. Then our
    own statistics file and the Inception weights file are poisoned: refused in one line."""
    folder, _ = tiny_run
    marker = tmp_path / 'code-ran'
    torch_home, real_cache = tmp_path / 'torch_home', tmp_path / 'real'
    monkeypatch.setenv('TORCH_HOME', str(torch_home))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))  # empty Inception caches
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    old_key = fid_evaluation.real_set_key('PosedImageFolder', str(folder / 'data'), 16, 3, 0).rsplit('_seed', 1)[0]
    for root in (real_cache / old_key / 'features', torch_home / 'fidelity_cache'):
        for suffix in ('features-2048', 'stat-fid-2048'):
            plant_malicious_pickle(str(root / f'{old_key}-default_1-{inception.POOL3_EXTRACTOR}-{suffix}.pt'), marker)
    file_loads, real_load = [], torch.load
    def recording_load(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            file_loads.append((str(file), kwargs.get('weights_only')))
        return real_load(file, *args, **kwargs)
    monkeypatch.setattr(torch, 'load', recording_load)

    argv = command(folder, tmp_path / 'out', real_cache, '--num_real_images', '3', '--num_images', '3', '--offline',
                   '--metrics', 'kid,is,consistency', '--num_consistency_seeds', '2', '--no_watermark')
    assert fid_evaluation.main(argv) == 0
    assert not marker.exists()
    assert file_loads and all(weights_only for _, weights_only in file_loads), file_loads
    record = read_record(tmp_path / 'out')
    results = record['results']
    assert set(results) >= {'kid_mean', 'kid_std', 'consistency_error', 'consistency_coverage'}
    assert 'is_mean' not in results and any('IS not computed' in note for note in record['notes'])
    assert np.isfinite(results['kid_mean']) and results['kid_std'] >= 0
    assert 0 <= results['consistency_error'] < 1 and 0 < results['consistency_coverage'] <= 1
    assert 'fid-helper' in record['feature_sources']['torch-fidelity']
    assert record['protocol']['name'] == 'custom' and record['protocol']['num_images'] == 3
    assert sorted(os.listdir(tmp_path / 'out' / 'generated')) == ['000000.png', '000001.png', '000002.png']
    assert 'kid_mean: ' in capsys.readouterr().out

    statistics = record['real_statistics']['torch-fidelity']
    plant_malicious_pickle(statistics, marker)
    assert fid_evaluation.main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and statistics in error[0] and 'delete the file to recompute them' in error[0]
    assert not marker.exists()

    weights = str(tmp_path / 'weights.pth')
    plant_malicious_pickle(weights, marker)
    assert fid_evaluation.main([*argv, '--inception_weights', weights]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and weights in error[0] and 'as plain tensors' in error[0]
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Two ranks, each with its own folders.
# --------------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def two_rank_worker(rank, port, argv_by_rank):
    """One of two gloo processes (the environment torchrun would set), with the stand-in networks."""
    os.environ.update({'RANK': str(rank), 'LOCAL_RANK': str(rank), 'WORLD_SIZE': '2',
                       'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port)})
    torch.set_num_threads(1)
    with mock.patch.object(fid_evaluation, 'resolve_feature_source', stand_in_source), \
            mock.patch.object(fid_evaluation, 'build_feature_networks', stand_in_networks):
        code = fid_evaluation.main(argv_by_rank[rank])
    if code:
        sys.exit(code)


def test_two_ranks_without_a_shared_folder_equal_one_process(tiny_run, tmp_path, stand_ins):
    """Rank 1 has its own output and cache folders and no dataset; rank 0 still scores all 11 images,
    with the same numbers as one process (IS needs 10 images)."""
    folder, _ = tiny_run
    metrics = ['--num_real_images', '5', '--num_images', '11', '--batch_size', '1', '--metrics', 'fid,kid,is']
    argv_by_rank = [command(folder, tmp_path / 'node0', tmp_path / 'real0', *metrics),
                    [*command(folder, tmp_path / 'node1', tmp_path / 'real1', *metrics), '--data_dir', '/nonexistent']]
    mp.spawn(two_rank_worker, args=(free_port(), argv_by_rank), nprocs=2, join=True)

    assert fid_evaluation.main(command(folder, tmp_path / 'single', tmp_path / 'real_single', *metrics)) == 0
    single, ranks = read_record(tmp_path / 'single'), read_record(tmp_path / 'node0')
    assert ranks['world_size'] == 2 and ranks['num_images'] == 11 and ranks['protocol']['num_images'] == 11
    assert set(ranks['results']) == {'fid', 'kid_mean', 'kid_std', 'is_mean', 'is_std'}
    for name, value in single['results'].items():
        assert ranks['results'][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    # Each node holds only the images it rendered; only rank 0 wrote results and statistics.
    assert sorted(os.listdir(tmp_path / 'node0' / 'generated')) == [f'{index:06d}.png' for index in range(0, 11, 2)]
    assert sorted(os.listdir(tmp_path / 'node1' / 'generated')) == [f'{index:06d}.png' for index in range(1, 11, 2)]
    assert not os.path.exists(tmp_path / 'node1' / fid_evaluation.RESULTS_FILE)
    assert not os.path.exists(tmp_path / 'real1')


# --------------------------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('extra, message', [
    (['--metrics', 'fid,ppl'], "error: --metrics 'fid,ppl': use a comma list of fid, kid, is, consistency"),
    (['--num_images', '1'], 'error: --num_images must be >= 2 (FID needs a covariance), got 1'),
    (['--consistency_yaw', 'nan'], 'error: --consistency_yaw must be a positive number, got nan'),
])
def test_cli_errors_are_one_line(tiny_run, tmp_path, capsys, extra, message):
    folder, _ = tiny_run
    assert fid_evaluation.main(command(folder, tmp_path, tmp_path / 'real', *extra)) == 1
    assert capsys.readouterr().err.strip().splitlines() == [message]


def test_unusable_folders_fail_before_any_image_is_made(tiny_run, tmp_path, stand_ins, capsys):
    folder, _ = tiny_run
    occupied = tmp_path / 'file'
    occupied.write_text('x')
    for out, real_cache in ((occupied, tmp_path / 'real'), (tmp_path / 'out', occupied / 'real')):
        assert fid_evaluation.main(command(folder, out, real_cache, '--num_images', '4', '--metrics', 'fid')) == 1
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and 'not a folder' in error[0]
    assert not (tmp_path / 'out' / 'generated').exists()  # stopped before rendering


def test_consistency_without_any_overlap_is_null(monkeypatch):
    monkeypatch.setattr(fid_evaluation, 'image_latent_and_pose', lambda generator, seed: (torch.zeros(1, 4), None))
    monkeypatch.setattr(fid_evaluation, 'generator_consistency',
                        lambda generator, z, *args, **kwargs: (torch.full((len(z),), math.nan), torch.zeros(len(z))))
    args = fid_evaluation.parse_args(['--num_consistency_seeds', '3'])
    camera = {'fov': 12, 'ray_start': 0.88, 'ray_end': 1.12}
    values = fid_evaluation.consistency_metric(None, camera, args, 'cpu')
    assert values['consistency_error'] is None and values['consistency_seeds_without_overlap'] == 3
    assert 'NaN' not in json.dumps(values)


def test_unknown_protocol_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fid_evaluation.parse_args(['--protocol', 'fid10k'])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fid10k'" in capsys.readouterr().err
