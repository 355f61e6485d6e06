"""Conversions into our format: a training checkpoint stripped to its generator, or a released
generator.pth + pickled ema.pth pair turned into a generator-only checkpoint (docs/design.md §11).
"""
import os
import re

import configs
from checkpoints.checkpoint import FORMAT as CHECKPOINT_FORMAT
from checkpoints.checkpoint import VERSION as CHECKPOINT_VERSION
from checkpoints.checkpoint import config_to_json, is_checkpoint
from checkpoints.loading import read_weight_file, released_ema_path, state_dict_mismatch
from checkpoints.released import load_released_ema, shadow_state_dict
from generators import build_generator

GENERATOR_ONLY_KEYS = ('step', 'epoch', 'config', 'generator', 'ema')  # what a stripped checkpoint keeps
STEP_PREFIX = re.compile(r'^step(\d+)_generator\.pth$')  # released per-step file names


def strip_training_checkpoint(checkpoint, plain=False):
    """Our training checkpoint -> generator-only checkpoint (or its plain EMA state_dict)."""
    if plain:
        return checkpoint['ema']['shadow']
    return {'format': CHECKPOINT_FORMAT, 'version': CHECKPOINT_VERSION,
            **{key: checkpoint[key] for key in GENERATOR_ONLY_KEYS}}


def convert(generator_file, config_name, ema_file=None, plain=False):
    """Read a released pair and return the object to save (see the module docstring).

    Raises FileNotFoundError / ValueError with one-line messages.
    """
    ema_file = ema_file or released_ema_path(generator_file)
    for path, flag in ((generator_file, '--generator_file'), (ema_file, '--ema_file')):
        if path is None or not os.path.isfile(path):
            raise FileNotFoundError(f"released file '{path}' not found; pass {flag}")
    config = configs.get_config(config_name)
    generator = build_generator(config)
    weights = read_weight_file(generator_file)
    if not isinstance(weights, dict) or is_checkpoint(weights):
        raise ValueError(f"'{generator_file}' is not a released generator state_dict")
    problem = state_dict_mismatch(generator.state_dict(), weights)
    ema = load_released_ema(ema_file)
    if problem is None:
        try:
            shadow = shadow_state_dict(generator, ema.shadow_params, source=ema_file)
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        raise ValueError(f"released files do not match config {config_name} ({problem}); "
                         f"pass the config they were trained with")
    if plain:
        return shadow
    match = STEP_PREFIX.match(os.path.basename(generator_file))
    return {
        'format': CHECKPOINT_FORMAT, 'version': CHECKPOINT_VERSION,
        'step': int(match.group(1)) if match else 0, 'epoch': 0,
        'config': config_to_json(config),
        'generator': weights,
        'ema': {'decay': float(ema.decay), 'num_updates': int(ema.num_updates or 0), 'shadow': shadow},
        'converted_from': {'generator_file': os.path.abspath(generator_file),
                           'ema_file': os.path.abspath(ema_file)},
    }
