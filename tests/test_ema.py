"""EMA: the released warm-up rule with hand-computed numbers, state round trip, layout."""
import pytest
import torch
from torch import nn

from training.ema import EMA, warmup_decay


def _module(value):
    """A 2-parameter module with every weight equal to `value`."""
    module = nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.fill_(value)
        module.bias.fill_(value)
    return module


def test_warmup_decay_numbers():
    # n = 1: min(0.999, 2/11); n = 2: 3/12; n = 3: 4/13; very late: the target decay.
    assert warmup_decay(0.999, 1) == pytest.approx(2 / 11)
    assert warmup_decay(0.999, 2) == pytest.approx(0.25)
    assert warmup_decay(0.999, 3) == pytest.approx(4 / 13)
    assert warmup_decay(0.999, 10 ** 6) == 0.999
    # (1 + n) / (10 + n) reaches 0.999 at n = 8990 (8991 / 9000).
    assert warmup_decay(0.999, 8989) < 0.999
    assert warmup_decay(0.999, 8990) == pytest.approx(0.999, abs=1e-12)


def test_ema_three_updates_hand_computed():
    module = _module(1.0)
    ema = EMA(module, decay=0.999)
    with torch.no_grad():
        module.weight.fill_(0.0)
        module.bias.fill_(0.0)
    # Towards 0 from 1, shadow <- shadow * decay_n:
    # n=1: 1 * 2/11 = 0.181818...; n=2: * 3/12 -> 0.0454545...; n=3: * 4/13 -> 0.013986...
    expected = [2 / 11, 2 / 11 * 0.25, 2 / 11 * 0.25 * 4 / 13]
    for value in expected:
        ema.update(module)
        assert ema.shadow['weight'][0, 0].item() == pytest.approx(value, rel=1e-6)
        assert ema.shadow['bias'][0].item() == pytest.approx(value, rel=1e-6)
    assert ema.num_updates == 3


def test_ema_moving_target_hand_computed():
    # shadow 0, param 1 then 3: n=1 -> 0 - (9/11)(0 - 1) = 9/11; n=2 -> 9/11 - 0.75 (9/11 - 3) = 2.4545...
    module = _module(0.0)
    ema = EMA(module, decay=0.9999)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema.update(module)
    assert ema.shadow['weight'][0, 0].item() == pytest.approx(9 / 11, rel=1e-6)
    with torch.no_grad():
        module.weight.fill_(3.0)
    ema.update(module)
    assert ema.shadow['weight'][0, 0].item() == pytest.approx(9 / 11 - 0.75 * (9 / 11 - 3), rel=1e-6)


def test_ema_state_round_trip_continues_identically(tmp_path):
    module = _module(1.0)
    ema = EMA(module, decay=0.999)
    with torch.no_grad():
        module.weight.fill_(0.5)
    ema.update(module)
    path = tmp_path / 'ema.pt'
    torch.save(ema.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert state['num_updates'] == 1 and state['decay'] == 0.999
    assert list(state['shadow']) == list(module.state_dict())  # module layout, parameters() order

    restored = EMA(_module(7.0), decay=0.5)
    restored.load_state_dict(state)
    ema.update(module)
    restored.update(module)
    assert restored.num_updates == 2
    for name in ema.shadow:
        assert torch.equal(ema.shadow[name], restored.shadow[name])
    # The shadow loads into a fresh module of the same layout.
    fresh = nn.Linear(2, 1)
    fresh.load_state_dict(state['shadow'])


def test_ema_refuses_other_layout():
    ema = EMA(nn.Linear(2, 1), decay=0.999)
    other = EMA(nn.Linear(2, 1, bias=False), decay=0.999)
    with pytest.raises(KeyError, match='layout'):
        ema.load_state_dict(other.state_dict())
