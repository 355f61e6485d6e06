"""Inversion quality on held-out cars of the built-in synthetic dataset (docs/inversion.md, "Photos").

Renders cars the demo model never saw (datasets/synthetic.py with another seed, at the demo data's
64 px, cameras from the config's pose range), writes each as a PNG, inverts it as invert.py does
(load_target + inversion.optimize.invert), and compares with the ray-cast truth: the camera error
(per angle, the larger of |dphi| and |dtheta|), the PSNR at the model's resolution, and the median
relative depth error over the true object mask (both depths are distances along the ray; pixels
the model leaves empty count as wrong).

    python benchmarks/inversion_quality.py                                   # shipped model, 24 cars
    python benchmarks/inversion_quality.py --num_cars 12 --finetune_steps 100
    python benchmarks/inversion_quality.py --generator_file runs/demo/synthetic_demo.pt --true_pose
"""
import argparse
import math
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import utils.openmp  # noqa: E402, F401, I001  (before torch: OMP_WAIT_POLICY)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from checkpoints.loading import load_generator  # noqa: E402
from datasets import synthetic  # noqa: E402
from datasets.poses import transform_matrix_to_camera_pos  # noqa: E402
from inversion import optimize  # noqa: E402
from inversion.images import load_target  # noqa: E402
from inversion.losses import psnr  # noqa: E402
from inversion.rendering import render  # noqa: E402

HELD_OUT_DATA_SEED = 777  # the demo data used seed 0
DATA_SIZE = 64            # the demo data's image size
CAMERA_MISS_DEG = 5.0     # a camera off by more than this is counted
DEPTH_MISS = 0.03         # a median relative depth error above this is counted


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--generator_file', default=os.path.join(ROOT, 'demo', 'synthetic_demo.pt'),
                        help='a SYNTHETIC_demo generator')
    parser.add_argument('--num_cars', type=int, default=24, help='held-out cars 0..N-1')
    parser.add_argument('--steps', type=int, default=optimize.DEFAULT_STEPS, help='fit steps (invert.py --steps)')
    parser.add_argument('--pose_starts', type=int, default=optimize.DEFAULT_POSE_STARTS,
                        help='pose-search starts (invert.py --pose_starts)')
    parser.add_argument('--finetune_steps', type=int, default=0, help='pivotal tuning steps (invert.py --finetune_steps)')
    parser.add_argument('--true_pose', action='store_true', help='give the true camera and keep it (invert.py --pose)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s)')
    args = parser.parse_args(argv)
    if args.num_cars < 1 or args.steps < 1 or args.pose_starts < 1 or args.finetune_steps < 0:
        parser.error('--num_cars, --steps and --pose_starts must be >= 1, --finetune_steps >= 0')
    return args


def held_out_car(index, poses, directory):
    """Write car `index` as a DATA_SIZE PNG; return (path, true camera_pos [2] (phi, theta), true depth
    [N, N] and mask [N, N] at the model's size N = 32)."""
    rgb, _, _, extrinsics = synthetic.render_example(index, HELD_OUT_DATA_SEED, DATA_SIZE, poses)
    _, depth, mask, _ = synthetic.render_example(index, HELD_OUT_DATA_SEED, 32, poses)
    path = os.path.join(directory, f'{index:06d}.png')
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(path)
    return path, np.asarray(transform_matrix_to_camera_pos(extrinsics), dtype=np.float64), depth, mask


def median_depth_error(depth, true_depth, mask):
    """Median over the mask of |depth - true| / true; non-finite (empty) pixels count as infinite."""
    depth = depth[mask]
    error = np.where(np.isfinite(depth), np.abs(depth - true_depth[mask]) / true_depth[mask], np.inf)
    return float(np.median(error))


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    generator, config = load_generator(args.generator_file, None, 'cpu', use_ema=True)
    if generator.img_size != 32:
        raise SystemExit(f'error: {args.generator_file} renders at {generator.img_size} px; this benchmark '
                         f'compares with the synthetic truth at 32 px (a SYNTHETIC_demo model)')
    camera = dict(config['camera'])
    poses = synthetic.poses_from_config(config)
    settings = optimize.Settings(steps=args.steps, pose_starts=args.pose_starts, finetune_steps=args.finetune_steps)
    rows = []
    print(f"{'car':>3} | {'camera err deg':>14} | {'PSNR dB':>7} | {'depth err %':>11} | {'time s':>6}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        for index in range(args.num_cars):
            path, true_pos, true_depth, mask = held_out_car(index, poses, directory)
            target, _ = load_target(path, config)
            start = time.perf_counter()
            result = optimize.invert(generator, camera, target, settings,
                                     pose=tuple(true_pos) if args.true_pose else None,
                                     optimize_pose=not args.true_pose, progress=False)
            seconds = time.perf_counter() - start
            tuned = result.generator if result.generator is not None else generator
            with torch.no_grad():
                image, depth, _ = render(tuned, result.frequencies, result.phase_shifts, result.camera_pos, camera,
                                         with_depth=True)
            camera_error = math.degrees(float(np.abs(result.camera_pos[0].double().numpy() - true_pos).max()))
            row = (camera_error, float(psnr(image, target)), median_depth_error(depth[0].numpy(), true_depth, mask),
                   seconds)
            rows.append(row)
            print(f'{index:3d} | {row[0]:14.2f} | {row[1]:7.2f} | {100 * row[2]:11.2f} | {row[3]:6.1f}', flush=True)
    camera_errors, psnrs, depth_errors, times = (np.array(column) for column in zip(*rows))
    n = len(rows)
    print(f'\n{n} held-out cars (seed {HELD_OUT_DATA_SEED}, {DATA_SIZE} px), {args.generator_file}, '
          f'{torch.get_num_threads()} threads')
    print('| camera error mean (max) | > 5° | PSNR mean (min) | depth error mean (max) | > 3% | time |')
    print(f'| {camera_errors.mean():.1f}° ({camera_errors.max():.1f}°) | {int((camera_errors > CAMERA_MISS_DEG).sum())} of {n} '
          f'| {psnrs.mean():.1f} ({psnrs.min():.1f}) dB | {100 * depth_errors.mean():.2f}% ({100 * depth_errors.max():.2f}%) '
          f'| {int((depth_errors > DEPTH_MISS).sum())} of {n} | {times.mean():.1f} s |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
