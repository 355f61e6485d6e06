"""utils.distributed on two CPU processes (gloo): collective timeouts name the rank, diverged
weights are detected, a stop signal to a spawning process reaches every rank."""
import os
import signal
import socket
import subprocess
import sys
import time

import torch
import torch.multiprocessing as mp

from helpers import ROOT
from utils import distributed

TIMEOUT_MINUTES = 0.05   # 3 s: the test's collective timeout
HANG_SECONDS = 20        # how long the hung rank sleeps (far past the timeout)


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def _worker(rank, port, scenario, results):
    os.environ.update({'RANK': str(rank), 'LOCAL_RANK': str(rank), 'WORLD_SIZE': '2',
                       'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port)})
    torch.set_num_threads(1)
    distributed.init(torch.device('cpu'), timeout_minutes=TIMEOUT_MINUTES)
    try:
        if scenario == 'hang':
            if rank == 1:
                time.sleep(HANG_SECONDS)
                return
            waiting_since = time.time()
            try:
                distributed.barrier()
                results.put((rank, ('no error', time.time() - waiting_since)))
            except distributed.CollectiveTimeout as error:
                results.put((rank, (str(error), time.time() - waiting_since)))
        else:
            torch.manual_seed(rank if scenario == 'diverged' else 0)
            module = torch.nn.Linear(3, 2)
            results.put((rank, distributed.modules_out_of_sync(module)))
    finally:
        if scenario != 'hang':
            distributed.cleanup()


def run_two_ranks(scenario):
    results = mp.get_context('spawn').SimpleQueue()
    context = mp.start_processes(_worker, args=(free_port(), scenario, results), nprocs=2, join=False,
                                 start_method='spawn')
    collected = {}
    deadline = time.time() + 120
    while len(collected) < (1 if scenario == 'hang' else 2) and time.time() < deadline:
        if not results.empty():
            rank, value = results.get()
            collected[rank] = value
        time.sleep(0.05)
    for process in context.processes:
        process.kill()
    return collected


def test_a_hung_rank_gives_a_timeout_naming_the_waiting_rank():
    message, waited = run_two_ranks('hang')[0]
    assert message.startswith('rank 0 of 2: the other ranks did not answer within the collective timeout in barrier')
    # The timeout fired, not the sleep's end (timed inside rank 0, so a slow spawn on a busy machine does not count).
    assert waited < HANG_SECONDS


def test_weights_that_differ_between_ranks_are_detected():
    assert run_two_ranks('same') == {0: '', 1: ''}
    assert run_two_ranks('diverged') == {0: 'ranks [1] differ from rank 0', 1: 'ranks [1] differ from rank 0'}


def test_fingerprint_sees_any_change():
    module = torch.nn.Linear(4, 3)
    before = distributed.fingerprint(module)
    with torch.no_grad():
        module.weight[1, 2] += 1e-6
    assert not torch.equal(before, distributed.fingerprint(module))
    with torch.no_grad():  # a swap keeps the sum but not the position-weighted sum
        module.weight[0, 0], module.weight[0, 1] = module.weight[0, 1].item(), module.weight[0, 0].item()
    assert not torch.equal(distributed.fingerprint(module)[1], before[1])


def test_a_stop_signal_to_the_spawning_process_reaches_every_rank_once(tmp_path):
    # As `python train.py` on a multi-GPU box: SIGTERM to the parent alone (kill PID) is passed on.
    script = (f"import sys; sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'tests')!r}]\n"
              "from helpers import stop_signal_worker\nfrom utils import distributed\n"
              f"sys.exit(distributed.spawn_ranks(stop_signal_worker, 2, {free_port()}, {str(tmp_path)!r}))\n")
    process = subprocess.Popen([sys.executable, '-c', script], start_new_session=True)
    try:
        deadline = time.time() + 120
        while not all((tmp_path / f'ready{rank}').exists() for rank in (0, 1)) and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert [(tmp_path / f'rank{rank}').read_text() for rank in (0, 1)] == [str(int(signal.SIGTERM))] * 2


def test_one_named_gpu_runs_in_this_process_and_stays_that_gpu(monkeypatch):
    # A box with two GPUs: 'cuda' would spawn one rank per GPU, 'cuda:1' trains on GPU 1 alone.
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    spawned = []
    monkeypatch.setattr(distributed, 'spawn_ranks', lambda worker, world_size, port, *args: spawned.append(world_size))
    assert distributed.launch(lambda: 7, torch.device('cuda', 1), 12355) == 7
    assert spawned == []
    distributed.launch(lambda: 0, torch.device('cuda'), 12355)
    assert spawned == [2]

    chosen = []
    monkeypatch.setattr(torch.cuda, 'set_device', chosen.append)
    assert distributed.init(torch.device('cuda', 1)) == torch.device('cuda', 1)
    monkeypatch.setenv('LOCAL_RANK', '0')
    assert distributed.init(torch.device('cuda')) == torch.device('cuda', 0)
    assert chosen == [torch.device('cuda', 1), torch.device('cuda', 0)]
