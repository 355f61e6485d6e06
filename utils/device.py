"""Device selection: one place that knows about cuda, mps and cpu."""
import torch


def resolve_device(name='auto'):
    """Return a torch.device for `name` ('auto' picks cuda > mps > cpu).

    Raises ValueError (one line) when the requested device is not available here.
    """
    if name == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda')
        if torch.backends.mps.is_available():
            return torch.device('mps')
        return torch.device('cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    if device.type == 'cuda' and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"device '{name}' requested but only {count} CUDA device(s) are visible; "
                         f"use cuda:0 to cuda:{count - 1}")
    if device.type == 'mps' and not torch.backends.mps.is_available():
        raise ValueError(f"device '{name}' requested but MPS is not available; use --device cpu")
    return device
