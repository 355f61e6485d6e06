"""metrics/fid.py: FID / KID / IS against independent numpy / scipy code, the in-memory feature
networks against torch-fidelity's and pytorch-fid's own folder pipelines (tiny stand-in features)."""
import numpy as np
import pytest
import torch
import torch_fidelity
from metric_stand_ins import (
    QUADRANT_EXTRACTOR,
    QuadrantColours,
    QuadrantColoursPytorchFid,
    numpy_fid,
    numpy_kid,
    quadrant_features,
    quadrant_logits,
    random_pixels,
    to_tensor,
    write_images,
)
from pytorch_fid.fid_score import (
    calculate_activation_statistics,
    calculate_frechet_distance,
)
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from metrics import fid, inception
from metrics.statistics import RealStatistics


# --------------------------------------------------------------------------------------------
# Statistics.
# --------------------------------------------------------------------------------------------
def test_fid_formula_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    features_1 = rng.normal(size=(300, 16))
    features_2 = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    expected = numpy_fid(features_1, features_2)
    stats_1 = fid.feature_statistics(torch.from_numpy(features_1).float())
    stats_2 = fid.feature_statistics(torch.from_numpy(features_2).float())
    assert stats_1[0].dtype == stats_1[1].dtype == torch.float64
    assert expected > 1.0
    for backend in inception.BACKENDS:
        assert fid.frechet_distance(backend, stats_1, stats_2) == pytest.approx(expected, rel=1e-6)
        assert abs(fid.frechet_distance(backend, stats_1, stats_1)) < 1e-8


def test_fid_of_shifted_gaussians_is_the_squared_shift():
    """Same covariance, mean shifted by (1, 2): FID = 1 + 4 exactly (the trace terms cancel)."""
    features = torch.from_numpy(np.random.default_rng(1).normal(size=(200, 2)))
    shifted = fid.feature_statistics(features + torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert fid.frechet_distance('torch-fidelity', fid.feature_statistics(features), shifted) == pytest.approx(5.0)


def test_kid_hand_computed():
    """X = {0, 1}, Y = {0, 2} in 1-d, k(a, b) = (a b + 1)^3:
    XX off-diagonal k(0,1) = 1 twice -> 2 / 2 = 1; YY likewise 1;
    XY: k(0,0) + k(0,2) + k(1,0) + k(1,2) = 1 + 1 + 1 + 27 = 30 -> 2 * 30 / 4 = 15; MMD^2 = -13."""
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    result = kid_features_to_metric(x, y, kid_subsets=1, kid_subset_size=2, verbose=False)
    assert result['kernel_inception_distance_mean'] == pytest.approx(-13.0)
    assert numpy_kid(x.numpy(), y.numpy()) == pytest.approx(-13.0)
    values, note = fid.kernel_inception_distance(x, y)
    assert values['kid_mean'] == pytest.approx(-13.0) and values['kid_std'] == pytest.approx(0.0, abs=1e-12)
    assert 'reduced from 1000 to 2' in note


def test_kid_matches_independent_numpy_estimator():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6))
    y = rng.normal(size=(40, 6)) + 0.5
    # Subsets of all 40 samples: every subset is the full set, so the mean is the full-set MMD.
    values, _ = fid.kernel_inception_distance(torch.from_numpy(x), torch.from_numpy(y))
    assert values['kid_mean'] == pytest.approx(numpy_kid(x, y), rel=1e-9)
    assert values['kid_std'] == pytest.approx(0.0, abs=1e-9)


def test_inception_score_hand_computed():
    """Two confident predictions of different classes: p(y) = (1/2, 1/2), KL = log 2 each, IS = 2."""
    logits = torch.tensor([[50.0, -50.0], [-50.0, 50.0]])
    result = isc_features_to_metric(logits, splits=1, shuffle=False)
    assert result['inception_score_mean'] == pytest.approx(2.0, rel=1e-9)
    same_class = isc_features_to_metric(torch.tensor([[50.0, -50.0], [50.0, -50.0]]), splits=1, shuffle=False)
    assert same_class['inception_score_mean'] == pytest.approx(1.0, rel=1e-9)
    values, note = fid.inception_score(logits)  # ours: torch-fidelity's 10 splits need 10 images
    assert values == {} and 'at least 10 generated images' in note


def test_kid_subset_size_reduction():
    assert fid.kid_subset_size(1000, 8000) == (1000, None)
    size, note = fid.kid_subset_size(300, 8000)
    assert size == 300 and '300' in note and 'not comparable' in note


def test_feature_statistics_need_two_images():
    with pytest.raises(ValueError, match='at least 2 images'):
        fid.feature_statistics(torch.zeros(1, 4))


