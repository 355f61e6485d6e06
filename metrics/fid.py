"""FID, KID and Inception Score from Inception features held in memory.

Images are uint8 tensors [B, 3, H, W] (the rounded pixels of the PNGs the released script wrote);
a feature network maps them to {'pool3': [B, D] float32, 'logits': [B, C] float32 (optional)} on
the CPU. Two backends:
- torch-fidelity: its TF-Inception extractor (pool3 for FID / KID, the unbiased logits for IS),
  and its own metric functions with its defaults: FID, KID (100 subsets of 1000, polynomial
  kernel of degree 3, gamma 1 / feature size, coef0 1), IS (10 splits, shuffled with seed 2020);
- pytorch-fid (FID only): its InceptionV3 on the images / 255 (what its folder loader reads) and
  its Frechet distance, for comparison with numbers reported that way.
torch-fidelity's `calculate_metrics` is never called, so its feature / statistics file cache
(read back with a full unpickle) is never used; the real-image statistics are cached by
metrics/statistics.py instead. Results use short keys: 'fid', 'kid_mean', 'kid_std', 'is_mean',
'is_std'. The Inception weights come from metrics/inception.py.
"""
import torch
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.metric_fid import (
    KEY_METRIC_FID,
    fid_features_to_statistics,
    fid_statistics_to_metric,
)
from torch_fidelity.metric_isc import (
    KEY_METRIC_ISC_MEAN,
    KEY_METRIC_ISC_STD,
    isc_features_to_metric,
)
from torch_fidelity.metric_kid import (
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    kid_features_to_metric,
)

from metrics import inception

POOL3, LOGITS = 'pool3', 'logits'            # names of the features a network returns
KID_SUBSET_SIZE = DEFAULTS['kid_subset_size']  # 1000: torch-fidelity's default KID subset size
ISC_SPLITS = DEFAULTS['isc_splits']            # 10: torch-fidelity's default Inception Score splits
MIN_IMAGES = 2                               # a covariance needs two images per side


# --------------------------------------------------------------------------------------------
# Feature networks.
# --------------------------------------------------------------------------------------------
class TorchFidelityFeatures:
    """A torch-fidelity feature extractor as a feature network.

    extractor: a torch_fidelity FeatureExtractorBase whose features_list is [pool3 layer] or
        [pool3 layer, logits layer] (metrics.inception.build_torch_fidelity_extractor).
    """

    def __init__(self, extractor):
        self.extractor = extractor.eval()
        self.names = (POOL3, LOGITS)[:len(extractor.features_list)]

    @torch.no_grad()
    def __call__(self, images):
        """uint8 images [B, 3, H, W] (on the extractor's device) -> {'pool3': [B, D], 'logits': [B, C]} CPU."""
        outputs = self.extractor(images)
        return {name: output.float().cpu() for name, output in zip(self.names, outputs)}

    def to(self, device):
        self.extractor.to(device)
        return self


class PytorchFidFeatures:
    """pytorch-fid's InceptionV3 as a feature network (pool3 only).

    model: maps [B, 3, H, W] in [0, 1] to a list whose first item is [B, D, h, w]
        (metrics.inception.build_pytorch_fid_model); pooled to [B, D] as pytorch-fid does.
    """

    def __init__(self, model):
        self.model = model.eval()

    @torch.no_grad()
    def __call__(self, images):
        """uint8 images [B, 3, H, W] -> {'pool3': [B, D]} on the CPU (the input is images / 255, as ToTensor)."""
        prediction = self.model(images.float() / 255)[0]
        if prediction.shape[2:] != (1, 1):
            prediction = torch.nn.functional.adaptive_avg_pool2d(prediction, (1, 1))
        return {POOL3: prediction.flatten(1).float().cpu()}

    def to(self, device):
        self.model.to(device)
        return self


def network_tag(backend, source):
    """'<backend>-<first 12 hex of the weights' sha1>': names a network and its weights (cache file names)."""
    return f'{backend}-{source.sha1[:12]}'


def needed_backends(metrics, fid_backend):
    """The backends whose network the metrics (subset of {'fid', 'kid', 'is'}) need, in a fixed order."""
    backends = ['pytorch-fid'] if 'fid' in metrics and fid_backend == 'pytorch-fid' else []
    if 'kid' in metrics or 'is' in metrics or ('fid' in metrics and fid_backend == 'torch-fidelity'):
        backends.append('torch-fidelity')
    return backends


def build_feature_networks(sources, metrics, fid_backend, device):
    """The feature networks the requested metrics need, on `device`.

    Args:
        sources: {backend: metrics.inception.FeatureSource}.
        metrics: subset of {'fid', 'kid', 'is'} (IS only when the torch-fidelity source has logits).
        fid_backend: 'torch-fidelity' or 'pytorch-fid'.
    Returns:
        {backend: TorchFidelityFeatures or PytorchFidFeatures}.
    """
    networks = {}
    for backend in needed_backends(metrics, fid_backend):
        if backend == 'pytorch-fid':
            networks[backend] = PytorchFidFeatures(inception.build_pytorch_fid_model(sources[backend], device))
        else:
            layers = [inception.POOL3_LAYER] + ([inception.LOGITS_LAYER] if 'is' in metrics else [])
            extractor = inception.build_torch_fidelity_extractor(sources[backend], layers)
            networks[backend] = TorchFidelityFeatures(extractor).to(device)
    return networks


