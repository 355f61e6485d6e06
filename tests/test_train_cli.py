"""train.py end to end on CPU (TINY_test, 16 px, a few steps): outputs, exact resume, two ranks
under torchrun, one-line errors for bad input."""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import ROOT, write_tiny_dataset

import configs
from generators import build_generator

TRAIN = os.path.join(ROOT, 'train.py')
TORCHRUN = os.path.join(os.path.dirname(sys.executable), 'torchrun')
STEPS = 5          # 6 images, batch 2: 3 batches per epoch, so step 2 is mid-epoch, step 5 in epoch 1
TIMEOUT = 300      # seconds per subprocess (generous: the machine is shared)


def run_train(*args, launcher=(sys.executable,), check=True):
    """Run train.py on the CPU with one thread per process (same arithmetic in every run)."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    command = [*launcher, TRAIN, '--device', 'cpu', *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if check and result.returncode != 0:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def common(data_dir, output_dir):
    return ['--config', 'TINY_test', '--data_dir', data_dir, '--output_dir', output_dir, '--num_workers', '0',
            '--sample_interval', '2', '--model_save_interval', '2', '--log_interval', '1']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp('data')))


@pytest.fixture(scope='module')
def uninterrupted(data_dir, tmp_path_factory):
    """A run of STEPS iterations in one go; returns its output folder."""
    output_dir = str(tmp_path_factory.mktemp('uninterrupted'))
    run_train(*common(data_dir, output_dir), '--max_steps', str(STEPS))
    return output_dir


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same(a, b, where='checkpoint'):
    """Recursively equal: tensors bitwise, everything else with ==."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f'{where} differs by {(a.double() - b.double()).abs().max().item()}'
    else:
        assert a == b, f'{where}: {a} != {b}'


def test_training_writes_checkpoints_snapshots_and_logs(uninterrupted):
    # Checkpoints: every sample/save interval (2, 4) and at the end (5); all weights_only-loadable.
    names = sorted(os.listdir(os.path.join(uninterrupted, 'checkpoints')))
    assert names == ['step_0000002.pt', 'step_0000004.pt', 'step_0000005.pt']
    state = load(os.path.join(uninterrupted, 'checkpoints', 'step_0000005.pt'))
    assert state['format'] == 'gram-checkpoint' and state['version'] == 1
    assert (state['step'], state['epoch']) == (STEPS, 1)
    assert state['ema']['num_updates'] == STEPS and state['ema']['decay'] == 0.999
    assert state['ema2']['num_updates'] == STEPS and state['ema2']['decay'] == 0.9999
    assert state['rng']['batch_in_epoch'] == 2 and state['rng']['world_size'] == 1
    config = configs.get_config('TINY_test')
    assert state['config']['process'] == config['process']

    # generator_ema.pth: the EMA weights as a plain state_dict that a fresh generator loads strictly.
    ema_weights = load(os.path.join(uninterrupted, 'generator_ema.pth'))
    assert_same(ema_weights, state['ema']['shadow'])
    generator = build_generator(config)
    generator.load_state_dict(ema_weights)
    assert not torch.equal(ema_weights['representation.sample_network.network.0.weight'],
                           state['generator']['representation.sample_network.network.0.weight'])

    # Snapshots: 5 x 5 grids of 16 px images with 2 px padding -> 92 x 92, front and tilted.
    from PIL import Image
    for step in (2, 4, 5):
        for view in ('front', 'tilted'):
            with Image.open(os.path.join(uninterrupted, 'snapshots', f'{step:07d}_{view}.png')) as grid:
                assert grid.size == (92, 92)

    # Logs: one stats line per step (log_interval 1), TensorBoard events, resolved config JSON.
    with open(os.path.join(uninterrupted, 'stats.jsonl')) as handle:
        stats = [json.loads(line) for line in handle]
    assert [s['step'] for s in stats] == list(range(1, STEPS + 1))
    assert {'loss/D', 'loss/G', 'loss/D_r1', 'loss/D_pos', 'loss/D_real_pos', 'img_per_s', 'sec_per_iter'} <= set(stats[0])
    assert all(torch.isfinite(torch.tensor(s['loss/D'])) for s in stats)
    assert any(name.startswith('events.out.tfevents') for name in os.listdir(os.path.join(uninterrupted, 'tensorboard')))
    with open(os.path.join(uninterrupted, 'config.json')) as handle:
        assert json.load(handle)['global']['img_size'] == 16


