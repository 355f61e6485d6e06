"""Released-weight loading: the allow-listed EMA unpickler, load_generator, checkpoint conversion.

A fake released pair is built here: generator.pth is the state_dict of a seeded TINY_test
generator; ema.pth is a pickled object whose class claims to be
torch_ema.ema.ExponentialMovingAverage (a throwaway module object registered in sys.modules only
while saving), holding the parameters of a differently seeded generator as shadow weights.
"""
import os
import sys

import pytest
import torch
from helpers import (
    CONFIG,
    RAW_SEED,
    SHADOW_SEED,
    FakeEMA,
    fake_torch_ema_module,
    make_released_pair,
    save_fake_released_ema,
    seeded_generator,
)

import configs
from checkpoints.loading import config_from_checkpoint, load_generator
from checkpoints.released import ReleasedEMA, load_released_ema, shadow_state_dict
from tools import convert_checkpoint


def assert_weights_equal(generator, state):
    loaded = generator.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key].cpu(), value), key


class _RunsCode:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


# ----------------------------------------------------------------------------------- unpickler
def test_fake_released_ema_loads_as_plain_stand_in(tmp_path):
    params = [torch.randn(3, 2), torch.randn(4)]
    save_fake_released_ema(params, tmp_path / 'ema.pth', decay=0.9999, num_updates=7)
    assert 'torch_ema.ema' not in sys.modules  # the loader never needs the real package
    ema = load_released_ema(str(tmp_path / 'ema.pth'))
    assert type(ema) is ReleasedEMA
    assert ema.decay == 0.9999 and ema.num_updates == 7 and ema.collected_params == []
    assert len(ema.shadow_params) == 2
    assert all(torch.equal(a, b) for a, b in zip(ema.shadow_params, params))


def test_code_execution_is_refused(tmp_path):
    marker = tmp_path / 'created_by_pickle'
    torch.save({'shadow_params': [_RunsCode(str(marker))]}, tmp_path / 'evil.pth')
    with pytest.raises(ValueError, match=r"refusing to load .*'posix.mkdir'"):
        load_released_ema(str(tmp_path / 'evil.pth'))
    assert not marker.exists()


def test_code_inside_the_allowed_class_is_refused(tmp_path):
    marker = tmp_path / 'created_by_pickle'
    ema = FakeEMA([torch.ones(2)], 0.999, 1)
    ema.collected_params = [_RunsCode(str(marker))]
    with fake_torch_ema_module(FakeEMA):
        torch.save(ema, tmp_path / 'evil_ema.pth')
    with pytest.raises(ValueError, match="refusing to load .*'posix.mkdir'"):
        load_released_ema(str(tmp_path / 'evil_ema.pth'))
    assert not marker.exists()


def test_other_classes_and_plain_files_are_refused(tmp_path):
    class Other:
        pass
    with fake_torch_ema_module(Other, name='Other'):
        torch.save(Other(), tmp_path / 'other.pth')
    with pytest.raises(ValueError, match="'torch_ema.ema.Other'"):
        load_released_ema(str(tmp_path / 'other.pth'))
    torch.save({'a': torch.ones(1)}, tmp_path / 'plain.pth')
    with pytest.raises(ValueError, match='holds a dict'):
        load_released_ema(str(tmp_path / 'plain.pth'))
    with pytest.raises(FileNotFoundError):
        load_released_ema(str(tmp_path / 'missing.pth'))


