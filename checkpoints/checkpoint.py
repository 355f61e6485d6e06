"""Training checkpoints: one file per save, written atomically, loadable with weights_only=True.

Layout of a run folder::

    <output_dir>/checkpoints/step_0005000.pt   one dict per save (CHECKPOINT_KEYS below)
    <output_dir>/generator_ema.pth             plain generator state_dict with the EMA (0.999)
                                               weights, in the released key layout

A checkpoint dict: {'format': 'gram-checkpoint', 'version': 1, 'step', 'epoch', 'config' (JSON-able:
tuples stored as lists), 'generator', 'discriminator' (state_dicts), 'ema', 'ema2' ({'decay',
'num_updates', 'shadow'}), 'optimizer_G', 'optimizer_D', 'scaler' (state_dicts), 'rng' (tensors
and ints only)}.
"""
import json
import os
import pickle
import re

import torch

import configs
from utils.cli import UserError
from utils.files import atomic_torch_save

FORMAT = 'gram-checkpoint'
VERSION = 1
CHECKPOINT_FOLDER = 'checkpoints'
EMA_GENERATOR_FILE = 'generator_ema.pth'
CHECKPOINT_KEYS = ('format', 'version', 'step', 'epoch', 'config', 'generator', 'discriminator', 'ema',
                   'ema2', 'optimizer_G', 'optimizer_D', 'scaler', 'rng')
MODEL_SECTIONS = ('generator', 'discriminator')  # config sections that fix the weights' shapes
_STEP_FILE = re.compile(r'^step_(\d+)\.pt$')


class CheckpointError(UserError):
    """A checkpoint problem; the message names the path and the fix in one line."""


def is_checkpoint(payload):
    """True for a dict written in our format (a training or generator-only checkpoint)."""
    return isinstance(payload, dict) and payload.get('format') == FORMAT


def checkpoint_path(output_dir, step):
    """<output_dir>/checkpoints/step_{step:07d}.pt"""
    return os.path.join(output_dir, CHECKPOINT_FOLDER, f'step_{step:07d}.pt')


def save_checkpoint(output_dir, state):
    """Write `state` (all CHECKPOINT_KEYS except format/version) atomically; return its path."""
    missing = [key for key in CHECKPOINT_KEYS[2:] if key not in state]
    if missing:
        raise KeyError(f"checkpoint state lacks {missing}")
    path = checkpoint_path(output_dir, state['step'])
    atomic_torch_save({'format': FORMAT, 'version': VERSION, **state}, path)
    return path


def write_generator_ema(output_dir, shadow):
    """Write the EMA generator weights as a plain state_dict (usable as --generator_file)."""
    path = os.path.join(output_dir, EMA_GENERATOR_FILE)
    atomic_torch_save(shadow, path)
    return path


def list_checkpoints(folder):
    """[(step, path)] of the step_*.pt files in `folder`, oldest first ([] if none)."""
    if not os.path.isdir(folder):
        return []
    found = [(int(match.group(1)), os.path.join(folder, name))
             for name in os.listdir(folder) if (match := _STEP_FILE.match(name))]
    return sorted(found)


def prune_checkpoints(output_dir, keep_every, keep_step):
    """Delete the checkpoints older than `keep_step` except those at multiples of `keep_every`.

    Mirrors the released scheme: a permanent checkpoint every model_save_interval steps plus one
    rolling "latest" written every sample_interval steps. Newer files (e.g. an unreadable one a
    resume skipped) are left alone.
    """
    for step, path in list_checkpoints(os.path.join(output_dir, CHECKPOINT_FOLDER)):
        if step < keep_step and step % keep_every != 0:
            os.remove(path)


def load_checkpoint(path, map_location='cpu'):
    """torch.load(weights_only=True) a checkpoint and check its format; CheckpointError if not ours."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise CheckpointError(f"cannot read checkpoint '{path}' ({str(error).splitlines()[0]})") from error
    if not is_checkpoint(state):
        raise CheckpointError(f"'{path}' is not a GRAM training checkpoint (no format '{FORMAT}')")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint '{path}' is incomplete (missing {', '.join(missing)})")
    return state


def is_readable_checkpoint(path):
    """Whether `path` loads as a complete checkpoint (a copy cut off mid-way does not, and holds
    no history to continue)."""
    try:
        load_checkpoint(path)
    except CheckpointError:
        return False
    return True


def find_latest_checkpoint(load_dir, map_location='cpu', log=print):
    """Newest complete checkpoint under `load_dir` -> (path, state).

    `load_dir` may be a run folder, its checkpoints/ folder, or a checkpoint file. Files that fail
    to load (e.g. a copy interrupted mid-way) are skipped in favour of the next older one, with a
    warning through `log`.
    """
    if os.path.isfile(load_dir):
        return load_dir, load_checkpoint(load_dir, map_location)
    if not os.path.isdir(load_dir):
        raise CheckpointError(f"--load_dir '{load_dir}' does not exist; pass a run folder with checkpoints/")
    folder = os.path.join(load_dir, CHECKPOINT_FOLDER)
    candidates = list_checkpoints(folder) or list_checkpoints(load_dir)
    problems = []
    for _, path in reversed(candidates):
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as error:
            problems.append(str(error))
            log(f"warning: skipping {error}")
            continue
        return path, state
    detail = f" ({problems[0]})" if problems else ''
    raise CheckpointError(f"no complete checkpoint (step_*.pt) found in '{load_dir}'{detail}; "
                          f"check --load_dir or start without it")


def config_to_json(config):
    """JSON-able deep copy of a config: tuples become lists."""
    return json.loads(json.dumps(config))


def config_differences(saved, current, prefix=''):
    """['a.b: saved -> current', ...] for every leaf that differs between two JSON-able configs."""
    differences = []
    for key in sorted(set(saved) | set(current), key=str):
        path = f'{prefix}{key}'
        old, new = saved.get(key, '<absent>'), current.get(key, '<absent>')
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, prefix=f'{path}.')
        elif old != new:
            differences.append(f'{path}: {old} -> {new}')
    return differences


def check_same_model(saved_config, config, path):
    """Raise CheckpointError when the checkpoint's model sections differ from `config`'s.

    Returns the list of other (non-model) differences, e.g. changed learning rates, so the caller
    can report them.
    """
    try:
        saved = config_to_json(configs.with_optional_defaults(configs.normalize(saved_config)))
    except ValueError as error:
        raise CheckpointError(f"checkpoint '{path}': {error}; it cannot be resumed with this version") from None
    current = config_to_json(configs.with_optional_defaults(config))
    model_diff = config_differences({k: saved.get(k, {}) for k in MODEL_SECTIONS},
                                    {k: current.get(k, {}) for k in MODEL_SECTIONS})
    if model_diff:
        raise CheckpointError(
            f"checkpoint '{path}' was trained with another config ({model_diff[0]}"
            f"{f' and {len(model_diff) - 1} more' if len(model_diff) > 1 else ''}); "
            f"use the --config/--set it was trained with or another --load_dir")
    return config_differences({k: v for k, v in saved.items() if k not in MODEL_SECTIONS},
                              {k: v for k, v in current.items() if k not in MODEL_SECTIONS})