def test_resume_continues_exactly(data_dir, uninterrupted, tmp_path):
    output_dir = str(tmp_path / 'resumed')
    run_train(*common(data_dir, output_dir), '--max_steps', '2')
    result = run_train(*common(data_dir, output_dir), '--max_steps', str(STEPS), '--load_dir', output_dir)
    assert f"resumed from {os.path.join(output_dir, 'checkpoints', 'step_0000002.pt')} at step 2 (epoch 0)" in result.stdout
    resumed = load(os.path.join(output_dir, 'checkpoints', 'step_0000005.pt'))
    reference = load(os.path.join(uninterrupted, 'checkpoints', 'step_0000005.pt'))
    # Everything: G, D, both EMAs (+ counts), optimisers, step, epoch, RNG state.
    assert_same(resumed, reference)


def test_two_ranks_under_torchrun_stay_identical_and_resume_exactly(data_dir, tmp_path):
    # Every checkpoint compares the ranks' weights (a difference stops training), so a finished
    # run proves they stayed identical. Resuming rank >= 1 used to crash in torch.set_rng_state.
    launcher = (TORCHRUN, '--standalone', '--nproc_per_node=2')
    two_rank = ('--set', 'global.batch_size=1')
    output_dir = str(tmp_path / 'ddp')
    result = run_train(*common(data_dir, output_dir), '--max_steps', '4', *two_rank, launcher=launcher)
    assert 'training finished at step 4' in result.stdout
    assert result.stdout.count('training finished') == 1  # only rank 0 logs
    saved = load(os.path.join(output_dir, 'checkpoints', 'step_0000004.pt'))
    assert saved['rng']['world_size'] == 2
    assert saved['rng']['torch_cpu'].shape[0] == 2
    assert not torch.equal(saved['rng']['torch_cpu'][0], saved['rng']['torch_cpu'][1])  # per-rank seeds

    resumed_dir = tmp_path / 'resumed'
    (resumed_dir / 'checkpoints').mkdir(parents=True)
    shutil.copy(os.path.join(output_dir, 'checkpoints', 'step_0000002.pt'), resumed_dir / 'checkpoints')
    result = run_train(*common(data_dir, str(resumed_dir)), '--max_steps', '4', *two_rank,
                       '--load_dir', str(resumed_dir), launcher=launcher)
    assert 'at step 2 (epoch 0)' in result.stdout
    assert_same(load(str(resumed_dir / 'checkpoints' / 'step_0000004.pt')), saved)


def test_resume_with_loader_workers_continues_exactly(data_dir, tmp_path):
    # Worker processes draw the flips; their seeds depend only on (seed, rank, epoch).
    workers = ('--num_workers', '1')
    reference_dir, resumed_dir = str(tmp_path / 'reference'), str(tmp_path / 'resumed')
    run_train(*common(data_dir, reference_dir), '--max_steps', str(STEPS), *workers)
    run_train(*common(data_dir, resumed_dir), '--max_steps', '2', *workers)
    run_train(*common(data_dir, resumed_dir), '--max_steps', str(STEPS), '--load_dir', resumed_dir, *workers)
    name = f'step_{STEPS:07d}.pt'
    assert_same(load(os.path.join(resumed_dir, 'checkpoints', name)),
                load(os.path.join(reference_dir, 'checkpoints', name)))