def wanted_features(metrics, fid_backend):
    """[(backend, feature name)] the metrics read from the generated images, in a fixed order."""
    wanted = []
    if 'fid' in metrics:
        wanted.append((fid_backend, POOL3))
    if 'kid' in metrics and ('torch-fidelity', POOL3) not in wanted:
        wanted.append(('torch-fidelity', POOL3))
    if 'is' in metrics:
        wanted.append(('torch-fidelity', LOGITS))
    return wanted


# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------
def feature_statistics(features):
    """features [N, D] -> (mu [D], sigma [D, D]) float64 tensors (torch-fidelity's mean and covariance)."""
    if features.shape[0] < MIN_IMAGES:
        raise ValueError(f"need at least {MIN_IMAGES} images for a covariance, got {features.shape[0]}")
    statistics = fid_features_to_statistics(features.double().cpu())
    return torch.from_numpy(statistics['mu']), torch.from_numpy(statistics['sigma'])


def frechet_distance(backend, fake, real):
    """FID between (mu, sigma) pairs of float64 tensors, with the backend's own formula."""
    (mu_fake, sigma_fake), (mu_real, sigma_real) = [(mu.numpy(), sigma.numpy()) for mu, sigma in (fake, real)]
    if backend == 'pytorch-fid':
        from pytorch_fid.fid_score import calculate_frechet_distance
        return float(calculate_frechet_distance(mu_fake, sigma_fake, mu_real, sigma_real))
    result = fid_statistics_to_metric({'mu': mu_fake, 'sigma': sigma_fake}, {'mu': mu_real, 'sigma': sigma_real},
                                      verbose=False)
    return float(result[KEY_METRIC_FID])


def kid_subset_size(num_fake, num_real):
    """KID subset size for these counts and a note when it is below the standard 1000.

    torch-fidelity refuses KID with fewer than `kid_subset_size` images per side. With fewer, we
    use all the images of the smaller side per subset (a smaller-sample, noisier KID that is not
    comparable with published numbers) and say so.
    Returns (size, note or None).
    """
    size = min(KID_SUBSET_SIZE, num_fake, num_real)
    if size == KID_SUBSET_SIZE:
        return size, None
    return size, (f"KID subset size reduced from {KID_SUBSET_SIZE} to {size} (only {num_fake} generated / "
                  f"{num_real} real images): not comparable with published KID")


def kernel_inception_distance(fake_features, real_features):
    """KID (torch-fidelity's defaults) between pool3 features [N, D] and [M, D].

    Returns ({'kid_mean', 'kid_std'}, note or None).
    """
    size, note = kid_subset_size(len(fake_features), len(real_features))
    result = kid_features_to_metric(fake_features, real_features, kid_subset_size=size, verbose=False)
    return {'kid_mean': float(result[KEY_METRIC_KID_MEAN]), 'kid_std': float(result[KEY_METRIC_KID_STD])}, note


def inception_score(logits):
    """IS (torch-fidelity's defaults: 10 splits, shuffled with its seed) of logits [N, C].

    Returns ({'is_mean', 'is_std'}, None), or ({}, note) with fewer images than splits (an empty
    split would make torch-fidelity's value NaN).
    """
    if len(logits) < ISC_SPLITS:
        return {}, (f'IS not computed: it needs at least {ISC_SPLITS} generated images '
                    f"(torch-fidelity's {ISC_SPLITS} splits), got {len(logits)}")
    result = isc_features_to_metric(logits, ISC_SPLITS, DEFAULTS['samples_shuffle'], DEFAULTS['rng_seed'])
    return {'is_mean': float(result[KEY_METRIC_ISC_MEAN]), 'is_std': float(result[KEY_METRIC_ISC_STD])}, None


def compute_metrics(metrics, fid_backend, fake, real):
    """FID / KID / IS from features.

    Args:
        metrics: subset of {'fid', 'kid', 'is'}.
        fake: {(backend, feature name): [N, D] tensor} of the generated images (wanted_features).
        real: {backend: metrics.statistics.RealStatistics} of the real images.
    Returns:
        (results dict with our short keys, list of notes).
    """
    results, notes = {}, []
    if 'fid' in metrics:
        results['fid'] = frechet_distance(fid_backend, feature_statistics(fake[fid_backend, POOL3]),
                                          (real[fid_backend].mu, real[fid_backend].sigma))
    if 'kid' in metrics:
        values, note = kernel_inception_distance(fake['torch-fidelity', POOL3], real['torch-fidelity'].features)
        results.update(values)
        notes.extend([note] if note else [])
    if 'is' in metrics:
        values, note = inception_score(fake['torch-fidelity', LOGITS])
        results.update(values)
        notes.extend([note] if note else [])
    return results, notes
