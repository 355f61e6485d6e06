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

Writes to --output_dir (each file atomically; an old inversion.pt is removed first and the new one
written last, so its presence marks a complete set):
  inversion.pt        frequencies [1, 9H], phase_shifts [1, 9H], camera_pos [1, 2], config, loss
                      curves, and the fine-tuned generator state_dict when --finetune_steps > 0
  reconstruction.png  the render at the recovered camera, same size as the input (rendered at most
                      512 px, then resized)
  comparison.png      input | reconstruction | depth (near = bright), tiles of the input's size up to 512 px
  views.png           input | reconstruction | 3 novel views (yaw -30, yaw +30, 15 degrees higher) | depth,
                      tiles as comparison.png's
  metrics.json        psnr (dB, 8 bit; null when the render is pixel-identical) and ssim at the model's
                      resolution, camera_pos, settings, final losses, wall time (docs/inversion.md)
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
from generators import cameras
from inversion import optimize
from inversion.images import check_input_files, load_target
from inversion.rendering import render
from inversion.storage import inversion_payload, save_inversion
from utils import cli
from utils.device import resolve_device
from utils.files import atomic_write_text, check_writable_folder
from utils.images import PIXEL_MAX, to_uint8, write_png

DEPTH_LEVELS = 255             # depth tiles: nearest object depth -> 255
DEPTH_FAR_LEVEL = 0.2          # farthest object depth -> this fraction of DEPTH_LEVELS (objects are never black)
MIN_DEPTH_SPAN = 1e-12         # floor of the object's depth range (a flat object is all bright)
OPAQUE = 0.5                   # pixels with more compositing weight than this show the object
# Pictures are rendered at most this big: reconstruction.png is then resized to the input's size, the
# tiles of comparison.png and views.png stay at this size (a larger input is downscaled in them).
MAX_RENDER_SIZE = 512
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
        nearness = (far - depth[solid]) / max(float(far - near), MIN_DEPTH_SPAN)
        tile[solid] = DEPTH_FAR_LEVEL + (1 - DEPTH_FAR_LEVEL) * nearness
    pixels = (tile.clamp(0, 1) * DEPTH_LEVELS).round().to(torch.uint8).numpy()
    return np.repeat(pixels[..., None], 3, axis=-1)


def resized(pixels, size):
    """uint8 [n, n, 3] -> [size, size, 3] (Lanczos, up or down; unchanged when already that size)."""
    if pixels.shape[0] == size:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.LANCZOS))


def novel_camera(camera_pos, offset):
    """camera_pos [1, 2] moved by offset (phi, theta) radians, phi clamped to the range the camera code
    allows ([POLE_EPS, pi - POLE_EPS])."""
    moved = camera_pos + torch.tensor([offset], device=camera_pos.device)
    phi = moved[:, 0].clamp(cameras.POLE_EPS, math.pi - cameras.POLE_EPS)
    return torch.stack([phi, moved[:, 1]], dim=-1)