def test_resume_on_data_that_shrank_starts_the_next_epoch(tmp_path):
    data = write_tiny_dataset(str(tmp_path / 'data'))  # 6 images, batch 2: 3 batches per epoch
    output_dir = str(tmp_path / 'run')
    run_train(*common(data, output_dir), '--max_steps', '2')  # stops 2 batches into epoch 0
    for name in ('02', '03', '04', '05'):
        os.remove(os.path.join(data, f'{name}.png'))
        os.remove(os.path.join(data, 'poses', f'{name}_extrinsics.npy'))
    result = run_train(*common(data, output_dir), '--max_steps', '4', '--load_dir', output_dir, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'the checkpoint was 2 batches into epoch 0, but the data now makes 1 per epoch; continuing with epoch 1' \
        in result.stdout
    assert load(os.path.join(output_dir, 'checkpoints', 'step_0000004.pt'))['epoch'] == 2  # epochs 1 and 2: one batch each


def test_dry_run_prints_resolved_config_and_writes_nothing(tmp_path):
    output_dir = str(tmp_path / 'dry')
    result = run_train('--config', 'TINY_test', '--output_dir', output_dir, '--dry_run',
                       '--set', 'global.batch_size=4', '--set', 'process.r1_interval=2')
    printed = json.loads(result.stdout)
    assert printed['config']['global']['batch_size'] == 4
    assert printed['config']['process']['r1_interval'] == 2
    assert printed['options']['precision'] == 'fp32'
    assert not os.path.exists(output_dir)


@pytest.mark.parametrize('args, message', [
    (['--config', 'NOT_A_CONFIG'], "argument --config: invalid choice: 'NOT_A_CONFIG'"),
    (['--config', 'TINY_test', '--patch_split', '3'], '--patch_split must be a power of 2'),
    (['--config', 'TINY_test', '--set', 'global.no_such_key=1'], "unknown config key 'global.no_such_key'"),
    (['--config', 'TINY_test', '--data_dir', '/nonexistent/gram-data'], "dataset folder '/nonexistent/gram-data' not found"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    result = run_train(*args, '--output_dir', str(tmp_path / 'out'), check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert 'Traceback' not in result.stderr + result.stdout


def test_a_broken_image_met_by_a_loader_worker_is_one_line_naming_it(tmp_path):
    data = write_tiny_dataset(str(tmp_path / 'data'))
    broken = os.path.join(data, '03.png')
    with open(broken, 'rb') as handle:
        head = handle.read(60)  # the PNG header and the start of IHDR: cut off mid-download
    with open(broken, 'wb') as handle:
        handle.write(head)
    result = run_train('--config', 'TINY_test', '--data_dir', data, '--output_dir', str(tmp_path / 'out'),
                       '--num_workers', '1', '--max_steps', '4', check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip().startswith('error')]
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"error: cannot read image '{broken}'") and 'replace or delete the file' in lines[0]
    assert 'Traceback' not in result.stderr


def test_checkpoint_from_another_config_is_one_clear_line(data_dir, uninterrupted, tmp_path):
    result = run_train('--config', 'SYNTHETIC_demo', '--set', 'global.batch_size=2', '--data_dir', data_dir,
                       '--output_dir', str(tmp_path / 'out'), '--load_dir', uninterrupted, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert 'was trained with another config' in lines[0] and 'step_0000005.pt' in lines[0]


@pytest.mark.parametrize('args, message', [
    (['--set', 'global.batch_size=0'], 'global.batch_size=0 is invalid: expected an int >= 1'),
    (['--set', 'global.img_size=0'], 'global.img_size=0 is invalid: expected a power of 2 in [16, 512]'),
    (['--set', "global.z_dist='uniform'"], "global.z_dist='uniform' is invalid"),
    (['--set', 'camera.fov=-10'], 'camera.fov=-10.0 is invalid'),
    (['--set', 'generator.kwargs.sample_dist=gausian'], "generator.kwargs.sample_dist='gausian' is invalid"),
    (['--num_workers', '-1'], '--num_workers must be at least 0'),
    (['--max_steps', '-1'], '--max_steps must be at least 1'),
    (['--set_step', '-5'], '--set_step must be at least 0'),
    (['--set_step', '100'], '--set_step overrides the step counter of a resumed run; add --load_dir'),
    (['--timeout_minutes', 'nan'], '--timeout_minutes must be a positive number'),
    (['--device', 'foo'], "unknown device 'foo'"),
])
def test_bad_settings_fail_at_once_in_one_line(args, message, tmp_path, capsys):
    import train
    output_dir = tmp_path / 'out'
    assert train.main(['--config', 'TINY_test', '--output_dir', str(output_dir), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not output_dir.exists()


def test_one_named_gpu_under_several_ranks_fails_at_once(tmp_path, capsys, monkeypatch):
    import train
    monkeypatch.setattr(train, 'resolve_device', lambda name: torch.device(name))  # as if the GPUs were there
    monkeypatch.setenv('WORLD_SIZE', '2')
    assert train.main(['--config', 'TINY_test', '--output_dir', str(tmp_path / 'out'), '--device', 'cuda:1']) == 1
    assert capsys.readouterr().err == ('error: --device cuda:1 names one GPU, but 2 ranks run; use --device cuda '
                                       '(each rank takes cuda:LOCAL_RANK)\n')


def test_output_dir_that_is_a_file_fails_at_once(tmp_path, capsys):
    import train
    (tmp_path / 'taken').write_text('x')
    assert train.main(['--config', 'TINY_test', '--output_dir', str(tmp_path / 'taken' / 'run')]) == 1
    assert 'not a folder' in capsys.readouterr().err


def test_failed_resume_leaves_the_run_folder_untouched(data_dir, uninterrupted, tmp_path):
    run = tmp_path / 'run'
    shutil.copytree(uninterrupted, run)
    before = {path: path.read_bytes() for path in run.rglob('*') if path.is_file()}
    result = run_train('--config', 'SYNTHETIC_demo', '--set', 'global.batch_size=2', '--data_dir', data_dir,
                       '--load_dir', str(run), check=False)
    assert result.returncode == 1 and 'was trained with another config' in result.stderr
    after = {path: path.read_bytes() for path in run.rglob('*') if path.is_file()}
    assert after == before  # config.json and args.json included


def test_load_dir_may_name_a_checkpoint_file_of_the_run(data_dir, uninterrupted, tmp_path):
    run = tmp_path / 'run'
    shutil.copytree(uninterrupted, run)
    before = {path: path.read_bytes() for path in run.rglob('*') if path.is_file()}
    older = run / 'checkpoints' / 'step_0000004.pt'
    result = run_train(*common(data_dir, str(run)), '--max_steps', '6', '--load_dir', str(older), check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"'{older}' is older than the newest checkpoint of its run" in result.stderr and 'Traceback' not in result.stderr
    assert {path: path.read_bytes() for path in run.rglob('*') if path.is_file()} == before

    loose = tmp_path / 'downloads' / 'step_0000005.pt'  # a checkpoint outside any run: no folder to take over
    loose.parent.mkdir()
    shutil.copy(run / 'checkpoints' / f'step_{STEPS:07d}.pt', loose)
    result = run_train('--config', 'TINY_test', '--data_dir', data_dir, '--load_dir', str(loose), check=False)
    assert result.returncode == 1 and f"'{loose}' is not in a run's checkpoints/ folder" in result.stderr
    assert os.listdir(loose.parent) == ['step_0000005.pt']

    newest = run / 'checkpoints' / f'step_{STEPS:07d}.pt'  # no --output_dir: the run that holds it
    result = run_train('--config', 'TINY_test', '--data_dir', data_dir, '--num_workers', '0', '--max_steps', '6',
                       '--load_dir', str(newest))
    assert f"resumed from {newest} at step {STEPS}" in result.stdout
    assert (run / 'checkpoints' / 'step_0000006.pt').is_file()
    result = run_train('--config', 'TINY_test', '--data_dir', data_dir, '--num_workers', '0', '--max_steps', '7',
                       '--load_dir', str(run / 'checkpoints'))  # the checkpoints/ folder names its run too
    assert f"resumed from {run / 'checkpoints' / 'step_0000006.pt'} at step 6" in result.stdout
    assert (run / 'checkpoints' / 'step_0000007.pt').is_file()


def test_load_dir_may_name_the_last_readable_checkpoint_when_newer_ones_are_damaged(data_dir, uninterrupted,
                                                                                       tmp_path):
    run = tmp_path / 'run'
    shutil.copytree(uninterrupted, run)
    damaged = run / 'checkpoints' / f'step_{STEPS:07d}.pt'
    damaged.write_bytes(damaged.read_bytes()[:1000])  # a copy cut off mid-way: it holds no history
    last_good = run / 'checkpoints' / 'step_0000004.pt'
    result = run_train('--config', 'TINY_test', '--data_dir', data_dir, '--num_workers', '0', '--max_steps', '6',
                       '--load_dir', str(last_good))
    assert f"resumed from {last_good} at step 4" in result.stdout
    assert not damaged.exists()  # a rolling checkpoint: pruned once the run saved step 6
    assert (run / 'checkpoints' / 'step_0000006.pt').is_file()


def test_fresh_run_into_a_folder_with_checkpoints_is_refused(uninterrupted, capsys):
    import train
    before = sorted(os.listdir(os.path.join(uninterrupted, 'checkpoints')))
    assert train.main(['--config', 'TINY_test', '--output_dir', uninterrupted]) == 1
    assert f'already holds checkpoints of a run; resume it with --load_dir {uninterrupted}' in capsys.readouterr().err
    assert sorted(os.listdir(os.path.join(uninterrupted, 'checkpoints'))) == before


LONG_RUN_STEPS = '2000'  # far more than a signal test waits for, but finite if a test leaves a run behind


@contextlib.contextmanager
def running_until_step(args, output_dir, min_step, launcher=(sys.executable,)):
    """train.py started in its own process group, yielded once stats.jsonl reports `min_step`;
    on leaving, whatever still runs is stopped (SIGTERM, which torchrun passes on, then SIGKILL)."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    process = subprocess.Popen([*launcher, TRAIN, '--device', 'cpu', *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stats = os.path.join(output_dir, 'stats.jsonl')
        deadline = time.time() + TIMEOUT
        while not reached_step(stats, min_step):
            if time.time() > deadline or process.poll() is not None:
                raise AssertionError(f'train.py did not reach step {min_step}')
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()


def reached_step(stats_path, min_step):
    """Whether stats.jsonl lists `min_step` or later (complete lines only: the file may be mid-write)."""
    if not os.path.exists(stats_path):
        return False
    with open(stats_path) as handle:
        return any(json.loads(line)['step'] >= min_step for line in handle if line.endswith('\n'))


def test_ctrl_c_saves_and_the_resumed_run_equals_an_uninterrupted_one(data_dir, tmp_path):
    # Ctrl-C in a terminal signals the whole process group, loader workers included.
    interrupted_dir, reference_dir = str(tmp_path / 'interrupted'), str(tmp_path / 'reference')
    rare_saves = ('--sample_interval', '1000', '--model_save_interval', '1000', '--num_workers', '1')
    with running_until_step([*common(data_dir, interrupted_dir), *rare_saves, '--max_steps', LONG_RUN_STEPS],
                            interrupted_dir, 3) as process:
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + signal.SIGINT, stderr[-2000:]
    stopped_at = int(re.search(r'stopped by SIGINT at step (\d+) after saving a checkpoint', stderr).group(1))
    assert f'resume with --load_dir {interrupted_dir}' in stderr
    saved = os.listdir(os.path.join(interrupted_dir, 'checkpoints'))
    assert saved == [f'step_{stopped_at:07d}.pt']

    final = stopped_at + 2
    run_train(*common(data_dir, interrupted_dir), *rare_saves, '--max_steps', str(final), '--load_dir', interrupted_dir)
    run_train(*common(data_dir, reference_dir), *rare_saves, '--max_steps', str(final))
    name = f'step_{final:07d}.pt'
    assert_same(load(os.path.join(interrupted_dir, 'checkpoints', name)),
                load(os.path.join(reference_dir, 'checkpoints', name)))


def test_sigterm_saves_a_checkpoint_and_exits_with_its_code(data_dir, tmp_path):
    output_dir = str(tmp_path / 'terminated')
    with running_until_step([*common(data_dir, output_dir), '--sample_interval', '1000',
                             '--model_save_interval', '1000', '--max_steps', LONG_RUN_STEPS], output_dir, 2) as process:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    stopped_at = int(re.search(r'stopped by SIGTERM at step (\d+)', stderr).group(1))
    assert load(os.path.join(output_dir, 'checkpoints', f'step_{stopped_at:07d}.pt'))['step'] == stopped_at


def test_sigterm_to_torchrun_stops_both_ranks_at_the_same_step(data_dir, tmp_path):
    # torchrun passes SIGTERM on to its workers; the ranks agree on the step, rank 0 saves.
    output_dir = str(tmp_path / 'ddp')
    with running_until_step([*common(data_dir, output_dir), '--sample_interval', '1000', '--model_save_interval',
                             '1000', '--max_steps', LONG_RUN_STEPS, '--set', 'global.batch_size=1'], output_dir, 2,
                            launcher=(TORCHRUN, '--standalone', '--nproc_per_node=2')) as process:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert stderr.count('stopped by SIGTERM') == 1, stderr[-3000:]
    stopped_at = int(re.search(r'stopped by SIGTERM at step (\d+)', stderr).group(1))
    saved = load(os.path.join(output_dir, 'checkpoints', f'step_{stopped_at:07d}.pt'))
    assert saved['step'] == stopped_at and saved['rng']['world_size'] == 2
