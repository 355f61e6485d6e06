"""Inception statistics of the real images, cached on disk in a format that is read without unpickling code.

One file per real-image set and feature network:
    <real_cache_dir>/<real set key>-<network tag>.pt
written atomically with torch.save and read with torch.load(weights_only=True), which only
rebuilds tensors and plain containers (a pickle that would call a function is refused). The file
holds a dict:
    'format':   CACHE_FORMAT (str)
    'real_set': the real set key (dataset class, folder, size, count, seed) (str)
    'network':  the network tag (backend + weights sha1) (str)
    'count':    number of real images N (int)
    'mu':       [D] float64, mean of the pool3 features
    'sigma':    [D, D] float64, their covariance
    'features': [N, D] float32, the pool3 features themselves (for KID; only when kept)
Every field is checked on load (types, shapes, dtypes, finite values, and that the set, network and
count are the ones asked for); a file that fails any check is refused with one line that names it
and says to delete it, so it is recomputed on the next run.
"""
import dataclasses
import os

import torch

from utils import cli
from utils.files import atomic_torch_save

CACHE_FORMAT = 'gram-real-statistics-v1'
CACHE_EXTENSION = '.pt'


class StatisticsCacheError(cli.UserError):
    """A cached statistics file that cannot be trusted; the message names it and the fix."""


@dataclasses.dataclass
class RealStatistics:
    """mu [D] float64, sigma [D, D] float64, features [N, D] float32 or None, count N."""
    mu: torch.Tensor
    sigma: torch.Tensor
    features: torch.Tensor | None
    count: int


def statistics_path(cache_dir, real_set, network_tag):
    """Where the statistics of `real_set` under `network_tag` are cached."""
    return os.path.join(cache_dir, f'{real_set}-{network_tag}{CACHE_EXTENSION}')


def save_real_statistics(path, statistics, real_set, network_tag):
    """Write `statistics` (RealStatistics) to `path` atomically, in the format of the module docstring."""
    record = {'format': CACHE_FORMAT, 'real_set': real_set, 'network': network_tag, 'count': statistics.count,
              'mu': statistics.mu.double().contiguous(), 'sigma': statistics.sigma.double().contiguous()}
    if statistics.features is not None:
        record['features'] = statistics.features.float().contiguous()
    atomic_torch_save(record, path)


def _refuse(path, problem):
    return StatisticsCacheError(f"cached real-image statistics '{path}' {problem}; delete the file to recompute them")


def _check_tensor(path, record, name, shape, dtype):
    tensor = record.get(name)
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape or tensor.dtype != dtype:
        found = (f'{tuple(tensor.shape)} {tensor.dtype}' if isinstance(tensor, torch.Tensor)
                 else type(tensor).__name__)
        raise _refuse(path, f"have '{name}' {found}, expected {shape} {dtype}")
    if not torch.isfinite(tensor).all():
        raise _refuse(path, f"have non-finite values in '{name}'")
    return tensor


def load_real_statistics(path, real_set, network_tag, count, need_features):
    """Read and check the statistics cached at `path`.

    Args:
        real_set, network_tag, count: what the file must have been computed for.
        need_features: the per-image features must be present (KID).
    Returns:
        RealStatistics. Raises StatisticsCacheError for a file that is unreadable as plain
        tensors (e.g. a pickle carrying code), garbled, or not exactly what was asked for.
    """
    try:
        record = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # any failure to parse means the file is refused
        raise _refuse(path, f'cannot be read as plain tensors ({type(error).__name__})') from error
    if not isinstance(record, dict) or record.get('format') != CACHE_FORMAT:
        raise _refuse(path, f"are not in the format '{CACHE_FORMAT}'")
    expected = {'real_set': real_set, 'network': network_tag, 'count': count}
    for key, value in expected.items():
        if record.get(key) != value:
            raise _refuse(path, f"were computed for {key} {record.get(key)!r}, not {value!r}")
    mu = record.get('mu')
    if not isinstance(mu, torch.Tensor) or mu.dim() != 1:
        raise _refuse(path, "have no 1-D tensor 'mu'")
    dim = mu.shape[0]
    mu = _check_tensor(path, record, 'mu', (dim,), torch.float64)
    sigma = _check_tensor(path, record, 'sigma', (dim, dim), torch.float64)
    features = None
    if 'features' in record or need_features:
        features = _check_tensor(path, record, 'features', (count, dim), torch.float32)
    return RealStatistics(mu, sigma, features, count)
