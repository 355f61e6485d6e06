"""Train GRAM (docs/design.md §6).

Launch commands:

    # CPU, or one GPU (on a box with several GPUs this spawns one process per visible GPU;
    # choose them with CUDA_VISIBLE_DEVICES=0,1 and the rendezvous port with --port, or train
    # on one of them alone with --device cuda:N):
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
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import json
import os
import sys

import configs
from checkpoints.checkpoint import CHECKPOINT_FOLDER, config_to_json, is_readable_checkpoint, list_checkpoints
from training import TrainingInterrupted, is_power_of_two, training_loop
from utils import cli, distributed
from utils.device import resolve_device
from utils.files import check_writable_folder

DEFAULT_PORT = 12355  # rendezvous port when `python train.py` spawns one process per GPU (released default)


def parse_args(argv=None):
    parser = cli.ArgumentParser(description='Train GRAM. Launch commands: see the top of train.py.')
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
                       help='resume from the newest complete checkpoint in this run folder (or from this '
                            'step_*.pt file)')
    group.add_argument('--set_step', type=int, default=None, help='override the step counter after resuming (>= 0)')
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
    cli.add_device_argument(group)
    group.add_argument('--seed', type=int, default=0, help='base seed; rank r draws from seed * world + r (default: %(default)s)')
    group.add_argument('--num_workers', type=int, default=None,
                       help='DataLoader worker processes (default: 0 for small datasets, else up to 4)')
    group.add_argument('--port', type=int, default=DEFAULT_PORT,
                       help='rendezvous port when spawning one process per GPU; torchrun sets its own (default: %(default)s)')
    group.add_argument('--timeout_minutes', type=float, default=distributed.DEFAULT_TIMEOUT_MINUTES,
                       help='multi-process runs: stop with an error naming the rank when the other ranks do not '
                            'answer a collective within this many minutes (default: %(default)s)')
    group = parser.add_argument_group('checks')
    group.add_argument('--dry_run', action='store_true', help='print the resolved config and exit')
    return parser.parse_args(argv)


def resolve_settings(args):
    """Config with overrides, checked settings, device and precision; raises one-line errors."""
    config = configs.apply_overrides(configs.get_config(args.config), args.set)
    configs.validate(config)
    if args.patch_split is not None and not is_power_of_two(args.patch_split):
        raise ValueError(f"--patch_split must be a power of 2 (1, 2, 4, 8, ...), got {args.patch_split}")
    batch_size, batch_split = config['global']['batch_size'], config['process']['batch_split']
    if batch_split < 1 or batch_size % batch_split != 0:
        raise ValueError(f"global.batch_size={batch_size} is not divisible by process.batch_split={batch_split}; "
                         f"change one of them with --set")
    for flag in ('n_epochs', 'sample_interval', 'model_save_interval', 'log_interval', 'max_steps'):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    for flag in ('set_step', 'num_workers'):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise ValueError(f"--{flag} must be at least 0, got {getattr(args, flag)}")
    if args.set_step is not None and args.load_dir is None:
        raise ValueError('--set_step overrides the step counter of a resumed run; add --load_dir <run folder>')
    if not 0 < args.timeout_minutes < float('inf'):
        raise ValueError(f"--timeout_minutes must be a positive number, got {args.timeout_minutes}")
    device = resolve_device(args.device)
    ranks = int(os.environ.get('WORLD_SIZE', '1'))
    if device.type == 'cuda' and device.index is not None and ranks > 1:
        raise ValueError(f"--device {device} names one GPU, but {ranks} ranks run; use --device cuda "
                         f"(each rank takes cuda:LOCAL_RANK)")
    precision = args.precision
    if precision == 'auto':
        precision = 'fp16' if device.type == 'cuda' else 'fp32'
    load_run = run_folder_of(args.load_dir) if args.load_dir is not None else None
    if args.load_dir is not None and load_run is None and args.output_dir is None:
        raise ValueError(f"'{args.load_dir}' is not in a run's {CHECKPOINT_FOLDER}/ folder, so it names no run to "
                         f"continue; add --output_dir <run folder>")
    output_dir = args.output_dir or load_run or os.path.join('runs', args.config)
    check_writable_folder(output_dir)
    saved = list_checkpoints(os.path.join(output_dir, CHECKPOINT_FOLDER))
    resuming_here = load_run is not None and os.path.abspath(output_dir) == load_run
    if saved and not resuming_here:
        raise ValueError(f"'{output_dir}' already holds checkpoints of a run; resume it with --load_dir {output_dir}, "
                         f"or choose another --output_dir")
    loaded_step = {os.path.abspath(path): step for step, path in saved}.get(os.path.abspath(args.load_dir or ''))
    if resuming_here and loaded_step is not None:
        newest_readable = next((path for step, path in reversed(saved)
                                if step > loaded_step and is_readable_checkpoint(path)), None)
        if newest_readable is not None:
            raise ValueError(f"'{args.load_dir}' is older than the newest checkpoint of its run ({newest_readable}); "
                             f"continuing the run from it would mix two histories: add --output_dir <new run folder>")
    return config, device, precision, output_dir


def run_folder_of(load_dir):
    """Absolute path of the run that --load_dir names: a run folder, its checkpoints/ folder or a
    checkpoint file in that; None for a checkpoint file anywhere else."""
    path = os.path.abspath(load_dir)
    folder = os.path.dirname(path) if os.path.isfile(path) else path
    if os.path.basename(folder) == CHECKPOINT_FOLDER:
        return os.path.dirname(folder)
    return None if os.path.isfile(path) else path


def run(args, config, device, precision, output_dir, options):
    """One training process (rank from the environment); returns an exit code."""
    device = distributed.init(device, args.timeout_minutes)
    try:
        training_loop(
            config, output_dir, device,
            data_dir=args.data_dir, load_dir=args.load_dir, set_step=args.set_step,
            patch_split=args.patch_split, n_epochs=args.n_epochs, max_steps=args.max_steps,
            sample_interval=args.sample_interval, model_save_interval=args.model_save_interval,
            log_interval=args.log_interval, seed=args.seed, precision=precision,
            num_workers=args.num_workers, run_options=options)
    except (cli.UserError, OSError) as error:  # every rank reports its own (a bad image reaches one rank only)
        where = f' (rank {distributed.get_rank()})' if distributed.get_world_size() > 1 else ''
        print(f"error{where}: {cli.one_line(error)}", file=sys.stderr, flush=True)
        return cli.EXIT_ERROR
    except TrainingInterrupted as interruption:
        distributed.print0(f"{interruption} {output_dir}", file=sys.stderr)
        return cli.EXIT_SIGNAL_BASE + interruption.signal_number
    finally:
        distributed.cleanup()
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        config, device, precision, output_dir = resolve_settings(args)
    except (KeyError, ValueError, TypeError, OSError) as error:
        print(f"error: {cli.one_line(error)}", file=sys.stderr)
        return cli.EXIT_ERROR

    # Print and save the resolved settings (once, not per rank).
    is_first_process = os.environ.get('RANK', '0') == '0'
    options = {**vars(args), 'output_dir': output_dir, 'precision': precision, 'device': str(device)}
    if is_first_process:
        print(json.dumps({'config_name': args.config, 'options': options, 'config': config_to_json(config)},
                         indent=2))
    if args.dry_run:
        return 0

    # Train (one process per GPU when spawned, else this process). config.json and args.json are
    # written once the data and any checkpoint have passed their checks.
    return distributed.launch(run, device, args.port, args, config, device, precision, output_dir, options)


if __name__ == '__main__':
    sys.exit(main())
