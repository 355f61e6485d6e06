"""Atomic file writes: write a temporary file in the same folder, flush it to disk, then rename.

A crash, a kill or Ctrl-C mid-write leaves the previous file (if any) untouched; the rename is
made durable by syncing the folder. Temporary files are named `.tmp-*`; `remove_stale_temporaries`
deletes those a killed process left behind. A full disk or a read-only folder raises OSError
naming the folder (utils.cli prints it as one line).
"""
import contextlib
import os
import tempfile

import torch

TEMPORARY_PREFIX = '.tmp-'  # names of the temporary files (hidden; never a finished file)
_DEFAULT_FILE_MODE = 0o666  # what open() would create, before the umask


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make a rename in `folder` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def check_writable_folder(folder):
    """Raise OSError (one line) unless `folder` is, or can become, a writable folder.

    Creates nothing: call it before long work so an unusable --output_dir fails at once.
    """
    folder = os.path.abspath(os.fspath(folder))
    probe = folder
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise NotADirectoryError(20, 'not a folder', probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(13, 'folder is not writable', probe)


def check_writable_file(path):
    """Raise OSError (one line) unless a file can be written at `path` (its folder may not exist
    yet). Creates nothing: call it before long work so an unusable --output fails at once."""
    if os.path.isdir(path):
        raise IsADirectoryError(21, 'is a folder, not a file name', os.fspath(path))
    check_writable_folder(os.path.dirname(os.path.abspath(os.fspath(path))))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it is synced and renamed onto `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    try:
        handle, tmp_path = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX, suffix=suffix)
    except OSError as error:
        raise OSError(error.errno, error.strerror, folder) from None
    os.close(handle)
    os.chmod(tmp_path, _DEFAULT_FILE_MODE & ~_current_umask())  # mkstemp makes 0600 files
    try:
        yield tmp_path
        handle = os.open(tmp_path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(tmp_path, path)
        _fsync_folder(folder)
    except OSError as error:  # name the destination; keep the reason (some writers raise without strerror)
        raise OSError(error.errno, error.strerror or _first_line(error), path) from None
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def atomic_torch_save(obj, path):
    """torch.save `obj` to `path` atomically (through a Python file, so a full disk is an OSError)."""
    with atomic_path(path) as tmp_path:
        with open(tmp_path, 'wb') as handle:
            torch.save(obj, handle)


def atomic_write_text(text, path):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp_path:
        with open(tmp_path, 'w') as handle:
            handle.write(text)


def remove_stale_temporaries(folder):
    """Delete the `.tmp-*` files a killed writer left in `folder`; returns how many.

    Only for folders no other process is writing to (e.g. a run folder when a run starts).
    """
    if not os.path.isdir(folder):
        return 0
    stale = [name for name in os.listdir(folder) if name.startswith(TEMPORARY_PREFIX)]
    for name in stale:
        os.remove(os.path.join(folder, name))
    return len(stale)
