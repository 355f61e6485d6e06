"""Multi-process training helpers: setup, rank queries, rank-0 printing, gradient averaging.

Three ways to start, one code path:
- `python train.py ...` on a CPU or one GPU: a single process, world size 1 (every helper
  below is then a no-op that returns its input).
- `python train.py ...` on a box with several visible GPUs: `launch` spawns one process per GPU
  (respects CUDA_VISIBLE_DEVICES) and sets up the env:// rendezvous on 127.0.0.1:--port.
- `torchrun ...` (any number of nodes): torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
  and MASTER_PORT; `init` reads them.
The backend is NCCL for CUDA devices and gloo otherwise. Every collective gives up after
`timeout_minutes` (init's argument) and then raises CollectiveTimeout naming this rank, instead of
waiting silently for the backend's 30-minute default.
"""
import contextlib
import datetime
import functools
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from utils.cli import UserError
from utils.signals import StopRequest

LOCALHOST = '127.0.0.1'  # rendezvous address when `launch` spawns the processes itself
DEFAULT_TIMEOUT_MINUTES = 10.0  # how long a collective waits for the other ranks
JOIN_POLL_SECONDS = 0.5  # how often a spawning process checks its ranks (and its own stop signal)


class CollectiveTimeout(UserError):
    """Another rank did not join a collective in time (it hung or died)."""


def _timeout_named(function):
    """Turn a backend timeout inside `function` into a one-line CollectiveTimeout naming the rank."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (dist.DistBackendError, RuntimeError) as error:
            if 'timed out' not in str(error).lower() and 'timeout' not in str(error).lower():
                raise
            raise CollectiveTimeout(
                f"rank {get_rank()} of {get_world_size()}: the other ranks did not answer within the collective "
                f"timeout in {function.__name__}; one has hung or died (see its log), or raise --timeout_minutes "
                f"if a step legitimately takes longer") from None
    return wrapper


def launch(worker, device, port, *args):
    """Run `worker(*args)` once per process: spawned per GPU on a multi-GPU box, else in-process.

    Under torchrun (WORLD_SIZE set), for one named GPU ('cuda:N') or with fewer than two visible
    GPUs this just calls worker. `worker` returns an exit code; the result is 0 if every process
    succeeded.
    """
    num_gpus = torch.cuda.device_count() if device.type == 'cuda' and device.index is None else 0
    if 'WORLD_SIZE' in os.environ or num_gpus < 2:
        return worker(*args)
    return spawn_ranks(worker, num_gpus, port, *args)


def spawn_ranks(worker, world_size, port, *args):
    """Run `worker(*args)` in `world_size` new processes (ranks 0..world_size-1, as torchrun would
    set them up); return 0, or the exit code of the first rank that failed.

    This process waits for them. A stop signal (SIGINT, SIGTERM) sent to it alone is passed on to
    every rank once, so that they save and stop together; it does not end this process.
    """
    context = mp.spawn(_spawned_process, args=(world_size, port, worker, args), nprocs=world_size, join=False)
    forwarded = False
    with StopRequest() as stop_request:
        try:
            while not context.join(timeout=JOIN_POLL_SECONDS):
                if stop_request.requested and not forwarded:
                    for pid in context.pids():
                        with contextlib.suppress(ProcessLookupError):  # that rank has already exited
                            os.kill(pid, stop_request.signal_number)
                    forwarded = True
        except mp.ProcessExitedException as error:  # the failing rank has printed its message
            return error.exit_code or 1
    return 0


def _spawned_process(rank, world_size, port, worker, args):
    """Entry point of a process started by `launch`: the same env vars torchrun would set."""
    os.environ.update({'RANK': str(rank), 'LOCAL_RANK': str(rank), 'WORLD_SIZE': str(world_size),
                       'MASTER_ADDR': LOCALHOST, 'MASTER_PORT': str(port)})
    exit_code = worker(*args)
    if exit_code:
        sys.exit(exit_code)


def init(device, timeout_minutes=DEFAULT_TIMEOUT_MINUTES):
    """Join the process group described by the environment (if any); return this rank's device.

    Args:
        device: torch.device from resolve_device; 'cuda' becomes cuda:LOCAL_RANK, 'cuda:N' (one
            process only) stays.
        timeout_minutes: how long any collective waits for the other ranks.
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if device.type == 'cuda':
        if device.index is None:
            device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        dist.init_process_group(backend=backend, init_method='env://', rank=int(os.environ['RANK']),
                                world_size=world_size, timeout=datetime.timedelta(minutes=timeout_minutes))
    return device


