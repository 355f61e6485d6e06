"""Multi-process training helpers: setup, rank queries, rank-0 printing, gradient averaging.

Three ways to start, one code path:
- `python train.py ...` on a CPU or one GPU: a single process, world size 1 (every helper
  below is then a no-op that returns its input).
- `python train.py ...` on a box with several visible GPUs: `launch` spawns one process per GPU
  (respects CUDA_VISIBLE_DEVICES) and sets up the env:// rendezvous on 127.0.0.1:--port.
- `torchrun ...` (any number of nodes): torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
  and MASTER_PORT; `init` reads them.
The backend is NCCL for CUDA devices and gloo otherwise.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

LOCALHOST = '127.0.0.1'  # rendezvous address when `launch` spawns the processes itself


def launch(worker, device, port, *args):
    """Run `worker(*args)` once per process: spawned per GPU on a multi-GPU box, else in-process.

    Under torchrun (WORLD_SIZE set) or with fewer than two visible GPUs this just calls worker.
    `worker` returns an exit code; the result is 0 if every process succeeded.
    """
    num_gpus = torch.cuda.device_count() if device.type == 'cuda' else 0
    if 'WORLD_SIZE' in os.environ or num_gpus < 2:
        return worker(*args)
    try:
        mp.spawn(_spawned_process, args=(num_gpus, port, worker, args), nprocs=num_gpus, join=True)
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


def init(device):
    """Join the process group described by the environment (if any); return this rank's device.

    Args:
        device: torch.device from resolve_device; 'cuda' becomes cuda:LOCAL_RANK.
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if device.type == 'cuda':
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        dist.init_process_group(backend=backend, init_method='env://',
                                rank=int(os.environ['RANK']), world_size=world_size)
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


def barrier():
    if dist.is_initialized():
        dist.barrier()


def _comm_device():
    """NCCL only moves CUDA tensors; gloo moves CPU tensors."""
    if dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def broadcast_module(module, src=0):
    """Copy every parameter and buffer of `module` from rank `src` to all ranks (in place)."""
    if not dist.is_initialized():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        buffer = tensor.detach().to(_comm_device())
        dist.broadcast(buffer, src)
        tensor.data.copy_(buffer)


def average_gradients(parameters, loss):
    """Average .grad of `parameters` over ranks in one all_reduce; also average `loss`.

    Within a rank the gradients of all chunks have already been summed by backward(), so the
    result is mean over ranks of sum over chunks (SPEC §6). A parameter without a gradient counts
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


def all_gather_tensor(tensor):
    """Stack `tensor` from every rank: [world_size, *tensor.shape] (same shape on all ranks)."""
    if not dist.is_initialized():
        return tensor.unsqueeze(0)
    device = tensor.device
    local = tensor.to(_comm_device())
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return torch.stack(gathered).to(device)


def all_reduce_mean(values):
    """Mean over ranks of a 1-D float tensor (e.g. logged losses)."""
    if not dist.is_initialized():
        return values
    device = values.device
    values = values.to(_comm_device())
    dist.all_reduce(values)
    return (values / dist.get_world_size()).to(device)
