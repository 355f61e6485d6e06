"""Invert an image into the generator: FiLM parameters + camera (+ optional pivotal tuning).

    python invert.py --generator_file demo/synthetic_demo.pt --image car.png --output_dir outputs/inversion
    python invert.py --generator_file released/generator.pth --config FFHQ_default --image raw.png \
        --landmarks raw.txt --output_dir inv --finetune_steps 100
    python render_multiview_images.py --generator_file demo/synthetic_demo.pt --latent outputs/inversion/inversion.pt

The image must be aligned like the training data (any size; resized to the model's resolution;
transparency composited onto the config's background, white for white_back configs); for FFHQ and
Cats configs, --landmarks FILE (lm5p/<name>.txt, <name>.jpg.cat formats) aligns a raw photo as
preprocess_dataset.py does. How it works and measured numbers: docs/inversion.md.

Camera: without --pose it is searched on a grid over the config's pose distribution and then
optimised; --pose PHI,THETA (radians, docs/design.md §1.1) fixes it, or, with --optimize_pose,
starts the optimisation there.

Writes to --output_dir (each file atomically; inversion.pt last):
  inversion.pt        frequencies [1, 9H], phase_shifts [1, 9H], camera_pos [1, 2], config, loss
                      curves, and the fine-tuned generator state_dict when --finetune_steps > 0
  reconstruction.png  the render at the recovered camera, same size as the input (rendered at most
                      512 px, then resized)
  comparison.png      input | reconstruction | depth (near = bright)
  views.png           input | reconstruction | 3 novel views (yaw -30, yaw +30, 15 degrees higher) | depth
  metrics.json        psnr (dB, 8 bit) and ssim at the model's resolution, camera_pos, steps, wall time
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from skimage.metrics import structural_similarity
from tqdm import tqdm

from checkpoints.loading import add_generator_arguments, load_generator
from inversion import optimize
from inversion.images import load_target
from inversion.rendering import render
from inversion.storage import inversion_payload, save_inversion
from utils import cli
from utils.device import resolve_device
from utils.files import atomic_write_text, check_writable_folder
from utils.images import to_uint8, write_png

PIXEL_MAX = 255.0
DEPTH_LEVELS = 255             # depth tiles: nearest object depth -> 255
OPAQUE = 0.5                   # pixels with more compositing weight than this show the object
MAX_RENDER_SIZE = 512          # pictures are rendered at most this big, then resized to the input's size
# Novel views of views.png: (phi offset, theta offset) from the recovered camera, radians.
NOVEL_VIEW_OFFSETS = ((0.0, -math.radians(30)), (0.0, math.radians(30)), (-math.radians(15), 0.0))
OUTPUT_FILES = ('inversion.pt', 'reconstruction.png', 'comparison.png', 'views.png', 'metrics.json')


def parse_pose(text):
    """'PHI,THETA' in radians -> (phi, theta); ValueError (one line) otherwise."""
    parts = text.split(',')
    try:
        phi, theta = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"--pose '{text}' must be two numbers PHI,THETA in radians, e.g. 1.047,1.571") from None
    if not (math.isfinite(phi) and math.isfinite(theta)) or not 0 < phi < math.pi:
        raise ValueError(f"--pose '{text}': phi must lie in (0, pi) and both angles be finite (radians)")
    return phi, theta


def check_output_dir(path):
    """Refuse an output folder that cannot hold the outputs (one line), before any long work."""
    check_writable_folder(path)
    for name in OUTPUT_FILES:
        if os.path.isdir(os.path.join(path, name)):
            raise ValueError(f"'{os.path.join(path, name)}' is a folder; remove it or choose another --output_dir")


def depth_tile(depth, opacity):
    """depth, opacity [N, N] -> uint8 [N, N, 3]: near = bright over the object, black elsewhere."""
    depth, opacity = depth.double(), opacity.double()
    solid = (opacity > OPAQUE) & torch.isfinite(depth)
    tile = torch.zeros_like(depth)
    if solid.any():
        near, far = depth[solid].min(), depth[solid].max()
        tile[solid] = (far - depth[solid]) / max(float(far - near), 1e-12) * 0.8 + 0.2  # objects never black
    pixels = (tile.clamp(0, 1) * DEPTH_LEVELS).round().to(torch.uint8).numpy()
    return np.repeat(pixels[..., None], 3, axis=-1)


def resized(pixels, size):
    """uint8 [n, n, 3] -> [size, size, 3] (Lanczos; unchanged when already that size)."""
    if pixels.shape[0] == size:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.LANCZOS))


def image_metrics(image, target):
    """PSNR (dB, 8 bit) and SSIM (scikit-image) of image vs target [1, 3, N, N] in [-1, 1]."""
    a, b = to_uint8(image[0], rounding='round'), to_uint8(target[0], rounding='round')
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    psnr = float('inf') if mse == 0 else 10 * math.log10(PIXEL_MAX ** 2 / mse)
    return psnr, float(structural_similarity(a, b, channel_axis=-1, data_range=PIXEL_MAX))


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_arguments(parser)
    parser.add_argument('--image', required=True, help='the aligned image to invert (PNG / JPEG, any size)')
    parser.add_argument('--landmarks', default=None,
                        help='FFHQ / Cats configs: landmark file of a raw photo (aligned as preprocess_dataset.py)')
    parser.add_argument('--output_dir', required=True, help='folder for the outputs (created if needed)')
    parser.add_argument('--steps', type=int, default=optimize.DEFAULT_STEPS, help='latent + camera steps (>= 1)')
    parser.add_argument('--pose', default=None,
                        help='known camera PHI,THETA in radians (fixed unless --optimize_pose)')
    parser.add_argument('--optimize_pose', action='store_true', default=None,
                        help='optimise the camera (the default without --pose; with --pose, start there)')
    parser.add_argument('--pose_starts', type=int, default=optimize.DEFAULT_POSE_STARTS,
                        help='cameras of the pose search refined before the best is kept (>= 1; without --pose)')
    parser.add_argument('--finetune_steps', type=int, default=0,
                        help='pivotal-tuning steps of the generator after the fit (0 = off)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random parts (pivotal tuning regulariser)')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def run(args):
    """Invert args.image; returns 0 after writing the outputs."""
    started = time.time()
    for name, minimum in (('steps', 1), ('pose_starts', 1), ('finetune_steps', 0)):
        if getattr(args, name) < minimum:
            raise ValueError(f'--{name} must be >= {minimum}, got {getattr(args, name)}')
    pose = parse_pose(args.pose) if args.pose is not None else None
    check_output_dir(args.output_dir)
    device = resolve_device(args.device)

    # Model and image.
    generator, config = load_generator(args.generator_file, args.config, device, use_ema=True, log=tqdm.write)
    target, input_pixels = load_target(args.image, config, args.landmarks)
    target = target.to(device)
    camera = {key: config['camera'][key] for key in ('fov', 'ray_start', 'ray_end')}
    settings = optimize.Settings(steps=args.steps, pose_starts=args.pose_starts, finetune_steps=args.finetune_steps,
                                 seed=args.seed)
    tqdm.write(f'inverting {args.image} ({input_pixels.shape[1]} px -> {generator.img_size} px) on {device}')

    # Fit.
    result = optimize.invert(generator, camera, target, settings, pose=pose,
                             optimize_pose=bool(args.optimize_pose) or pose is None)
    renderer = result.generator or generator
    size = input_pixels.shape[0]
    render_size = min(size, MAX_RENDER_SIZE)
    with torch.no_grad():
        model_view = render(renderer, result.frequencies, result.phase_shifts, result.camera_pos, camera)
        view, depth, opacity = render(renderer, result.frequencies, result.phase_shifts, result.camera_pos, camera,
                                      render_size, with_depth=True)
        novel = [render(renderer, result.frequencies, result.phase_shifts,
                        result.camera_pos + torch.tensor([offset], device=device), camera, render_size)
                 for offset in NOVEL_VIEW_OFFSETS]
    psnr, ssim = image_metrics(model_view, target)
    reconstruction = resized(to_uint8(view[0], rounding='round'), size)
    depth_pixels = resized(depth_tile(depth[0].cpu(), opacity[0].cpu()), size)
    novel_pixels = [resized(to_uint8(image[0], rounding='round'), size) for image in novel]
    phi, theta = result.camera_pos[0].tolist()
    metrics = {
        'psnr': psnr, 'ssim': ssim, 'resolution': generator.img_size,
        'camera_pos': [phi, theta], 'camera_pos_degrees': [math.degrees(phi), math.degrees(theta)],
        'start_cameras': result.starts.tolist(), 'optimize_pose': bool(args.optimize_pose) or pose is None,
        'steps': args.steps, 'start_steps': settings.start_steps if len(result.starts) > 1 else 0,
        'finetune_steps': args.finetune_steps, 'seed': args.seed, 'final_loss': result.losses[-1],
        'wall_time_s': time.time() - started, 'device': str(device),
    }

    # Write (inversion.pt last: it marks a finished inversion).
    paths = {name: os.path.join(args.output_dir, name) for name in OUTPUT_FILES}
    write_png(reconstruction, paths['reconstruction.png'])
    write_png(np.concatenate([input_pixels, reconstruction, depth_pixels], axis=1), paths['comparison.png'])
    write_png(np.concatenate([input_pixels, reconstruction, *novel_pixels, depth_pixels], axis=1), paths['views.png'])
    atomic_write_text(json.dumps(metrics, indent=2) + '\n', paths['metrics.json'])
    save_inversion(inversion_payload(result, config), paths['inversion.pt'])
    tqdm.write(f"PSNR {psnr:.2f} dB, SSIM {ssim:.3f}, camera (phi, theta) = ({phi:.4f}, {theta:.4f}) rad "
               f"in {metrics['wall_time_s']:.0f} s -> {args.output_dir}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    return cli.run_script(run, args)


if __name__ == '__main__':
    sys.exit(main())