def cleanup():
    """Leave the process group (safe to call in a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def get_rank():
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process():
    return get_rank() == 0


def print0(*args, **kwargs):
    """print() on rank 0 only."""
    if is_main_process():
        print(*args, **kwargs, flush=True)


@_timeout_named
def barrier():
    if dist.is_initialized():
        dist.barrier()


def _comm_device():
    """NCCL only moves CUDA tensors; gloo moves CPU tensors."""
    if dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


@_timeout_named
def broadcast_module(module, src=0):
    """Copy every parameter and buffer of `module` from rank `src` to all ranks (in place)."""
    if not dist.is_initialized():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        buffer = tensor.detach().to(_comm_device())
        dist.broadcast(buffer, src)
        tensor.data.copy_(buffer)


@_timeout_named
def average_gradients(parameters, loss):
    """Average .grad of `parameters` over ranks in one all_reduce; also average `loss`.

    Within a rank the gradients of all chunks have already been summed by backward(), so the
    result is mean over ranks of sum over chunks (docs/design.md §6). A parameter without a gradient counts
    as zeros. The loss rides along in the same buffer, so a non-finite loss on any rank makes the
    returned mean non-finite on every rank and all ranks agree on skipping the step.

    Args:
        parameters: list of tensors (gradients in .grad).
        loss: 0-dim tensor, this rank's loss.
    Returns:
        0-dim float32 tensor: the mean loss over ranks.
    """
    loss = loss.detach().float().reshape(())
    if not dist.is_initialized():
        return loss
    world_size = dist.get_world_size()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [loss.reshape(1)])
    device = flat.device
    flat = flat.to(_comm_device())
    dist.all_reduce(flat)
    flat = (flat / world_size).to(device)
    offset = 0
    for param, grad in zip(parameters, grads):
        numel = grad.numel()
        averaged = flat[offset:offset + numel].view_as(grad).to(grad.dtype)
        if param.grad is None:
            param.grad = averaged.clone()
        else:
            param.grad.copy_(averaged)
        offset += numel
    return flat[-1]


@_timeout_named
def all_gather_tensor(tensor):
    """Stack `tensor` from every rank: [world_size, *tensor.shape] (same shape on all ranks)."""
    if not dist.is_initialized():
        return tensor.unsqueeze(0)
    device = tensor.device
    local = tensor.to(_comm_device())
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return torch.stack(gathered).to(device)


@_timeout_named
def all_gather_rows(tensor):
    """Concatenate `tensor` [N_r, ...] of every rank along dim 0, in rank order; N_r may differ per rank.

    Rows travel over the process group (no shared file system needed): each rank's block is
    padded to the largest N_r for one all_gather, and the padding dropped. Returns
    [sum of N_r, ...] on every rank (the tensor itself in a single process).
    """
    if not dist.is_initialized():
        return tensor
    counts = all_gather_tensor(torch.tensor([tensor.shape[0]], device=tensor.device))[:, 0].tolist()
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    gathered = all_gather_tensor(padded)  # [world_size, max N_r, ...]
    return torch.cat([gathered[rank, :count] for rank, count in enumerate(counts)])


@_timeout_named
def max_over_ranks(value):
    """The largest of every rank's int `value` (collective when there are several)."""
    if not dist.is_initialized():
        return value
    values = torch.tensor([value], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return int(values.item())


def all_reduce_mean(values):
    """Mean over ranks of a 1-D float tensor (e.g. logged losses)."""
    if not dist.is_initialized():
        return values
    device = values.device
    values = values.to(_comm_device())
    dist.all_reduce(values)
    return (values / dist.get_world_size()).to(device)


def fingerprint(*modules):
    """Float64 [2] summary of the modules' state_dicts (parameters and persistent buffers; caches
    such as the truncation average are left out): (sum, sum of x * position weight).

    Equal weights give equal fingerprints; a difference anywhere changes them (almost surely).
    """
    total, weighted = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    offset = 0
    for module in modules:
        for tensor in module.state_dict().values():
            values = tensor.detach().reshape(-1).double().cpu()
            positions = torch.arange(offset, offset + values.numel(), dtype=torch.float64)
            total += values.sum()
            weighted += (values * torch.cos(positions)).sum()
            offset += values.numel()
    return torch.stack([total, weighted])


def modules_out_of_sync(*modules):
    """'' when every rank holds the same weights, else which ranks differ from rank 0 (collective)."""
    fingerprints = all_gather_tensor(fingerprint(*modules))  # [world, 2]
    differing = [rank for rank in range(fingerprints.shape[0]) if not torch.equal(fingerprints[rank], fingerprints[0])]
    return f"ranks {differing} differ from rank 0" if differing else ''

