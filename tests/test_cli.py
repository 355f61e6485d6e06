"""utils.cli: one-line errors for every script."""
import errno

import pytest
import torch

from utils import cli
from utils.device import resolve_device


def test_run_script_turns_user_problems_into_one_line(capsys):
    def fails(kind):
        raise kind
    cases = [(cli.UserError('bad thing; do X'), 'bad thing; do X'),
             (ValueError('bad value\nsecond line'), 'bad value'),
             (KeyError("unknown key 'a'"), "unknown key 'a'"),
             (FileNotFoundError(errno.ENOENT, 'No such file or directory', '/x/y'), 'no such file or directory: /x/y'),
             (PermissionError(errno.EROFS, 'Read-only file system', '/ro'), 'read-only file system: /ro')]
    for error, line in cases:
        assert cli.run_script(fails, error) == cli.EXIT_ERROR
        assert capsys.readouterr().err == f'error: {line}\n'
    assert cli.run_script(lambda: None) == 0
    assert cli.run_script(lambda: 3) == 3
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        cli.run_script(lambda: 1 / 0)


def test_parser_errors_are_one_line(capsys):
    parser = cli.ArgumentParser(prog='script')
    parser.add_argument('--n', type=int)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(['--n', 'x'])
    assert info.value.code == cli.EXIT_USAGE
    assert capsys.readouterr().err == "script: error: argument --n: invalid int value: 'x' (see --help)\n"


def test_device_names_are_checked(monkeypatch):
    assert resolve_device('cpu') == torch.device('cpu')
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device('gpu0')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # one visible GPU
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    assert resolve_device('cuda:0') == torch.device('cuda', 0)
    with pytest.raises(ValueError, match=r"'cuda:3' requested but only 1 CUDA device\(s\) are visible; use cuda:0 to cuda:0"):
        resolve_device('cuda:3')


class _UnreadableImages(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise cli.UserError(f"cannot read image '{index:06d}.png' (truncated); remove it or re-run the preprocessing")


def test_errors_of_dataloader_workers_keep_their_message():
    loader = torch.utils.data.DataLoader(_UnreadableImages(), num_workers=1)
    with pytest.raises(cli.UserError) as info:
        next(iter(loader))
    assert str(info.value).startswith('Caught UserError in DataLoader worker process 0.')  # what torch re-raises
    assert cli.one_line(info.value) == "cannot read image '000000.png' (truncated); remove it or re-run the preprocessing"
