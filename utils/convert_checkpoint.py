"""Convert weights into a small generator-only checkpoint (or a plain EMA state_dict), once.

Inputs: a released GRAM pair (generator.pth + pickled ema.pth), or one of our training
checkpoints (checkpoints/step_*.pt: the discriminator, optimisers and second EMA are dropped;
this is how the shipped demo model is made).

    python -m utils.convert_checkpoint --generator_file released/CATS/generator.pth --config CATS_default \
        --output converted/cats.pt
    python -m utils.convert_checkpoint --generator_file released/CATS/generator.pth --config CATS_default \
        --output converted/cats_generator_ema.pth --plain
    python -m utils.convert_checkpoint --generator_file runs/demo/checkpoints/step_0008000.pt \
        --output demo/synthetic_demo.pt

Default output: a generator-only checkpoint in our format, loadable with
torch.load(weights_only=True) and by utils.weights.load_generator / every --generator_file flag:
    {'format': 'gram-checkpoint', 'version': 1, 'step': int (from a stepNNNNNN_ prefix, else 0),
     'epoch': 0, 'config': the config (JSON-able), 'generator': raw weights,
     'ema': {'decay', 'num_updates', 'shadow': EMA weights in state_dict layout},
     'converted_from': {'generator_file', 'ema_file'}}
It carries the config, so rendering needs no --config. It has no discriminator or optimiser
states, so training cannot resume from it. With --plain the output is instead a plain
state_dict of the EMA weights (like our generator_ema.pth), which needs --config when used.
The pickled ema.pth is read through the allow-listed loader in utils.released.
"""
import argparse
import os
import re
import sys

if __package__ in (None, ''):  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import configs  # noqa: E402
from generators import build_generator  # noqa: E402
from utils.checkpoint import FORMAT as CHECKPOINT_FORMAT, VERSION as CHECKPOINT_VERSION, config_to_json  # noqa: E402
from utils.files import atomic_torch_save  # noqa: E402
from utils.released import load_released_ema, shadow_state_dict  # noqa: E402
from utils.weights import read_weight_file, released_ema_path, state_dict_mismatch  # noqa: E402

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
    if not isinstance(weights, dict) or weights.get('format') == CHECKPOINT_FORMAT:
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--generator_file', required=True,
                        help='released [stepNNNNNN_]generator.pth, or our checkpoints/step_*.pt')
    parser.add_argument('--ema_file', default=None,
                        help='released pickled EMA (default: the [stepNNNNNN_]ema.pth next to the generator)')
    parser.add_argument('--config', choices=sorted(configs.CONFIGS), default='FFHQ_default',
                        help='config the released weights were trained with (default FFHQ_default)')
    parser.add_argument('--output', required=True, help='file to write (atomically)')
    parser.add_argument('--plain', action='store_true',
                        help='write a plain state_dict of the EMA weights instead of our checkpoint format')
    args = parser.parse_args(argv)
    try:
        payload = read_weight_file(args.generator_file)
        if isinstance(payload, dict) and payload.get('format') == CHECKPOINT_FORMAT:
            converted = strip_training_checkpoint(payload, args.plain)
        else:
            converted = convert(args.generator_file, args.config, args.ema_file, args.plain)
    except (FileNotFoundError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(1)
    atomic_torch_save(converted, args.output)
    kind = 'plain EMA state_dict' if args.plain else f'{CHECKPOINT_FORMAT} (generator + EMA + config)'
    print(f'wrote {args.output}: {kind}')


if __name__ == '__main__':
    main()