def test_damaged_released_pair_gives_one_line_errors(tmp_path):
    generator_path, _ = make_released_pair(str(tmp_path))
    ema_path = tmp_path / 'ema.pth'
    complete = ema_path.read_bytes()
    for damaged in (b'', complete[:len(complete) // 2]):  # empty, and cut off mid-download
        ema_path.write_bytes(damaged)
        with pytest.raises(ValueError, match="EMA file '.*ema.pth' is empty or damaged"):
            load_released_ema(str(ema_path))
        with pytest.raises(ValueError, match='is empty or damaged'):
            load_generator(generator_path, CONFIG)


def test_shadow_state_dict_checks_count_and_shapes():
    generator = seeded_generator(0)
    params = [p.detach().clone() for p in generator.parameters()]
    with pytest.raises(ValueError, match='shadow tensors but the generator has'):
        shadow_state_dict(generator, params[:-1])
    params[0] = torch.zeros(1)
    with pytest.raises(ValueError, match='has shape'):
        shadow_state_dict(generator, params)


# ----------------------------------------------------------------------------------- load_generator
def test_released_pair_loads_ema_weights(tmp_path):
    generator_path, shadow = make_released_pair(str(tmp_path), prefix='step000500_')
    generator, config = load_generator(generator_path, CONFIG)
    assert_weights_equal(generator, shadow)
    assert config == configs.get_config(CONFIG)
    assert not generator.training

    raw_generator, _ = load_generator(generator_path, CONFIG, use_ema=False)
    assert_weights_equal(raw_generator, seeded_generator(RAW_SEED).state_dict())


def test_plain_state_dict_without_ema_loads_as_is(tmp_path):
    state = seeded_generator(3).state_dict()
    torch.save(state, tmp_path / 'generator_ema.pth')
    messages = []
    generator, _ = load_generator(str(tmp_path / 'generator_ema.pth'), CONFIG, log=messages.append)
    assert_weights_equal(generator, state)
    assert 'as they are' in messages[0]


def test_our_checkpoint_uses_its_config_and_ema(tmp_path):
    config = configs.get_config(CONFIG)
    raw, shadow = seeded_generator(RAW_SEED), seeded_generator(SHADOW_SEED)
    checkpoint = {'format': 'gram-checkpoint', 'version': 1, 'step': 10, 'epoch': 0,
                  'config': config,
                  'generator': raw.state_dict(),
                  'ema': {'decay': 0.999, 'num_updates': 10, 'shadow': shadow.state_dict()}}
    checkpoint['config']['generator']['representation']['kwargs']['center'] = [0, 0, 0]  # as JSON stores it
    torch.save(checkpoint, tmp_path / 'step_0000010.pt')
    generator, loaded_config = load_generator(str(tmp_path / 'step_0000010.pt'))
    assert_weights_equal(generator, shadow.state_dict())
    assert loaded_config['generator']['representation']['kwargs']['center'] == (0, 0, 0)
    raw_generator, _ = load_generator(str(tmp_path / 'step_0000010.pt'), use_ema=False)
    assert_weights_equal(raw_generator, raw.state_dict())


def test_config_from_checkpoint_restores_tuples():
    stored = {'global': {'img_size': 16}, 'a': [0.0, 0.9], 'b': {'c': [1, [2]]}, 'd': 'x'}
    assert config_from_checkpoint(stored) == {'global': {'img_size': 16}, 'a': (0.0, 0.9), 'b': {'c': (1, (2,))}, 'd': 'x'}


def test_one_line_errors(tmp_path):
    generator_path, _ = make_released_pair(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='not found'):
        load_generator(str(tmp_path / 'nope.pth'), CONFIG)
    with pytest.raises(ValueError, match=r"does not match SYNTHETIC_demo .*pass the config it was trained with"):
        load_generator(generator_path, 'SYNTHETIC_demo')
    with pytest.raises(ValueError, match='is a released EMA file; pass the generator.pth'):
        load_generator(str(tmp_path / 'ema.pth'), CONFIG)
    # An ema.pth whose shadow list does not fit the generator.
    save_fake_released_ema([torch.ones(2)], tmp_path / 'ema.pth')
    with pytest.raises(ValueError, match=r'does not match TINY_test \(its ema.pth has 1 shadow tensors'):
        load_generator(generator_path, CONFIG)
    (tmp_path / 'junk.pth').write_bytes(b'not a torch file')
    with pytest.raises(ValueError):
        load_generator(str(tmp_path / 'junk.pth'), CONFIG)


# ----------------------------------------------------------------------------------- conversion
def test_convert_checkpoint_cli(tmp_path, capsys):
    generator_path, shadow = make_released_pair(str(tmp_path), prefix='step001000_')
    out = str(tmp_path / 'converted.pt')
    convert_checkpoint.main(['--generator_file', generator_path, '--config', CONFIG, '--output', out])
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint['format'] == 'gram-checkpoint' and checkpoint['step'] == 1000
    assert checkpoint['ema']['decay'] == 0.999 and checkpoint['ema']['num_updates'] == 42
    generator, config = load_generator(out)  # config comes from the file
    assert_weights_equal(generator, shadow)
    assert config == configs.get_config(CONFIG)

    plain = str(tmp_path / 'plain_ema.pth')
    convert_checkpoint.main(['--generator_file', generator_path, '--config', CONFIG, '--output', plain, '--plain'])
    generator, _ = load_generator(plain, CONFIG)
    assert_weights_equal(generator, shadow)

    assert convert_checkpoint.main(['--generator_file', generator_path, '--config', 'CATS_default',
                             '--output', str(tmp_path / 'bad.pt')]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: released files do not match config CATS_default') and '\n' not in err
    assert not os.path.exists(tmp_path / 'bad.pt')
