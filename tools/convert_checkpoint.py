"""Convert weights into a small generator-only checkpoint (or a plain EMA state_dict), once.

Inputs: a released GRAM pair (generator.pth + pickled ema.pth), or one of our training
checkpoints (checkpoints/step_*.pt: the discriminator, optimisers and second EMA are dropped;
this is how the shipped demo model is made).

    python -m tools.convert_checkpoint --generator_file released/CATS/generator.pth --config CATS_default \
        --output converted/cats.pt
    python -m tools.convert_checkpoint --generator_file released/CATS/generator.pth --config CATS_default \
        --output converted/cats_generator_ema.pth --plain
    python -m tools.convert_checkpoint --generator_file runs/demo/checkpoints/step_0008000.pt \
        --output demo/synthetic_demo.pt

Default output: a generator-only checkpoint in our format, loadable with
torch.load(weights_only=True) and by checkpoints.loading.load_generator / every --generator_file flag:
    {'format': 'gram-checkpoint', 'version': 1, 'step': int (from a stepNNNNNN_ prefix, else 0),
     'epoch': 0, 'config': the config (JSON-able), 'generator': raw weights,
     'ema': {'decay', 'num_updates', 'shadow': EMA weights in state_dict layout},
     'converted_from': {'generator_file', 'ema_file'}}
It carries the config, so rendering needs no --config. It has no discriminator or optimiser
states, so training cannot resume from it. With --plain the output is instead a plain
state_dict of the EMA weights (like our generator_ema.pth), which needs --config when used.
The pickled ema.pth is read through the allow-listed loader in checkpoints.released.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import sys

import configs
from checkpoints.checkpoint import FORMAT as CHECKPOINT_FORMAT
from checkpoints.checkpoint import is_checkpoint
from checkpoints.conversion import convert, strip_training_checkpoint
from checkpoints.loading import read_weight_file
from utils import cli
from utils.files import atomic_torch_save


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return cli.run_script(run, args)


def run(args):
    payload = read_weight_file(args.generator_file)
    if is_checkpoint(payload):
        converted = strip_training_checkpoint(payload, args.plain)
    else:
        converted = convert(args.generator_file, args.config, args.ema_file, args.plain)
    atomic_torch_save(converted, args.output)
    kind = 'plain EMA state_dict' if args.plain else f'{CHECKPOINT_FORMAT} (generator + EMA + config)'
    print(f'wrote {args.output}: {kind}')


if __name__ == '__main__':
    sys.exit(main())
