"""Why is a training run's discriminator winning? Its scores on training images, on held-out images of
the same kind, and on images of the run's (raw) generator, from one training checkpoint.

    python -m tools.discriminator_check --load_dir runs/demo --heldout_dir data/heldout_cars
    python -m tools.discriminator_check --load_dir runs/demo/checkpoints/step_0006000.pt \\
        --heldout_dir data/heldout_cars --num_images 512

--heldout_dir holds images the run never trained on, preprocessed like its data (for the built-in
cars: preprocess_dataset.py --cate synthetic with another --seed). For each side it prints the mean
and spread of D's logit, the share of positive logits (StyleGAN2-ADA's overfitting heuristic
E[sign D]) and the loss term that training sees (softplus(-D) for real images, softplus(D) for
generated ones). Then one reading:
- training images scoring clearly above held-out ones: D remembers its training set (overfitting:
  more images, or stronger R1);
- both real sides scoring alike while both loss terms are small: D wins without remembering, so the
  generator fell behind (look at the raw snapshots for one object drawn for every latent);
- otherwise: balanced.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import copy
import os

import torch
import torch.nn.functional as F
from tqdm import tqdm

from checkpoints.checkpoint import find_latest_checkpoint
from checkpoints.loading import config_from_checkpoint
from datasets import build_dataset
from discriminators import build_discriminator
from generators import build_generator
from utils import cli
from utils.device import resolve_device

# Readings (named once; see the module docstring).
REMEMBERED_SHARE = 0.25   # overfitting: training - held-out logit gap >= this share of real - generated gap
WINNING_LOSS = 0.1        # D wins: both its loss terms (real and generated) below this (balanced: ~0.6)


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--load_dir', required=True,
                        help='run folder (its newest checkpoint), its checkpoints/ folder, or one step_*.pt file')
    parser.add_argument('--heldout_dir', required=True,
                        help='images the run did not train on, preprocessed like its data')
    parser.add_argument('--data_dir', default=None,
                        help="the run's training images (default: the checkpoint config's dataset_path)")
    parser.add_argument('--num_images', type=int, default=256, help='images per side (default: %(default)s)')
    parser.add_argument('--batch_size', type=int, default=32, help='images scored at once (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the generated side (default: %(default)s)')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


@torch.no_grad()
def real_logits(discriminator, dataset, num_images, batch_size, device, desc):
    """D's logits [num_images] on the dataset's first num_images images (as training reads them, unflipped)."""
    logits = []
    for start in tqdm(range(0, num_images, batch_size), desc=desc, unit='batch'):
        images = torch.stack([dataset.load_image(index) for index in range(start, min(start + batch_size, num_images))])
        logits.append(discriminator(images.to(device))[0].flatten().float().cpu())
    return torch.cat(logits)


@torch.no_grad()
def generated_logits(discriminator, generator, config, num_images, batch_size, seed, device):
    """D's logits [num_images] on images of `generator` (psi 1, poses from its training distribution)."""
    camera = config['camera']
    torch.manual_seed(seed)  # the generator draws its poses from torch's global generator
    logits = []
    for start in tqdm(range(0, num_images, batch_size), desc='generated', unit='batch'):
        z = torch.randn(min(batch_size, num_images - start), generator.z_dim, device=device)
        images, _ = generator(z, camera['fov'], camera['ray_start'], camera['ray_end'],
                              img_size=config['global']['img_size'])
        logits.append(discriminator(images)[0].flatten().float().cpu())
    return torch.cat(logits)


def side_summary(logits, real):
    """Mean and std of the logits, share > 0, and the training loss term of this side."""
    loss = F.softplus(-logits) if real else F.softplus(logits)
    return {'logit_mean': logits.mean().item(), 'logit_std': logits.std().item(),
            'positive_share': (logits > 0).float().mean().item(), 'loss': loss.mean().item()}


def reading(summary):
    """One line saying what the scores mean (module docstring)."""
    train, heldout, fake = summary['training'], summary['heldout'], summary['generated']
    separation = train['logit_mean'] - fake['logit_mean']
    remembered = train['logit_mean'] - heldout['logit_mean']
    if separation > 0 and remembered >= REMEMBERED_SHARE * separation:
        return (f"overfitting: training images score {remembered:.2f} above held-out ones "
                f"({remembered / separation:.0%} of the real - generated gap); more images or a stronger R1")
    if train['loss'] < WINNING_LOSS and fake['loss'] < WINNING_LOSS:
        return ("the discriminator wins without remembering its images (held-out scored like training): "
                "the generator fell behind; check the raw snapshots for one object drawn for every latent")
    return 'balanced: the discriminator neither remembers its images nor wins outright'


def run(args):
    if args.num_images < 2 or args.batch_size < 1:
        raise ValueError('--num_images must be >= 2 and --batch_size >= 1')
    if not os.path.isdir(args.heldout_dir):
        raise ValueError(f"--heldout_dir '{args.heldout_dir}' not found; preprocess images the run did not train on "
                         f"like its data (the built-in cars: preprocess_dataset.py --cate synthetic with another --seed)")
    device = resolve_device(args.device)
    path, state = find_latest_checkpoint(args.load_dir)
    config = config_from_checkpoint(state['config'])
    group = config['discriminator'].get('kwargs', {}).get('minibatch_std_group', 0)
    if group and (args.num_images % group or args.batch_size % group):
        raise ValueError(f"--num_images and --batch_size must be multiples of {group}, the discriminator's "
                         f"minibatch-std group (got {args.num_images} and {args.batch_size})")
    data_config = copy.deepcopy(config)
    data_config['dataset'].setdefault('kwargs', {})['real_pos'] = False  # scores need no poses
    folders = {'training': build_dataset(data_config, args.data_dir),
               'heldout': build_dataset(data_config, args.heldout_dir)}
    for side, dataset in folders.items():
        if len(dataset) < args.num_images:
            raise ValueError(f"the {side} folder '{dataset.root}' has {len(dataset)} images, fewer than "
                             f"--num_images {args.num_images}")
    discriminator = build_discriminator(config).to(device).eval()
    discriminator.load_state_dict(state['discriminator'])
    generator = build_generator(config).to(device).eval()
    generator.load_state_dict(state['generator'])
    print(f"{path} (step {state['step']}), {args.num_images} images per side")

    logits = {side: real_logits(discriminator, dataset, args.num_images, args.batch_size, device, side)
              for side, dataset in folders.items()}
    logits['generated'] = generated_logits(discriminator, generator, config, args.num_images, args.batch_size,
                                           args.seed, device)
    if not all(torch.isfinite(values).all() for values in logits.values()):
        raise ValueError(f"non-finite discriminator scores from '{path}'; the checkpoint holds broken weights")
    summary = {side: side_summary(values, real=side != 'generated') for side, values in logits.items()}
    print(f"{'':<12}{'logit mean':>12}{'std':>8}{'share > 0':>11}{'D loss term':>13}")
    for side, numbers in summary.items():
        print(f"{side:<12}{numbers['logit_mean']:>12.3f}{numbers['logit_std']:>8.3f}"
              f"{numbers['positive_share']:>11.2f}{numbers['loss']:>13.3f}")
    summary['reading'] = reading(summary)
    print(summary['reading'])
    return summary


def main(argv=None):
    return cli.run_script(run, parse_args(argv))


if __name__ == '__main__':
    raise SystemExit(main())
