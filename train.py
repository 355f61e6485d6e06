"""Train GRAM (SPEC §6).

Launch commands:

    # CPU, or one GPU (on a box with several GPUs this spawns one process per visible GPU;
    # choose them with CUDA_VISIBLE_DEVICES=0,1 and the rendezvous port with --port):
    python train.py --config SYNTHETIC_demo --output_dir runs/demo

    # one node, 8 GPUs:
    torchrun --standalone --nproc_per_node=8 train.py --config FFHQ_default --output_dir runs/ffhq

    # several nodes: run on every node, HOST = address of the first node:
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_id=gram --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        train.py --config FFHQ_default --output_dir runs/ffhq

    # resume (newest complete checkpoint in the folder; step, EMAs, optimisers and RNG continue):
    python train.py --config FFHQ_default --output_dir runs/ffhq --load_dir runs/ffhq

    # change config values (typed; unknown keys are refused), show the result without training:
    python train.py --config CARLA_default --set global.batch_size=2 --set process.batch_split=2 --dry_run

Outputs in --output_dir: config.json and args.json (resolved settings), checkpoints/step_*.pt,
generator_ema.pth (EMA generator weights for rendering), snapshots/*_{front,tilted}.png,
stats.jsonl, tensorboard/.
"""
import argparse
import json
import os
import sys

import configs
from datasets import DatasetError
from training import TrainingError, is_power_of_two, training_loop
from utils import distributed
from utils.checkpoint import CheckpointError, config_to_json
from utils.device import resolve_device
from utils.files import atomic_write_text

DEFAULT_PORT = 12355  # rendezvous port when `python train.py` spawns one process per GPU (released default)


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line (no usage dump)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None):
    parser = OneLineParser(description='Train GRAM. Launch commands: see the top of train.py.')
    group = parser.add_argument_group('what to train')
    group.add_argument('--config', required=True, choices=list(configs.CONFIGS), help='named config')
    group.add_argument('--set', action='append', default=[], metavar='KEY.PATH=VALUE',
                       help='override a config value, typed (repeatable), e.g. --set global.batch_size=2')
    group.add_argument('--data_dir', default=None,
                       help="dataset folder (default: the config's dataset.kwargs.dataset_path)")
    group = parser.add_argument_group('where to write, what to resume')
    group.add_argument('--output_dir', default=None,
                       help='run folder (default: --load_dir when resuming, else runs/<config>)')
    group.add_argument('--load_dir', default=None,
                       help='resume from the newest complete checkpoint in this run folder')
    group.add_argument('--set_step', type=int, default=None, help='override the step counter after resuming')
    group = parser.add_argument_group('how long, how often')
    group.add_argument('--n_epochs', type=int, default=3000, help='stop after this many epochs (default: %(default)s)')
    group.add_argument('--max_steps', type=int, default=None, help='stop after this many iterations in total (default: no limit)')
    group.add_argument('--sample_interval', type=int, default=500,
                       help='snapshot grids and a rolling checkpoint every this many steps (default: %(default)s)')
    group.add_argument('--model_save_interval', type=int, default=5000,
                       help='permanent checkpoint every this many steps (default: %(default)s)')
    group.add_argument('--log_interval', type=int, default=50,
                       help='log line, stats.jsonl and TensorBoard scalars every this many steps (default: %(default)s)')
    group = parser.add_argument_group('how')
    group.add_argument('--patch_split', type=int, default=None,
                       help='render and back-propagate fakes in this many patches (power of 2) to save memory (default: whole images)')
    group.add_argument('--precision', default='auto', choices=['auto', 'fp32', 'bf16', 'fp16'],
                       help='autocast precision; auto (default) = fp16 with loss scaling on CUDA, fp32 elsewhere')
    group.add_argument('--device', default='auto', help="'auto' (default: cuda > mps > cpu), 'cpu', 'cuda' or 'mps'")
    group.add_argument('--seed', type=int, default=0, help='base seed; rank r draws from seed * world + r (default: %(default)s)')
    group.add_argument('--num_workers', type=int, default=None,
                       help='DataLoader worker processes (default: 0 for small datasets, else up to 4)')
    group.add_argument('--port', type=int, default=DEFAULT_PORT,
                       help='rendezvous port when spawning one process per GPU; torchrun sets its own (default: %(default)s)')
    group = parser.add_argument_group('checks')
    group.add_argument('--dry_run', action='store_true', help='print the resolved config and exit')
    group.add_argument('--rank_state_dir', default=None,
                       help='debugging: every rank saves its final weights to DIR/rank_<r>.pt')
    return parser.parse_args(argv)


def resolve_settings(args):
    """Config with overrides, checked settings, device and precision; raises one-line errors."""
    config = configs.apply_overrides(configs.get_config(args.config), args.set)
    if args.patch_split is not None and not is_power_of_two(args.patch_split):
        raise ValueError(f"--patch_split must be a power of 2 (1, 2, 4, 8, ...), got {args.patch_split}")
    img_size = config['global']['img_size']
    for section in ('discriminator', 'dataset'):
        if config[section]['kwargs'].get('img_size', img_size) != img_size:
            raise ValueError(f"global.img_size={img_size} but {section}.kwargs.img_size="
                             f"{config[section]['kwargs']['img_size']}; --set them to the same value")
    batch_size, batch_split = config['global']['batch_size'], config['process']['batch_split']
    if batch_split < 1 or batch_size % batch_split != 0:
        raise ValueError(f"global.batch_size={batch_size} is not divisible by process.batch_split={batch_split}; "
                         f"change one of them with --set")
    for flag in ('n_epochs', 'sample_interval', 'model_save_interval', 'log_interval'):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    device = resolve_device(args.device)
    precision = args.precision
    if precision == 'auto':
        precision = 'fp16' if device.type == 'cuda' else 'fp32'
    output_dir = args.output_dir or args.load_dir or os.path.join('runs', args.config)
    return config, device, precision, output_dir


def run(args, config, device, precision, output_dir):
    """One training process (rank from the environment); returns an exit code."""
    device = distributed.init(device)
    try:
        training_loop(
            config, output_dir, device,
            data_dir=args.data_dir, load_dir=args.load_dir, set_step=args.set_step,
            patch_split=args.patch_split, n_epochs=args.n_epochs, max_steps=args.max_steps,
            sample_interval=args.sample_interval, model_save_interval=args.model_save_interval,
            log_interval=args.log_interval, seed=args.seed, precision=precision,
            num_workers=args.num_workers, rank_state_dir=args.rank_state_dir)
    except (DatasetError, CheckpointError, TrainingError) as error:
        distributed.print0(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        distributed.cleanup()
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        config, device, precision, output_dir = resolve_settings(args)
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1

    # Print and save the resolved settings (once, not per rank).
    is_first_process = os.environ.get('RANK', '0') == '0'
    options = {**vars(args), 'output_dir': output_dir, 'precision': precision, 'device': str(device)}
    if is_first_process:
        print(json.dumps({'config_name': args.config, 'options': options, 'config': config_to_json(config)},
                         indent=2))
    if args.dry_run:
        return 0
    if is_first_process:
        atomic_write_text(json.dumps(config_to_json(config), indent=2) + '\n', os.path.join(output_dir, 'config.json'))
        atomic_write_text(json.dumps(options, indent=2) + '\n', os.path.join(output_dir, 'args.json'))

    # Train (one process per GPU when spawned, else this process).
    return distributed.launch(run, device, args.port, args, config, device, precision, output_dir)


if __name__ == '__main__':
    sys.exit(main())
