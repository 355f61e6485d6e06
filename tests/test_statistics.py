"""metrics/statistics.py: the real-image statistics cache round-trips, and refuses, with one line
naming the file and the fix, anything that is not exactly what was asked for; a pickle carrying
code is never run."""
import pytest
import torch
from metric_stand_ins import plant_malicious_pickle

from metrics.statistics import (
    CACHE_FORMAT,
    RealStatistics,
    StatisticsCacheError,
    load_real_statistics,
    save_real_statistics,
    statistics_path,
)
from utils import cli

REAL_SET, TAG, COUNT, DIM = 'PosedImageFolder_data_0123abcd_16px_5_seed0', 'torch-fidelity-a16e4d89c0ec', 5, 4


def example_statistics(with_features=True):
    features = torch.arange(COUNT * DIM, dtype=torch.float32).reshape(COUNT, DIM).sin()
    mu, sigma = features.double().mean(0), features.double().T.cov()
    return RealStatistics(mu, sigma, features if with_features else None, COUNT)


def load(path, **overrides):
    expected = {'real_set': REAL_SET, 'network_tag': TAG, 'count': COUNT, 'need_features': True, **overrides}
    return load_real_statistics(path, **expected)


def test_round_trip(tmp_path):
    path = statistics_path(str(tmp_path), REAL_SET, TAG)
    assert path == str(tmp_path / f'{REAL_SET}-{TAG}.pt')
    statistics = example_statistics()
    save_real_statistics(path, statistics, REAL_SET, TAG)
    loaded = load(path)
    assert loaded.count == COUNT
    for name in ('mu', 'sigma', 'features'):
        assert torch.equal(getattr(loaded, name), getattr(statistics, name))
    assert loaded.mu.dtype == loaded.sigma.dtype == torch.float64 and loaded.features.dtype == torch.float32

    save_real_statistics(path, example_statistics(with_features=False), REAL_SET, TAG)
    assert load(path, need_features=False).features is None
    with pytest.raises(StatisticsCacheError, match="have 'features' NoneType"):
        load(path)  # KID needs the features


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'code-ran'
    path = str(tmp_path / 'poisoned.pt')
    plant_malicious_pickle(path, marker)
    with pytest.raises(StatisticsCacheError) as error:
        load(path)
    assert not marker.exists()
    message = cli.one_line(error.value)
    assert message == str(error.value)  # one line
    assert path in message and 'cannot be read as plain tensors (UnpicklingError)' in message
    assert 'delete the file to recompute them' in message


def tampered(record):
    """Variants of a valid record, each with one thing wrong, and the words the refusal must contain."""
    def changed(**fields):
        return {**record, **fields}
    without_features = {key: value for key, value in record.items() if key != 'features'}
    return [
        (changed(format='other'), f"not in the format '{CACHE_FORMAT}'"),
        (changed(real_set='PosedImageFolder_other'), 'computed for real_set'),
        (changed(network='pytorch-fid-000000000000'), 'computed for network'),
        (changed(count=COUNT + 1), 'computed for count 6, not 5'),
        (changed(mu=record['mu'].float()), "have 'mu' (4,) torch.float32, expected (4,) torch.float64"),
        (changed(mu=record['mu'][None]), "no 1-D tensor 'mu'"),
        (changed(sigma=record['sigma'][:3]), "have 'sigma' (3, 4)"),
        (changed(sigma=record['sigma'] * float('nan')), "non-finite values in 'sigma'"),
        (changed(features=record['features'][:2]), "have 'features' (2, 4)"),
        (changed(mu='not a tensor'), "no 1-D tensor 'mu'"),
        (without_features, "have 'features' NoneType"),
        ([1, 2, 3], 'not in the format'),
    ]


def test_tampered_or_garbled_files_are_refused_with_one_line(tmp_path):
    path = str(tmp_path / 'statistics.pt')
    save_real_statistics(path, example_statistics(), REAL_SET, TAG)
    record = torch.load(path, weights_only=True)
    for bad, words in tampered(record):
        torch.save(bad, path)
        with pytest.raises(StatisticsCacheError) as error:
            load(path)
        assert words in str(error.value) and '\n' not in str(error.value), str(error.value)

    torch.save(record, path)
    with open(path, 'rb') as handle:
        data = handle.read()
    for garbled in (data[:len(data) // 2], b'\x00' * 64, b'not a torch file'):
        with open(path, 'wb') as handle:
            handle.write(garbled)
        with pytest.raises(StatisticsCacheError, match='cannot be read as plain tensors') as error:
            load(path)
        assert '\n' not in str(error.value)
