"""Test helpers for the image metrics (not tests): independent numpy references, tiny stand-in
feature networks (12-d quadrant colours instead of 2048-d Inception features, so FID's
eigenvalue problem is instant), synthetic images and a pickle that runs code when loaded."""
import os

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from metrics import fid
from metrics.inception import FeatureSource

QUADRANT_EXTRACTOR = 'test-quadrant-colours'
NUM_CLASSES = 5                      # stand-in logits width
STAND_IN_SOURCE = FeatureSource('state_dict', 'stand-in', True, 'stand-in quadrant colours', '0' * 40)


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


# --------------------------------------------------------------------------------------------
# Stand-in feature networks.
# --------------------------------------------------------------------------------------------
def quadrant_logits(quadrants):
    """A fixed map of quadrant colours [B, 12] (0-255) to logits [B, NUM_CLASSES]."""
    weights = torch.linspace(-1, 1, 12 * NUM_CLASSES, dtype=quadrants.dtype).reshape(12, NUM_CLASSES)
    return quadrants @ weights / 64


class QuadrantColours(FeatureExtractorBase):
    """torch-fidelity extractor stand-in: uint8 [B, 3, H, W] -> 12-d quadrant mean colours (+ logits)."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return 'quadrants', 'logits'

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return 'logits' if metric == 'isc' else 'quadrants'

    @staticmethod
    def can_be_compiled():
        return False

    def forward(self, x):
        quadrants = F.adaptive_avg_pool2d(x.float(), 2).flatten(1)  # [B, 3, 2, 2] -> [B, 12]
        features = {'quadrants': quadrants, 'logits': quadrant_logits(quadrants)}
        return tuple(features[name] for name in self.features_list)


if QUADRANT_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(QUADRANT_EXTRACTOR, QuadrantColours)


class QuadrantColoursPytorchFid(torch.nn.Module):
    """pytorch-fid stand-in: [B, 3, H, W] in [0, 1] -> [quadrant colours [B, 12, 1, 1]]."""

    def forward(self, x):
        return [F.adaptive_avg_pool2d(x, 2).flatten(1)[:, :, None, None]]


def stand_in_networks(sources, metrics, fid_backend, device):
    """Drop-in for metrics.fid.build_feature_networks with the quadrant stand-ins."""
    networks = {}
    for backend in fid.needed_backends(metrics, fid_backend):
        if backend == 'pytorch-fid':
            networks[backend] = fid.PytorchFidFeatures(QuadrantColoursPytorchFid())
        else:
            layers = ['quadrants', 'logits'] if 'is' in metrics else ['quadrants']
            networks[backend] = fid.TorchFidelityFeatures(QuadrantColours(QUADRANT_EXTRACTOR, layers))
    return networks


def stand_in_source(backend, weights_path=None, allow_download=True, log=print):
    """Drop-in for metrics.inception.resolve_feature_source: a source with logits and a fixed sha1."""
    return STAND_IN_SOURCE


# --------------------------------------------------------------------------------------------
# Images and files.
# --------------------------------------------------------------------------------------------
def random_pixels(rng, count, size=8, brightness=0):
    """Images with a random colour per quadrant plus noise, uint8 [count, size, size, 3]."""
    colours = rng.integers(0, 200, size=(count, 2, 1, 2, 1, 3)) + brightness
    pixels = np.broadcast_to(colours, (count, 2, size // 2, 2, size // 2, 3)).reshape(count, size, size, 3)
    return np.clip(pixels + rng.integers(0, 40, size=pixels.shape), 0, 255).astype(np.uint8)


def to_tensor(pixels):
    """uint8 [B, H, W, 3] numpy -> uint8 tensor [B, 3, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)


def write_images(folder, pixels):
    os.makedirs(folder, exist_ok=True)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(os.path.join(folder, f'{index:06d}.png'))


class CreatesMarker:
    """Pickles to a call of open(marker, 'w'): loading it with a full unpickle creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def plant_malicious_pickle(path, marker):
    """torch.save a CreatesMarker at `path` (folders created)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(CreatesMarker(marker), path)
