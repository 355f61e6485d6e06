"""The inversion file (`inversion.pt`): writing it and loading an inverted subject for rendering.

Contents (all plain tensors / JSON-able values, read with torch.load(weights_only=True)):
    format, version        'gram-inversion', 1
    frequencies            [1, 9 H] FiLM frequencies (mapping-network output, before * 15 + 30)
    phase_shifts           [1, 9 H]
    camera_pos             [1, 2] (phi, theta), radians (docs/design.md §1.1)
    config                 the config dict the generator was built from (JSON-able)
    loss_curve             [steps] float32, the fit's loss per step (the winning start)
    finetune_loss_curve    [K] float32, pivotal tuning's loss per step (K = 0 without it)
    generator              the fine-tuned generator's state_dict, only when fine-tuned

The subject renders with `generator.forward_with_frequencies_phase_shifts(frequencies,
phase_shifts, ...)` (or inversion.rendering.render) on the base generator, or on the fine-tuned
weights when the file has them (load_inversion applies them).
"""
import collections
import math
import os
import pickle

import torch

from checkpoints.checkpoint import config_to_json
from checkpoints.loading import config_from_checkpoint, load_generator, state_dict_mismatch
from utils.files import atomic_torch_save

FORMAT = 'gram-inversion'
VERSION = 1
REQUIRED_KEYS = ('frequencies', 'phase_shifts', 'camera_pos', 'config')
FILE_LABEL = 'inversion'  # names an inverted subject's output files where a seed would (grid_inversion.gif, ...)

Inversion = collections.namedtuple('Inversion', ['generator', 'config', 'frequencies', 'phase_shifts', 'camera_pos'])
Inversion.__doc__ = """An inverted subject ready to render: the generator (fine-tuned weights applied when the
file has them; eval mode, on the requested device), its config dict, frequencies and phase_shifts
[1, 9 H] and camera_pos [1, 2] on the same device."""


def inversion_payload(result, config):
    """The dict written to inversion.pt for an optimize.Result and the config dict."""
    payload = {
        'format': FORMAT, 'version': VERSION,
        'frequencies': result.frequencies.detach().cpu().float(),
        'phase_shifts': result.phase_shifts.detach().cpu().float(),
        'camera_pos': result.camera_pos.detach().cpu().float(),
        'config': config_to_json(config),
        'loss_curve': torch.tensor(result.losses, dtype=torch.float32),
        'finetune_loss_curve': torch.tensor(result.finetune_losses, dtype=torch.float32),
    }
    if result.generator is not None:
        payload['generator'] = {key: value.detach().cpu() for key, value in result.generator.state_dict().items()}
    return payload


def save_inversion(payload, path):
    """Write the payload of inversion_payload() to `path` atomically."""
    atomic_torch_save(payload, path)


def _tensor_problem(value, width):
    """What is wrong with `value` as a finite float tensor [1, width] (any width when None), or None."""
    if not torch.is_tensor(value):
        return type(value).__name__
    if value.ndim != 2 or value.shape[0] != 1 or (width is not None and value.shape[1] != width):
        return f'shape {tuple(value.shape)}'
    if not value.is_floating_point():
        return f'dtype {value.dtype}'
    if not torch.isfinite(value).all():
        return 'not finite'
    return None


def read_inversion(path):
    """torch.load(weights_only=True) an inversion file and check it (format, version, the shapes,
    dtypes and finiteness of the FiLM parameters and camera, phi in (0, pi), the fine-tuned
    state_dict's types); one-line ValueErrors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"inversion file '{path}' not found; pass the inversion.pt that invert.py wrote")
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:  # torch's message suggests weights_only=False, which an inversion file never needs
        raise ValueError(f"cannot read '{path}' as an inversion file (not a torch file of plain tensors and "
                         f"values); pass the inversion.pt that invert.py wrote") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"cannot read '{path}' as an inversion file ({str(error).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get('format') != FORMAT:
        raise ValueError(f"'{path}' is not an inversion file (no format '{FORMAT}'); pass invert.py's inversion.pt")
    if payload.get('version') != VERSION:
        raise ValueError(f"inversion file '{path}' has version {payload.get('version')!r}, this code reads "
                         f"version {VERSION}; write it again with this invert.py")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"inversion file '{path}' is incomplete (missing {', '.join(missing)}); "
                         f"pass the inversion.pt that invert.py wrote")
    for key, width in (('frequencies', None), ('phase_shifts', None), ('camera_pos', 2)):
        problem = _tensor_problem(payload[key], width)
        if problem is not None:
            raise ValueError(f"inversion file '{path}' has a malformed '{key}' ({problem}); "
                             f"pass the inversion.pt that invert.py wrote")
    phi = float(payload['camera_pos'][0, 0])
    if not 0 < phi < math.pi:
        raise ValueError(f"inversion file '{path}' has camera phi {phi:.4f} outside (0, pi); "
                         f"pass the inversion.pt that invert.py wrote")
    generator = payload.get('generator', {})
    if not isinstance(generator, dict) or not all(isinstance(key, str) and torch.is_tensor(value)
                                                  for key, value in generator.items()):
        raise ValueError(f"inversion file '{path}' has a 'generator' entry that is not a state_dict "
                         f"(names -> tensors); pass the inversion.pt that invert.py wrote")
    return payload


def load_inversion(path, generator_file, device='cpu', log=None):
    """Load an inverted subject for rendering.

    Args:
        path: inversion.pt written by invert.py.
        generator_file: the base weights (any file checkpoints.loading.load_generator reads); the
            generator is built from the config stored in the inversion file, so weights of another
            config are refused (one line).
        device: where everything ends up.
        log: optional callable receiving one-line notes.
    Returns:
        Inversion(generator, config, frequencies, phase_shifts, camera_pos).
    """
    log = log or (lambda message: None)
    payload = read_inversion(path)
    config = config_from_checkpoint(payload['config'])
    generator, config = load_generator(generator_file, config, device, use_ema=True, log=log)
    if 'generator' in payload:
        problem = state_dict_mismatch(generator.state_dict(), payload['generator'])
        if problem is not None:
            raise ValueError(f"the fine-tuned weights in '{path}' do not match its config ({problem})")
        generator.load_state_dict(payload['generator'])
        log(f'using the fine-tuned generator weights stored in {path}')
    width = generator.avg_frequencies.shape[1]
    for key in ('frequencies', 'phase_shifts'):
        if payload[key].shape[1] != width:
            raise ValueError(f"inversion file '{path}' has {key} of width {payload[key].shape[1]}; "
                             f"its generator needs {width}")
    return Inversion(generator.eval(), config, payload['frequencies'].to(device),
                     payload['phase_shifts'].to(device), payload['camera_pos'].to(device))
