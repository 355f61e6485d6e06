"""Render multi-view images of generated subjects (docs/design.md §9), plus GIF / MP4 / depth frames.

    python render_multiview_images.py --generator_file <run>/generator_ema.pth --config CATS_default
    python render_multiview_images.py --generator_file released/generator.pth --seeds 0-3 --video --depth
    python render_multiview_images.py --generator_file <run>/checkpoints/step_0100000.pt --trajectory grid
    python render_multiview_images.py --generator_file demo/synthetic_demo.pt --latent inv/inversion.pt --depth

For every seed: torch.manual_seed(seed); z = torch.randn(1, z_dim) drawn on the CPU (the same
identity on every device, and the released script's z on a CPU), EMA weights, truncation psi
around the average of those weights. Output per seed, in --output_dir:
  grid_<seed>_<i>.png   frame i (released encoding: truncated 8-bit, watermarked by default)
  grid_<seed>.gif       all frames at 15 fps      grid_<seed>.mp4     the same, with --video
  depth_<seed>_<i>.png  depth frames (near = bright, normalised over the seed's frames), with --depth
  depth_<seed>.gif      the depth frames as a GIF, with --depth
The generator renders at --render_size (default: --img_size) and the frames are resized to
--img_size; a model rendered at 4x its training size shows its manifold layers as faint streaks
(docs/rendering.md), so `make demo` renders its 32 px model at 64 px and writes 128 px frames.
With --latent FILE (the inversion.pt of invert.py) the inverted subject is rendered instead of the
seeds, and its files are named with `inversion` in place of <seed>: its FiLM parameters, the config
stored in FILE and, when FILE holds them, its fine-tuned weights on top of --generator_file (the
base model; --config and --psi do not apply).

Camera family, chosen from the config's dataset class (docs/design.md §9):
  faces / cats (FFHQ, CATS, anything not listed below): fov 12, pitch pi/2, view dependence locked.
  objects (CARLA, PosedImageFolder = the synthetic configs): fov 35, pitch 60 degrees from +y,
  view dependence kept.
Trajectories (--trajectory):
  released  the released script's path: yaw sweep for faces/cats, full orbit for objects (default).
  sweep     yaw swings -a -> +a -> -a around the front, a = --yaw_amplitude (default 0.4 rad, the
            released faces path; 0.785 = pi/4 is the yaw range SYNTHETIC_demo trains on).
  orbit     a full turn: yaw = linspace(-pi, pi, F + 1)[:-1] + pi/2.
  grid      a yaw x pitch grid (yaw +-a, pitch +-0.2 rad), rows x cols = F, visited row by row
            in alternating directions so the animation has no jumps.
Documented fix: for an odd number of frames the released sweep lists are one angle short (and
its last frame stays black); our sweep then samples the same triangle wave at F points, so every
frame is real. For even F the released angles are kept exactly.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import configs
from checkpoints.loading import add_generator_arguments, load_generator
from generators import cameras
from generators.renderer import ACCELERATOR_CHUNK_RAYS, CPU_CHUNK_RAYS, DEFAULT_CHUNK_RAYS
from geometry.trajectories import SWEEP_YAW, TRAJECTORIES, camera_family, trajectory_angles
from inversion.rendering import render
from inversion.storage import FILE_LABEL, load_inversion
from utils import cli
from utils.device import resolve_device
from utils.files import check_writable_folder
from utils.images import resize_images, to_uint8, write_png
from utils.seeds import latent_for_seed, parse_seeds
from utils.video import ANIMATION_FPS, write_gif, write_mp4
from utils.watermark import apply_watermark, make_watermark

DEFAULT_SEEDS = '0-19'             # --seeds without --latent (released)
DEPTH_LEVELS = 255                # 8-bit depth frames: nearest depth -> 255
MIN_DEPTH_SPAN = 1e-12            # guards the normalisation when all depths are equal


# ----------------------------------------------------------------------------------- rendering
@torch.no_grad()
def render_frames(generator, z, origins, camera, img_size, psi, lock_view_dependence, batch_size,
                  with_depth=False, chunk_rays=DEFAULT_CHUNK_RAYS, progress=None):
    """Render z [1, z_dim] from each origin, `batch_size` frames per forward.

    Args:
        origins: list of F camera origins [x, y, z] (float64 lists, as the released script).
        camera: {'fov', 'ray_start', 'ray_end'}.
        progress: optional tqdm bar advanced once per forward.
    Returns:
        images [F, 3, N, N] (CPU, ~[-1, 1]) and depths [F, N, N] (CPU) or None.
    """
    images, depths = [], []
    for first in range(0, len(origins), batch_size):
        batch = origins[first:first + batch_size]
        kwargs = dict(img_size=img_size, camera_origin=torch.tensor(batch, dtype=torch.float64),
                      truncation_psi=psi, lock_view_dependence=lock_view_dependence, chunk_rays=chunk_rays,
                      **camera)
        z_batch = z.expand(len(batch), -1)  # [b, z_dim]
        if with_depth:
            img, _, detail = generator.experiment(z_batch, **kwargs)
            depths.append(detail['depth'].reshape(len(batch), img_size, img_size).cpu())
        else:
            img, _ = generator(z_batch, **kwargs)
        images.append(img.cpu())
        if progress is not None:
            progress.update(1)
    return torch.cat(images), (torch.cat(depths) if with_depth else None)


@torch.no_grad()
def render_inversion_frames(generator, inverted, origins, camera, img_size, lock_view_dependence, batch_size,
                            with_depth=False, chunk_rays=DEFAULT_CHUNK_RAYS, progress=None):
    """As render_frames, for the inverted subject of --latent (an inversion.storage.Inversion)."""
    images, depths = [], []
    for first in range(0, len(origins), batch_size):
        batch = origins[first:first + batch_size]
        _, camera_pos = generator.resolve_camera(len(batch), inverted.frequencies.device,
                                                 camera_origin=torch.tensor(batch, dtype=torch.float64))
        frequencies = inverted.frequencies.expand(len(batch), -1)  # [b, 9 H]
        phase_shifts = inverted.phase_shifts.expand(len(batch), -1)
        img, depth, _ = render(generator, frequencies, phase_shifts, camera_pos, camera, img_size, with_depth=True,
                               lock_view_dependence=lock_view_dependence, chunk_rays=chunk_rays)
        images.append(img.cpu())
        depths.append(depth.cpu())
        if progress is not None:
            progress.update(1)
    return torch.cat(images), (torch.cat(depths) if with_depth else None)


def resize_depths(depths, size):
    """Depth maps [F, N, N] -> [F, size, size], nearest neighbour (no depth is invented between
    the object and the empty background)."""
    if tuple(depths.shape[-2:]) == (size, size):
        return depths
    return F.interpolate(depths[:, None], size=(size, size), mode='nearest-exact')[:, 0]


def depth_to_uint8(depths):
    """Depth maps [F, N, N] -> uint8 [F, N, N], near = 255, normalised over all F frames.

    Pixels without a finite depth (nothing hit) become 0.
    """
    depths = depths.double()
    finite = torch.isfinite(depths)
    if not finite.any():
        return np.zeros(depths.shape, dtype=np.uint8)
    near, far = depths[finite].min(), depths[finite].max()
    scaled = (far - depths) / max(float(far - near), MIN_DEPTH_SPAN)  # 1 at the nearest depth
    scaled = torch.where(finite, scaled, torch.zeros_like(scaled))
    return (scaled.clamp(0, 1) * DEPTH_LEVELS).round().to(torch.uint8).numpy()


def remove_stale_frames(folder, label, frames):
    """Delete grid_<label>_<i>.png and depth_<label>_<i>.png with i >= frames from `folder` (left by
    an earlier render of the same subject with more frames, they would mix into its frame set).

    Returns the removed paths.
    """
    pattern = re.compile(rf'(grid|depth)_{re.escape(str(label))}_(\d+)\.png')
    removed = []
    for name in sorted(os.listdir(folder)):
        match = pattern.fullmatch(name)
        if match is not None and int(match.group(2)) >= frames:
            removed.append(os.path.join(folder, name))
            os.remove(removed[-1])
    return removed


# ----------------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_arguments(parser, 'pretrained_models/FFHQ_default/generator.pth')
    parser.add_argument('--output_dir', default='experiments/FFHQ_default/multiview_imgs',
                        help='folder for the frames, GIFs and videos (created if needed)')
    parser.add_argument('--seeds', default=None,
                        help=f"seeds to render: '0-19', '0,5,9' or '3' (default: {DEFAULT_SEEDS})")
    parser.add_argument('--latent', default=None,
                        help='inversion.pt of invert.py: render that subject instead of --seeds (its stored config '
                             'and fine-tuned weights, if any; --generator_file is the base model)')
    parser.add_argument('--frames', type=int, default=30, help='frames per seed (>= 1)')
    parser.add_argument('--psi', type=float, default=0.7, help='truncation psi (1 = no truncation)')
    parser.add_argument('--no_watermark', action='store_true', help='do not draw the "AI-generated" mark')
    parser.add_argument('--img_size', type=int, default=None, help="size of the written frames (default: the config's)")
    parser.add_argument('--render_size', type=int, default=None,
                        help='resolution the generator renders at; frames are then resized to --img_size (bicubic; '
                             'depth: nearest). Default: --img_size. Far above its training size (4x) a model shows '
                             'its manifold layers as faint streaks; rendering at <= 2x and resizing avoids them')
    parser.add_argument('--video', action='store_true', help=f'also write grid_<seed>.mp4 (H.264, {ANIMATION_FPS} fps)')
    parser.add_argument('--depth', action='store_true', help='also write depth_<seed>_<i>.png and depth_<seed>.gif')
    parser.add_argument('--trajectory', choices=TRAJECTORIES, default='released',
                        help='camera path: released (faces sweep / objects orbit), sweep, orbit or grid')
    parser.add_argument('--yaw_amplitude', type=float, default=SWEEP_YAW,
                        help='yaw half-range of the sweep and grid trajectories, radians (default: released 0.4)')
    parser.add_argument('--fov', type=float, default=None,
                        help="field of view, degrees (default: the released render's, 12 for faces and cats, "
                             "35 for objects; the config's training fov frames an inversion as it was fitted)")
    parser.add_argument('--batch_size', type=int, default=1, help='frames rendered per forward pass (>= 1)')
    parser.add_argument('--chunk_rays', type=int, default=DEFAULT_CHUNK_RAYS,
                        help='rays evaluated at once inside a forward pass (lower = less memory; '
                             f'default: {CPU_CHUNK_RAYS} per image on a CPU, {ACCELERATOR_CHUNK_RAYS} per call on a GPU)')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def run(args):
    """Render every seed of `args`; returns the list of files written."""
    for name in ('frames', 'batch_size', 'chunk_rays'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f'--{name} must be >= 1, got {getattr(args, name)}')
    for name in ('img_size', 'render_size'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f'--{name} must be >= 1, got {getattr(args, name)}')
    if not 0 <= args.psi <= 1:
        raise ValueError(f'--psi must be in [0, 1] (1 = no truncation), got {args.psi}')
    if args.fov is not None and not 0 < args.fov < configs.MAX_FOV:
        raise ValueError(f'--fov must be in (0, {configs.MAX_FOV:g}) degrees, got {args.fov}')
    if not 0 <= args.yaw_amplitude <= math.pi:
        raise ValueError(f'--yaw_amplitude must be in [0, pi] radians, got {args.yaw_amplitude}')
    if args.latent is not None and args.config is not None:
        raise ValueError('--latent renders with the config stored in it; drop --config')
    if args.latent is not None and args.seeds is not None:
        raise ValueError('--latent renders the inverted subject instead of seeds; drop --seeds')
    seeds = parse_seeds(args.seeds or DEFAULT_SEEDS) if args.latent is None else []
    check_writable_folder(args.output_dir)
    device = resolve_device(args.device)

    # Load the EMA generator (and the inverted subject of --latent).
    if args.latent is None:
        generator, config = load_generator(args.generator_file, args.config, device, use_ema=True, log=tqdm.write)
        subjects = [(seed, seed) for seed in seeds]  # (file-name label, seed)
    else:
        inverted = load_inversion(args.latent, args.generator_file, device, log=tqdm.write)
        generator, config = inverted.generator, inverted.config
        subjects = [(FILE_LABEL, None)]
    family = camera_family(config)
    fov = family['fov'] if args.fov is None else args.fov
    camera = {'fov': fov, 'ray_start': config['camera']['ray_start'], 'ray_end': config['camera']['ray_end']}
    img_size = args.img_size or generator.img_size
    render_size = args.render_size or img_size
    pitches, yaws = trajectory_angles(args.trajectory, args.frames, family, args.yaw_amplitude)
    origins = cameras.camera_origin_from_pos(torch.tensor([pitches, yaws], dtype=torch.float64).T).tolist()
    watermark = None if args.no_watermark else make_watermark(img_size, img_size)
    resized = '' if render_size == img_size else f', resized to {img_size} px'
    tqdm.write(f'rendering {len(subjects)} subjects x {args.frames} frames at {render_size} px{resized} on {device} '
               f'({family["name"]} camera, {args.trajectory} trajectory) -> {args.output_dir}')

    # Render and write each seed.
    written = []
    forwards_per_seed = math.ceil(args.frames / args.batch_size)
    with tqdm(total=len(subjects) * forwards_per_seed, desc='rendering', unit='fwd') as progress:
        for label, seed in subjects:
            if seed is None:
                images, depths = render_inversion_frames(
                    generator, inverted, origins, camera, render_size, family['lock_view_dependence'],
                    args.batch_size, with_depth=args.depth, chunk_rays=args.chunk_rays, progress=progress)
            else:
                z = latent_for_seed(seed, generator.z_dim, device)
                images, depths = render_frames(
                    generator, z, origins, camera, render_size, args.psi, family['lock_view_dependence'],
                    args.batch_size, with_depth=args.depth, chunk_rays=args.chunk_rays, progress=progress)
            images = resize_images(images, img_size)  # [F, 3, render_size, ...] -> [F, 3, img_size, img_size]
            if watermark is not None:
                images = apply_watermark(images, watermark)
            frames = list(to_uint8(images, rounding='truncate'))  # F x [N, N, 3]
            for index, frame in enumerate(frames):
                written.append(os.path.join(args.output_dir, f'grid_{label}_{index}.png'))
                write_png(frame, written[-1])
            written.append(os.path.join(args.output_dir, f'grid_{label}.gif'))
            write_gif(frames, written[-1])
            if args.video:
                written.append(os.path.join(args.output_dir, f'grid_{label}.mp4'))
                write_mp4(frames, written[-1])
            if args.depth:
                depth_frames = list(depth_to_uint8(resize_depths(depths, img_size)))
                for index, frame in enumerate(depth_frames):
                    written.append(os.path.join(args.output_dir, f'depth_{label}_{index}.png'))
                    write_png(frame, written[-1])
                written.append(os.path.join(args.output_dir, f'depth_{label}.gif'))
                write_gif(depth_frames, written[-1])
            stale = remove_stale_frames(args.output_dir, label, args.frames)
            if stale:
                tqdm.write(f'removed {len(stale)} frames of {label} left from an earlier render with more frames')
    tqdm.write(f'wrote {len(written)} files to {args.output_dir}')
    return 0


def main(argv=None):
    args = parse_args(argv)
    return cli.run_script(run, args)


if __name__ == '__main__':
    sys.exit(main())
