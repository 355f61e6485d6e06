"""utils.files: atomic writes that survive kills, full disks and unusable folders."""
import errno
import os

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from utils import cli
from utils.files import (TEMPORARY_PREFIX, atomic_path, atomic_torch_save, atomic_write_text, check_writable_file,
                         check_writable_folder, remove_stale_temporaries)
from utils.video import write_mp4


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / 'sub' / 'file.txt'
    atomic_write_text('one', path)
    atomic_write_text('two', path)
    assert path.read_text() == 'two'
    assert os.listdir(tmp_path / 'sub') == ['file.txt']


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / 'state.pt'
    atomic_torch_save({'a': torch.ones(2)}, path)
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            with open(tmp, 'wb') as handle:
                handle.write(b'half')
            raise RuntimeError('killed mid-write')
    assert torch.equal(torch.load(path, weights_only=True)['a'], torch.ones(2))
    assert os.listdir(tmp_path) == ['state.pt']


def test_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def full_disk(obj, handle):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, 'save', full_disk)
    path = tmp_path / 'checkpoint.pt'
    with pytest.raises(OSError) as info:
        atomic_torch_save({'a': torch.ones(1)}, path)
    assert cli.one_line(info.value) == f'no space left on device: {path}'
    assert os.listdir(tmp_path) == []


def test_a_writer_error_without_strerror_keeps_its_reason(tmp_path):
    path = tmp_path / 'clip.mp4'
    with pytest.raises(OSError) as info:
        with atomic_path(path):
            raise OSError('[Errno 32] Broken pipe\n\nFFMPEG COMMAND:\nffmpeg ...')  # imageio-ffmpeg's IOError
    assert cli.one_line(info.value) == f'[errno 32] broken pipe: {path}'


def test_an_incomplete_video_keeps_the_previous_one(tmp_path, monkeypatch):
    frames = [np.full((8, 8, 3), value, dtype=np.uint8) for value in (0, 128, 255)]
    path = tmp_path / 'clip.mp4'
    write_mp4(frames, path)
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 3
    before = path.read_bytes()
    monkeypatch.setattr(imageio_ffmpeg, 'count_frames_and_secs', lambda path: (1, 0.07))  # ffmpeg stopped early
    with pytest.raises(OSError) as info:
        write_mp4(frames, path)
    assert cli.one_line(info.value) == f'ffmpeg wrote 1 of 3 frames: {path}'
    assert path.read_bytes() == before and os.listdir(tmp_path) == ['clip.mp4']


def test_unusable_folders_are_found_before_writing(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(NotADirectoryError) as info:
        check_writable_folder(tmp_path / 'file' / 'run')
    assert cli.one_line(info.value) == f"not a folder: {tmp_path / 'file'}"
    check_writable_folder(tmp_path / 'new' / 'run')  # may be created later
    assert not (tmp_path / 'new').exists()


def test_writable_file_checks_its_folder_and_refuses_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        check_writable_file(tmp_path)
    assert cli.one_line(info.value) == f"is a folder, not a file name: {tmp_path}"
    (tmp_path / 'file').write_text('x')
    with pytest.raises(NotADirectoryError):
        check_writable_file(tmp_path / 'file' / 'out.json')
    check_writable_file(tmp_path / 'new' / 'out.json')
    assert not (tmp_path / 'new').exists()


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / f'{TEMPORARY_PREFIX}abc.pt').write_bytes(b'partial')
    (tmp_path / 'step_0000002.pt').write_bytes(b'keep')
    assert remove_stale_temporaries(tmp_path) == 1
    assert os.listdir(tmp_path) == ['step_0000002.pt']
    assert remove_stale_temporaries(tmp_path / 'missing') == 0
