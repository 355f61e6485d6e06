"""Load a generator for rendering or evaluation from any of the weight files we support.

`load_generator(path, config=None, device='cpu', use_ema=True)` accepts:
- our training checkpoint (`checkpoints/step_*.pt`, {'format': 'gram-checkpoint', ...}): the
  EMA weights ckpt['ema']['shadow'] (or ckpt['generator'] with use_ema=False) and, when no
  config is given, the config stored in it;
- a plain generator state_dict (released key layout): our `generator_ema.pth`, or a released
  `generator.pth` / `stepNNNNNN_generator.pth`. For the released names, the sibling `ema.pth` /
  `stepNNNNNN_ema.pth` (a pickled torch_ema object, read by checkpoints.released) supplies the EMA
  weights when present. A plain state_dict carries no config: the one given is used, else
  FFHQ_default (the released script's default).
Every file is read with torch.load(weights_only=True) or the allow-listed EMA loader. Problems
raise FileNotFoundError / ValueError with a one-line message naming the file and the fix.
"""
import os
import pickle

import torch

import configs
from checkpoints.checkpoint import FORMAT as CHECKPOINT_FORMAT
from checkpoints.checkpoint import is_checkpoint
from checkpoints.released import load_released_ema, shadow_state_dict
from generators import build_generator

DEFAULT_CONFIG_NAME = 'FFHQ_default'   # config of a plain state_dict when none is given (released default)
RELEASED_GENERATOR_SUFFIX = 'generator.pth'  # released names: [stepNNNNNN_]generator.pth ...
RELEASED_EMA_SUFFIX = 'ema.pth'              # ... with [stepNNNNNN_]ema.pth next to it
UNSAFE_PICKLE_HINT = 'Unsupported global'    # torch's weights_only refusal of a pickled class


def add_generator_arguments(parser, generator_file_default=None):
    """Add the weight-file flags every script shares: --config and --generator_file."""
    parser.add_argument('--config', choices=sorted(configs.CONFIGS), default=None,
                        help='config the weights were trained with (default: the one stored in a checkpoint; '
                             f'{DEFAULT_CONFIG_NAME} for a plain state_dict, as the released scripts)')
    parser.add_argument('--generator_file', default=generator_file_default, required=generator_file_default is None,
                        help='weights: our checkpoint (step_*.pt or a converted .pt), a generator state_dict '
                             '(generator_ema.pth), or a released generator.pth (its sibling ema.pth is used '
                             'when present)')


def load_generator(path, config=None, device='cpu', use_ema=True, log=None):
    """Build a generator from `path` and load its (EMA) weights.

    Args:
        path: weight file (see the module docstring for the accepted kinds).
        config: None, a config name from configs.CONFIGS, or a config dict.
        device: where the generator ends up.
        use_ema: load the EMA weights when the file (or its released sibling) has them.
        log: optional callable receiving one-line notes on what was loaded.
    Returns:
        (generator in eval mode on `device`, the config dict it was built from).
    """
    log = log or (lambda message: None)
    config_label = config if isinstance(config, str) else 'the given config'
    if isinstance(config, str):
        config = configs.get_config(config)
    payload = read_weight_file(path)

    if is_checkpoint(payload):
        if config is None:
            config, config_label = config_from_checkpoint(payload['config']), "the checkpoint's config"
        key = 'ema' if use_ema else 'generator'
        state = payload['ema']['shadow'] if use_ema else payload['generator']
        log(f"loaded {key} weights of step {payload.get('step', '?')} from {path}")
        return _build_and_load(config, state, None, path, config_label, device), config

    if not _is_state_dict(payload):
        raise ValueError(f"'{path}' is neither a generator state_dict nor a {CHECKPOINT_FORMAT} file")
    if config is None:
        config, config_label = configs.get_config(DEFAULT_CONFIG_NAME), DEFAULT_CONFIG_NAME
        log(f'no config given for the plain state_dict {path}: using {DEFAULT_CONFIG_NAME}')
    ema_path = released_ema_path(path)
    shadow_params = None
    if use_ema and ema_path is not None and os.path.isfile(ema_path):
        shadow_params = load_released_ema(ema_path).shadow_params
        log(f'loaded {path} with the EMA weights of {ema_path}')
    else:
        log(f'loaded the weights of {path} as they are (no released ema.pth used)')
    return _build_and_load(config, payload, shadow_params, path, config_label, device), config


def released_ema_path(generator_path):
    """`.../[prefix]generator.pth` -> `.../[prefix]ema.pth`; None for other names."""
    folder, name = os.path.split(generator_path)
    if not name.endswith(RELEASED_GENERATOR_SUFFIX):
        return None
    return os.path.join(folder, name[:-len(RELEASED_GENERATOR_SUFFIX)] + RELEASED_EMA_SUFFIX)


def config_from_checkpoint(stored):
    """A config stored as JSON-able data (tuples became lists, maybe an earlier layout) -> config
    dict in the current layout (configs.normalize), tuples back."""
    return configs.normalize(_tuples_back(stored))


def _tuples_back(stored):
    if isinstance(stored, dict):
        return {key: _tuples_back(value) for key, value in stored.items()}
    if isinstance(stored, list):
        return tuple(_tuples_back(value) for value in stored)
    return stored


def read_weight_file(path):
    """torch.load(weights_only=True) with one-line errors; points released EMA files elsewhere."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"generator file '{path}' not found; pass --generator_file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"generator file '{path}' is empty; pass a weights file (e.g. a finished copy of it)")
    not_weights = ValueError(f"'{path}' is not a torch weights file; pass a checkpoint or generator.pth")
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        if _is_released_ema(path):
            raise ValueError(f"'{path}' is a released EMA file; pass the generator.pth next to it "
                             f"(its ema.pth is picked up automatically)") from None
        if UNSAFE_PICKLE_HINT in str(error):
            raise ValueError(f"refusing to load '{path}': it holds pickled objects, not plain tensors") from None
        raise not_weights from None
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError):
        raise not_weights from None


def _is_released_ema(path):
    try:
        load_released_ema(path)
    except ValueError:
        return False
    return True


def _is_state_dict(payload):
    return isinstance(payload, dict) and len(payload) > 0 and all(
        isinstance(key, str) and torch.is_tensor(value) for key, value in payload.items())


def _build_and_load(config, state, shadow_params, path, config_label, device):
    """Build the generator of `config`, load `state` (then the shadow tensors, if any)."""
    generator = build_generator(config)
    problem = state_dict_mismatch(generator.state_dict(), state)
    if problem is None and shadow_params is not None:
        try:
            state = shadow_state_dict(generator, shadow_params, source='its ema.pth')
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        raise ValueError(f"generator file '{path}' does not match {config_label} ({problem}); "
                         f"pass the config it was trained with")
    generator.load_state_dict(state)  # also marks the truncation average stale
    return generator.to(device).eval()


def state_dict_mismatch(expected, given):
    """A short description of how `given` differs from `expected` (keys, shapes), or None."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing keys, e.g. {missing[0]}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected keys, e.g. {unexpected[0]}')
        return '; '.join(parts)
    for key, value in expected.items():
        if tuple(given[key].shape) != tuple(value.shape):
            return f'{key} has shape {tuple(given[key].shape)}, the config needs {tuple(value.shape)}'
    return None
