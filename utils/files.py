"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash or Ctrl-C mid-write leaves the previous file (if any) untouched.
"""
import contextlib
import os
import tempfile

import torch


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it is renamed onto `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=suffix)
    os.close(handle)
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
