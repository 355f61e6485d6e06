"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash or Ctrl-C mid-write leaves the previous file (if any) untouched.
"""
import contextlib
import os
import tempfile

import torch


_DEFAULT_FILE_MODE = 0o666  # what open() would create, before the umask


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it is renamed onto `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=suffix)
    os.close(handle)
    os.chmod(tmp_path, _DEFAULT_FILE_MODE & ~_current_umask())  # mkstemp makes 0600 files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def atomic_torch_save(obj, path):
    """torch.save `obj` to `path` atomically."""
    with atomic_path(path) as tmp_path:
        torch.save(obj, tmp_path)


def atomic_write_text(text, path):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp_path:
        with open(tmp_path, 'w') as handle:
            handle.write(text)