def test_needed_backends_and_wanted_features():
    assert fid.needed_backends(['fid'], 'pytorch-fid') == ['pytorch-fid']
    assert fid.needed_backends(['fid', 'kid'], 'pytorch-fid') == ['pytorch-fid', 'torch-fidelity']
    assert fid.needed_backends(['is'], 'torch-fidelity') == ['torch-fidelity']
    assert fid.wanted_features(['fid', 'kid', 'is'], 'torch-fidelity') == [
        ('torch-fidelity', fid.POOL3), ('torch-fidelity', fid.LOGITS)]
    assert fid.wanted_features(['fid', 'kid'], 'pytorch-fid') == [('pytorch-fid', fid.POOL3),
                                                                  ('torch-fidelity', fid.POOL3)]


# --------------------------------------------------------------------------------------------
# In-memory features against the libraries' own folder pipelines.
# --------------------------------------------------------------------------------------------
def test_in_memory_metrics_equal_torch_fidelity_on_folders(tmp_path):
    """Our path (features of uint8 tensors, our calls of torch-fidelity's metric functions) gives
    what torch-fidelity's calculate_metrics gives on the same images as PNG folders (cache off),
    and what independent numpy code gives."""
    rng = np.random.default_rng(3)
    fake, real = random_pixels(rng, 24), random_pixels(rng, 24, brightness=40)
    network = fid.TorchFidelityFeatures(QuadrantColours(QUADRANT_EXTRACTOR, ['quadrants', 'logits']))
    fake_features, real_features = network(to_tensor(fake)), network(to_tensor(real))
    real_statistics = RealStatistics(*fid.feature_statistics(real_features[fid.POOL3]), real_features[fid.POOL3], 24)
    fake_by_key = {('torch-fidelity', name): value for name, value in fake_features.items()}
    ours, notes = fid.compute_metrics(['fid', 'kid', 'is'], 'torch-fidelity', fake_by_key,
                                      {'torch-fidelity': real_statistics})

    write_images(tmp_path / 'fake', fake)
    write_images(tmp_path / 'real', real)
    reference = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / 'fake'), input2=str(tmp_path / 'real'), fid=True, kid=True, isc=True, cuda=False,
        cache=False, verbose=False, feature_extractor=QUADRANT_EXTRACTOR, feature_layer_isc='logits',
        feature_layer_fid='quadrants', feature_layer_kid='quadrants', kid_subset_size=24, save_cpu_ram=True)
    assert ours['fid'] == pytest.approx(reference[torch_fidelity.KEY_METRIC_FID], rel=1e-6)
    assert ours['kid_mean'] == pytest.approx(reference[torch_fidelity.KEY_METRIC_KID_MEAN], rel=1e-6)
    assert ours['is_mean'] == pytest.approx(reference[torch_fidelity.KEY_METRIC_ISC_MEAN], rel=1e-6)

    expected_fake, expected_real = quadrant_features(fake), quadrant_features(real)
    assert ours['fid'] == pytest.approx(numpy_fid(expected_fake, expected_real), rel=1e-4)
    assert ours['kid_mean'] == pytest.approx(numpy_kid(expected_fake, expected_real), rel=1e-4)
    torch.testing.assert_close(fake_features[fid.LOGITS], quadrant_logits(torch.from_numpy(expected_fake).float()))
    assert ours['fid'] > 100  # the real set is brighter: a clearly non-zero distance
    assert notes and 'reduced from 1000 to 24' in notes[0]


def test_pytorch_fid_features_equal_its_folder_pipeline(tmp_path):
    rng = np.random.default_rng(6)
    fake, real = random_pixels(rng, 20), random_pixels(rng, 20, brightness=40)
    network = fid.PytorchFidFeatures(QuadrantColoursPytorchFid())
    fake_statistics = fid.feature_statistics(network(to_tensor(fake))[fid.POOL3])
    real_statistics = fid.feature_statistics(network(to_tensor(real))[fid.POOL3])
    ours = fid.frechet_distance('pytorch-fid', fake_statistics, real_statistics)

    files = {}
    for name, pixels in (('fake', fake), ('real', real)):
        write_images(tmp_path / name, pixels)
        files[name] = sorted(str(path) for path in (tmp_path / name).iterdir())
    model = QuadrantColoursPytorchFid()
    mu_fake, sigma_fake = calculate_activation_statistics(files['fake'], model, 20, 12, 'cpu', 0)
    mu_real, sigma_real = calculate_activation_statistics(files['real'], model, 20, 12, 'cpu', 0)
    reference = calculate_frechet_distance(mu_fake, sigma_fake, mu_real, sigma_real)
    expected = numpy_fid(quadrant_features(fake) / 255, quadrant_features(real) / 255)  # pytorch-fid reads [0, 1]
    assert expected > 0.01
    assert ours == pytest.approx(reference, rel=1e-5)
    assert ours == pytest.approx(expected, rel=1e-4)