def image_metrics(image, target):
    """PSNR (dB, 8 bit; inf when identical) and SSIM (scikit-image) of image vs target [1, 3, N, N] in [-1, 1]."""
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
    parser.add_argument('--optimize_pose', action='store_true',
                        help='with --pose: optimise the camera from there (without --pose it is always optimised)')
    parser.add_argument('--pose_starts', type=int, default=optimize.DEFAULT_POSE_STARTS,
                        help='cameras of the pose search refined before the best is kept (>= 1; without --pose)')
    parser.add_argument('--finetune_steps', type=int, default=0,
                        help='pivotal-tuning steps of the generator after the fit (0 = off)')
    parser.add_argument('--seed', type=int, default=0,
                        help="seed of the pivotal-tuning regulariser's subjects and cameras (the only random part)")
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def run(args):
    """Invert args.image; returns 0 after writing the outputs."""
    started = time.time()
    for name, minimum in (('steps', 1), ('pose_starts', 1), ('finetune_steps', 0)):
        if getattr(args, name) < minimum:
            raise ValueError(f'--{name} must be >= {minimum}, got {getattr(args, name)}')
    pose = parse_pose(args.pose) if args.pose is not None else None
    optimize_pose = args.optimize_pose or pose is None
    check_input_files(args.image, args.landmarks)
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
    result = optimize.invert(generator, camera, target, settings, pose=pose, optimize_pose=optimize_pose)
    final_losses = result.losses[-1:] + result.finetune_losses[-1:]
    if not all(math.isfinite(loss) for loss in final_losses):
        raise ValueError(f'the fit diverged (final loss {final_losses}); nothing was written to {args.output_dir}')
    renderer = result.generator if result.generator is not None else generator
    size = input_pixels.shape[0]
    tile_size = min(size, MAX_RENDER_SIZE)  # the render size, and the tiles' of comparison.png and views.png
    with torch.no_grad():
        model_view = render(renderer, result.frequencies, result.phase_shifts, result.camera_pos, camera)
        view, depth, opacity = render(renderer, result.frequencies, result.phase_shifts, result.camera_pos, camera,
                                      tile_size, with_depth=True)
        novel = [render(renderer, result.frequencies, result.phase_shifts, novel_camera(result.camera_pos, offset),
                        camera, tile_size)
                 for offset in NOVEL_VIEW_OFFSETS]
    psnr, ssim = image_metrics(model_view, target)
    view_pixels = to_uint8(view[0], rounding='round')
    reconstruction = resized(view_pixels, size)
    input_tile = resized(input_pixels, tile_size)
    depth_pixels = depth_tile(depth[0].cpu(), opacity[0].cpu())
    novel_pixels = [to_uint8(image[0], rounding='round') for image in novel]
    phi, theta = result.camera_pos[0].tolist()
    metrics = {
        'psnr': psnr if math.isfinite(psnr) else None, 'ssim': ssim, 'resolution': generator.img_size,
        'camera_pos': [phi, theta], 'camera_pos_degrees': [math.degrees(phi), math.degrees(theta)],
        'start_cameras': result.starts.tolist(), 'optimize_pose': optimize_pose,
        'steps': args.steps, 'start_steps': min(settings.start_steps, args.steps) if len(result.starts) > 1 else 0,
        'finetune_steps': args.finetune_steps, 'seed': args.seed, 'final_loss': result.losses[-1],
        'wall_time_s': time.time() - started, 'device': str(device),
    }
    if args.finetune_steps > 0:
        metrics['final_finetune_loss'] = result.finetune_losses[-1]

    # Write: an old inversion.pt goes first and the new one comes last, so it marks a complete set.
    # Everything that can fail on the values (JSON refuses NaN) is encoded before the old file goes.
    metrics_text = json.dumps(metrics, indent=2, allow_nan=False) + '\n'
    paths = {name: os.path.join(args.output_dir, name) for name in OUTPUT_FILES}
    if os.path.lexists(paths['inversion.pt']):
        os.remove(paths['inversion.pt'])
    write_png(reconstruction, paths['reconstruction.png'])
    write_png(np.concatenate([input_tile, view_pixels, depth_pixels], axis=1), paths['comparison.png'])
    write_png(np.concatenate([input_tile, view_pixels, *novel_pixels, depth_pixels], axis=1), paths['views.png'])
    atomic_write_text(metrics_text, paths['metrics.json'])
    save_inversion(inversion_payload(result, config), paths['inversion.pt'])
    tqdm.write(f"PSNR {psnr:.2f} dB, SSIM {ssim:.3f}, camera (phi, theta) = ({phi:.4f}, {theta:.4f}) rad "
               f"in {metrics['wall_time_s']:.0f} s -> {args.output_dir}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    return cli.run_script(run, args)


if __name__ == '__main__':
    sys.exit(main())
