"""Benchmark one training iteration (D step + G step), with and without --patch_split.

Each setting runs in a fresh subprocess so its peak memory is its own. Reported per setting:
seconds per iteration (median over the timed steps, after warm-up), the peak memory, and the peak
growth during training over the memory after setup (models + optimisers built), which is what
patch_split bounds. On the CPU memory is the process's max RSS (resource.getrusage; torch's
allocations are invisible to tracemalloc); on CUDA it is torch.cuda.max_memory_allocated.

    python benchmarks/train_step.py                       # SYNTHETIC_demo, 128 px, batch 2: none vs 4
    python benchmarks/train_step.py --img_size 64 --patch_splits none,2,4 --steps 5
    python benchmarks/train_step.py --device cuda --config FFHQ_default --img_size 256 --batch_size 8 --precision fp16
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIB = 1024  # ru_maxrss is in KiB on Linux


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--config', default='SYNTHETIC_demo', help='named config (configs.CONFIGS)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY.PATH=VALUE',
                        help='config override, as train.py --set (repeatable)')
    parser.add_argument('--img_size', type=int, default=128, help='training resolution (power of 2)')
    parser.add_argument('--batch_size', type=int, default=2, help='per-process batch')
    parser.add_argument('--patch_splits', default='none,4', help="comma-separated settings; 'none' = whole images")
    parser.add_argument('--steps', type=int, default=3, help='timed iterations per setting')
    parser.add_argument('--warmup', type=int, default=1, help='untimed iterations first')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (more than 1 stalls badly when other processes share the cores)')
    parser.add_argument('--device', default='cpu', help='cpu | cuda | cuda:N | mps')
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'fp16', 'bf16'],
                        help='autocast precision (fp16 adds loss scaling), as train.py --precision')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)  # internal: run one setting
    return parser.parse_args(argv)


def peak_memory_bytes(device):
    """Peak memory so far: the CUDA allocator's on a GPU, else the process's max RSS."""
    import torch
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


def synchronize(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def run_setting(args, patch_split):
    """Build everything, run warm-up + timed iterations; return a dict of measurements."""
    sys.path.insert(0, ROOT)
    import torch

    import configs
    from discriminators import build_discriminator
    from generators import build_generator
    from training.loop import PRECISIONS, build_optimizers, take_optimizer_step
    from training.loss import GramLoss

    torch.set_num_threads(args.threads)
    size = args.img_size
    overrides = [f'global.img_size={size}', f'global.batch_size={args.batch_size}', *args.set]
    config = configs.apply_overrides(configs.get_config(args.config), overrides)
    batch_size = config['global']['batch_size']

    torch.manual_seed(0)
    device = torch.device(args.device)
    generator, discriminator = build_generator(config).to(device), build_discriminator(config).to(device)
    opt = config['optimizer']
    optimizer_G, optimizer_D = build_optimizers(generator, discriminator, opt)
    dtype = PRECISIONS[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss = GramLoss(generator, discriminator, config, scaler,
                    lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32), patch_split)
    real_img = torch.rand(batch_size, 3, size, size, device=device) * 2 - 1
    real_pos = torch.rand(batch_size, 2, device=device) + 1.0
    grad_clip = opt['grad_clip']
    baseline = peak_memory_bytes(device)

    times = []
    for step in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        d_losses = loss.accumulate_discriminator(real_img, real_pos, apply_r1=loss.r1_due(step))
        take_optimizer_step(optimizer_D, list(discriminator.parameters()), d_losses['D'], scaler, grad_clip)
        g_losses = loss.accumulate_generator(batch_size, device)
        take_optimizer_step(optimizer_G, list(generator.parameters()), g_losses['G'], scaler, grad_clip)
        scaler.update()  # once per iteration, as the training loop does
        synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = peak_memory_bytes(device)
    return {'patch_split': patch_split, 'img_size': size, 'batch_size': batch_size,
            'sec_per_iter': statistics.median(times), 'peak_rss_mb': peak / 2 ** 20,
            'training_growth_mb': (peak - baseline) / 2 ** 20}


def main(argv=None):
    args = parse_args(argv)
    if args.worker is not None:
        patch_split = None if args.worker == 'none' else int(args.worker)
        print(json.dumps(run_setting(args, patch_split)))
        return 0

    results = []
    for setting in args.patch_splits.split(','):
        command = [sys.executable, os.path.abspath(__file__), '--worker', setting, '--config', args.config,
                   '--img_size', str(args.img_size), '--steps', str(args.steps), '--warmup', str(args.warmup),
                   '--threads', str(args.threads), '--batch_size', str(args.batch_size),
                   '--device', args.device, '--precision', args.precision,
                   *[f'--set={override}' for override in args.set]]
        print(f"running patch_split={setting} ...", flush=True)
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))

    print(f"\n{args.config} at {args.img_size} px, batch {results[0]['batch_size']}, "
          f"{args.device}, {args.precision}, {args.threads} CPU threads, median of {args.steps} iterations")
    memory = 'peak RSS MB' if args.device == 'cpu' else 'peak GPU MB'
    print(f"{'patch_split':>11} | {'s/iter':>7} | {memory:>11} | {'growth MB':>9}")
    for r in results:
        print(f"{str(r['patch_split']):>11} | {r['sec_per_iter']:7.2f} | {r['peak_rss_mb']:11.0f} | "
              f"{r['training_growth_mb']:9.0f}")
    whole = results[0]
    for r in results[1:]:
        print(f"patch_split={r['patch_split']} vs {whole['patch_split']}: peak memory x{r['peak_rss_mb'] / whole['peak_rss_mb']:.2f}, "
              f"training growth x{r['training_growth_mb'] / max(whole['training_growth_mb'], 1e-9):.2f}, "
              f"time x{r['sec_per_iter'] / whole['sec_per_iter']:.2f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
