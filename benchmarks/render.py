"""Render benchmark: our renderer vs the dense radiance workload, measured in one run.

    python benchmarks/render.py                  # 128 and 256 px, FFHQ_default, seeded weights
    python benchmarks/render.py --sizes 128 256 512 --compile
    python benchmarks/render.py --device cuda --sizes 128 256 512   # render times and GPU memory only

For each size, a fresh subprocess renders one image (after a warm-up at 64 px) and reports wall
time, peak RSS (and its increase over the idle model) and the fraction of ray x manifold slots
skipped as invalid. Two references, each in its own fresh subprocess:
- dense: the radiance network's cost when every ray x manifold is evaluated, written as stated
  (9 chained in-place sin(x @ W) steps, x [N, 256] whole, W [256, 256], N = pixels x 24);
- dense chunked: the same work in blocks of DENSE_CHUNK_ROWS rows, which keeps the activations
  cache-sized and is this CPU's fastest way to run it (a stricter yardstick).

On a GPU (--device cuda) only the render is measured (the references are CPU yardsticks) and the
memory columns are the CUDA allocator's peak.

Render and reference runs alternate --repeats times. A ratio divides the fastest render by the
fastest reference run (the least disturbed run of each on a shared machine); the pairs column
gives the range of the per-pair ratios render i / dense i, measured side by side.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import configs  # noqa: E402
from generators import build_generator  # noqa: E402
from generators.renderer import CPU_CHUNK_RAYS, chunk_rays_for  # noqa: E402

DENSE_WIDTH = 256
DENSE_LAYERS = 9
DENSE_CHUNK_ROWS = 3072  # fastest of 1536-98304 rows on this 2-core AVX2 CPU (3.0 s vs 4.8 s at 128 px)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return peak_rss_mb()


def measure_render(size, chunk_rays, compile_network, device):
    """Render one FFHQ_default image at `size` px on `device`; returns a dict of measurements."""
    config = configs.get_config('FFHQ_default')
    torch.manual_seed(0)
    generator = build_generator(config).to(device).eval()
    if compile_network:
        generator.representation.rf_network.forward_with_frequencies_phase_shifts = torch.compile(
            generator.representation.rf_network.forward_with_frequencies_phase_shifts, dynamic=True)
    z = torch.randn(1, generator.z_dim).to(device)
    camera = config['camera']
    frontal = [0.0, 0.0, 1.0]
    with torch.no_grad():
        generator(z, **camera, img_size=64, camera_origin=frontal, chunk_rays=chunk_rays)  # warm-up
        idle_mb = peak_memory_mb(device)
        start = time.perf_counter()
        _, _, detail = generator.experiment(z, **camera, img_size=size, camera_origin=frontal, chunk_rays=chunk_rays)
        peak_mb = peak_memory_mb(device)  # synchronises a GPU first
        seconds = time.perf_counter() - start
    return {'seconds': seconds, 'peak_rss_mb': peak_mb, 'idle_rss_mb': idle_mb,
            'skipped_fraction': 1 - detail['validity'].mean().item()}


def measure_dense(size, chunk_rows=None):
    """Time the dense workload for `size` x `size` pixels x 24 manifolds, in blocks of
    `chunk_rows` rows (None: the whole [N, 256] at once)."""
    torch.manual_seed(0)
    rows = size * size * 24
    chunk_rows = chunk_rows or rows
    weight = torch.randn(DENSE_WIDTH, DENSE_WIDTH) / DENSE_WIDTH ** 0.5
    block = torch.randn(min(rows, chunk_rows), DENSE_WIDTH)
    torch.sin(block[:DENSE_CHUNK_ROWS] @ weight)  # warm-up
    start = time.perf_counter()
    for first in range(0, rows, chunk_rows):
        x = block[:min(chunk_rows, rows - first)]
        for _ in range(DENSE_LAYERS):
            x = (x @ weight).sin_()
    return time.perf_counter() - start


def run_worker(args):
    torch.set_num_threads(args.threads)
    if args.worker == 'render':
        result = measure_render(args.size, args.chunk_rays, args.compile, torch.device(args.device))
    elif args.worker == 'dense':
        result = {'seconds': measure_dense(args.size)}
    else:
        result = {'seconds': measure_dense(args.size, DENSE_CHUNK_ROWS)}
    print(json.dumps(result))


def spawn(kind, size, args):
    command = [sys.executable, os.path.abspath(__file__), '--worker', kind, '--size', str(size),
               '--threads', str(args.threads), '--chunk_rays', str(args.chunk_rays), '--device', args.device]
    if args.compile:
        command.append('--compile')
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[128, 256], help='image sizes to render')
    parser.add_argument('--threads', type=int, default=2, help='torch threads (this machine has 2 cores)')
    parser.add_argument('--chunk_rays', type=int, default=None,
                        help=f'rays per render chunk (default: the device\'s, {CPU_CHUNK_RAYS} on a CPU)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the radiance network')
    parser.add_argument('--repeats', type=int, default=3, help='alternating render / dense runs per size')
    parser.add_argument('--device', default='cpu', help='cpu | cuda | cuda:N | mps')
    parser.add_argument('--worker', choices=['render', 'dense', 'dense_chunked'], help=argparse.SUPPRESS)
    parser.add_argument('--size', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.chunk_rays = chunk_rays_for(args.device, args.chunk_rays)
    if args.worker:
        run_worker(args)
        return
    print(f'FFHQ_default, seeded weights, frontal camera, {args.device}, {args.threads} threads, '
          f'chunk {args.chunk_rays} rays{", compiled" if args.compile else ""}')
    if args.repeats < 1:
        parser.error(f'--repeats must be at least 1, got {args.repeats}')
    if args.device != 'cpu':
        print(f'{"size":>5} {"render s":>9} {"peak MB":>8} {"+model MB":>9} {"skipped":>8}')
        for size in args.sizes:
            renders = [spawn('render', size, args) for _ in tqdm(range(args.repeats), desc=f'{size} px', leave=False)]
            best = min(run['seconds'] for run in renders)
            growth = max(run['peak_rss_mb'] - run['idle_rss_mb'] for run in renders)
            print(f'{size:>5} {best:>9.3f} {renders[0]["peak_rss_mb"]:>8.0f} {growth:>9.0f} '
                  f'{renders[0]["skipped_fraction"]:>8.1%}')
        return
    print(f'{"size":>5} {"render s":>9} {"dense s":>8} {"ratio":>6} {"pairs":>11} {"chunked s":>10} '
          f'{"ratio":>6} {"peak MB":>8} {"+model MB":>9} {"skipped":>8}')
    for size in args.sizes:
        renders, denses, chunked = [], [], []
        for _ in tqdm(range(args.repeats), desc=f'{size} px', leave=False):
            renders.append(spawn('render', size, args))
            denses.append(spawn('dense', size, args))
            chunked.append(spawn('dense_chunked', size, args))
        render_best = min(run['seconds'] for run in renders)
        dense_best = min(run['seconds'] for run in denses)
        chunked_best = min(run['seconds'] for run in chunked)
        pairs = [r['seconds'] / d['seconds'] for r, d in zip(renders, denses)]
        peak = max(run['peak_rss_mb'] for run in renders)
        growth = max(run['peak_rss_mb'] - run['idle_rss_mb'] for run in renders)
        print(f'{size:>5} {render_best:>9.2f} {dense_best:>8.2f} {render_best / dense_best:>6.2f} '
              f'{min(pairs):>5.2f}-{max(pairs):<5.2f} {chunked_best:>10.2f} {render_best / chunked_best:>6.2f} '
              f'{peak:>8.0f} {growth:>9.0f} {renders[0]["skipped_fraction"]:>8.1%}')


if __name__ == '__main__':
    main()
