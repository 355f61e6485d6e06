"""Extract a coloured mesh of a generated subject: the surface the renderer shows, fused from many views.

    python extract_shapes.py --generator_file demo/synthetic_demo.pt --seeds 0-3 --output_dir shapes
    python extract_shapes.py --generator_file released/generator.pth --config FFHQ_default \
        --resolution 256 --view_size 128 --format obj
    python extract_shapes.py --generator_file demo/synthetic_demo.pt --latent inv/inversion.pt --output_dir shapes

GRAM's radiance network is trained only on its manifolds (docs/design.md §2-4), so the density of
the whole cube is meaningless away from them and a density level set is noise. Instead, for each
seed (z drawn as in render_multiview_images.py, EMA weights, truncation --psi):
1. render the subject from a grid of cameras covering the config's trained pose range (geometry/
   views.py: a camera every --view_step degrees in azimuth and elevation, --view_size pixels,
   the config's fov and ray range), keeping per pixel the object opacity (the composited weight of
   the non-background slots, 0..1) and the object depth;
2. fuse them into a truncated signed distance volume over the object's box, --resolution grid points
   along its longest side (geometry/fusion.py): a grid point in front of a rendered surface or on
   the background (opacity < --threshold) is outside, one behind every surface it was seen from is
   inside;
3. drop disconnected floaters, fill enclosed cavities and run marching cubes (geometry/meshing.py);
4. colour each vertex with the mean rendered colour of the views that see it (geometry/coloring.py);
   vertices no view sees take the radiance network's rgb at the vertex, seen along the direction of
   the pose prior's mean camera ((0, 0, -1) for faces and cats, as their renders lock it).
The mesh is closed; its parts no trained camera sees (the back of a face, the underside of a car)
are the fused volume's boundary, not real geometry. Writes shape_<seed>.ply (binary PLY with vertex
colours), shape_<seed>.obj (--format obj) or shape_<seed>.glb (--format glb, glTF 2.0) in
--output_dir, and prints how well the mesh reproduces the rendered views (mask IoU, median
relative depth error). docs/shapes.md has the measurements.

With --latent FILE (the inversion.pt of invert.py) the inverted subject is meshed instead of the
seeds, into shape_inversion.<format>: its FiLM parameters, the config stored in FILE and, when
FILE holds them, its fine-tuned weights on top of --generator_file (the base model; --config and
--psi do not apply). The cameras are the same grid over the trained pose range, not the
inversion's camera.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import math
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from checkpoints.loading import add_generator_arguments, load_generator
from geometry import fusion, mesh_io, views
from geometry.extraction import (
    DEFAULT_CHUNK_POINTS,
    DEFAULT_RESOLUTION,
    DEFAULT_VIEW_SIZE,
    DEFAULT_VIEW_STEP,
    MESH_COMMENT,
    MIN_VIEW_SIZE,
    extract_mesh,
    fusion_cameras,
)
from inversion.storage import FILE_LABEL, load_inversion
from utils import cli
from utils.device import resolve_device
from utils.files import check_writable_folder
from utils.seeds import latent_for_seed, parse_seeds

DEFAULT_SEEDS = '0'  # --seeds without --latent
DEFAULT_PSI = 0.7   # truncation of the meshed seeds (the viewer's default too)


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_arguments(parser)
    parser.add_argument('--output_dir', default='shapes', help='folder for shape_<seed>.ply / .obj')
    parser.add_argument('--seeds', default=None, help=f"seeds: '0-19', '0,5,9' or '3' (default: {DEFAULT_SEEDS})")
    parser.add_argument('--latent', default=None,
                        help=f'inversion.pt of invert.py: mesh that subject instead of --seeds, into '
                             f'shape_{FILE_LABEL}.<format> (its stored config and fine-tuned weights, if any; '
                             f'--generator_file is the base model)')
    parser.add_argument('--psi', type=float, default=DEFAULT_PSI, help='truncation psi (1 = no truncation)')
    parser.add_argument('--resolution', type=int, default=DEFAULT_RESOLUTION,
                        help=f'grid points along the longest side of the object box (>= {fusion.MIN_RESOLUTION})')
    parser.add_argument('--threshold', type=float, default=views.DEFAULT_OPACITY_THRESHOLD,
                        help='object opacity (composited weight of the non-background slots, between 0 and 1) '
                             'that separates object from background pixels (default: %(default)s)')
    parser.add_argument('--view_size', type=int, default=DEFAULT_VIEW_SIZE,
                        help=f'pixels per side of the fused views (>= {MIN_VIEW_SIZE})')
    parser.add_argument('--view_step', type=float, default=DEFAULT_VIEW_STEP,
                        help='degrees between neighbouring fused cameras over the trained pose range')
    parser.add_argument('--format', choices=mesh_io.FORMATS, default='ply', help='mesh file format')
    parser.add_argument('--chunk_points', type=int, default=DEFAULT_CHUNK_POINTS,
                        help='vertices per network call when colouring (lower = less memory)')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def validate(args):
    """One-line errors for bad settings, before anything is loaded; returns the seeds ([] with --latent)."""
    if args.latent is not None and args.seeds is not None:
        raise cli.UserError('--latent meshes the inverted subject instead of seeds; drop --seeds')
    if args.latent is not None and args.config is not None:
        raise cli.UserError('--latent meshes with the config stored in it; drop --config')
    if not 0 < args.threshold < 1:
        raise ValueError(f'--threshold is an object opacity between 0 and 1 (default '
                         f'{views.DEFAULT_OPACITY_THRESHOLD}), got {args.threshold:g}; density thresholds are retired')
    if args.resolution < fusion.MIN_RESOLUTION:
        raise ValueError(f'--resolution must be >= {fusion.MIN_RESOLUTION}, got {args.resolution}')
    if args.view_size < MIN_VIEW_SIZE:
        raise ValueError(f'--view_size must be >= {MIN_VIEW_SIZE}, got {args.view_size}')
    if not 0 < args.view_step < math.inf:
        raise ValueError(f'--view_step must be > 0 degrees, got {args.view_step:g}')
    if args.chunk_points < 1:
        raise ValueError(f'--chunk_points must be >= 1, got {args.chunk_points}')
    if not 0 <= args.psi <= 1:
        raise ValueError(f'--psi must be in [0, 1] (1 = no truncation), got {args.psi:g}')
    check_writable_folder(args.output_dir)
    if args.latent is not None:
        return []
    return parse_seeds(DEFAULT_SEEDS if args.seeds is None else args.seeds)


def write_identity(generator, config, frequencies, phase_shifts, camera_pos, label, path, args, progress=None):
    """Mesh one identity (FiLM parameters [1, 9 H]) and write it to `path`; errors are prefixed with `label`.

    Nothing is written for an identity that fails (the file is written atomically once its mesh exists).
    """
    try:
        vertices, faces, colors, agreement = extract_mesh(
            generator, config, frequencies, phase_shifts, camera_pos, args.resolution, args.view_size,
            args.threshold, args.chunk_points, progress)
    except ValueError as error:
        raise ValueError(f'{label}: {error}') from None
    mesh_io.write_mesh(path, vertices, faces, colors, MESH_COMMENT)
    iou = [view['iou'] for view in agreement]
    depth_error = np.nanmedian([view['depth_error'] for view in agreement])
    tqdm.write(f'{label}: {len(vertices)} vertices, {len(faces)} faces -> {path}; against its views: '
               f'mask IoU {min(iou):.3f}-{max(iou):.3f}, median depth error {100 * depth_error:.2f}%')


@torch.no_grad()
def load_identities(args, seeds, device):
    """The EMA generator, its config and the identities to mesh.

    Returns:
        generator, config, and a list of (label for messages, label for the file name,
        frequencies [1, 9 H], phase_shifts [1, 9 H]): one per seed, or the inverted subject of --latent.
    """
    if args.latent is not None:
        inverted = load_inversion(args.latent, args.generator_file, device, log=tqdm.write)
        return inverted.generator, inverted.config, [(FILE_LABEL, FILE_LABEL, inverted.frequencies,
                                                      inverted.phase_shifts)]
    generator, config = load_generator(args.generator_file, args.config, device, use_ema=True, log=tqdm.write)
    identities = []
    for seed in seeds:
        frequencies, phase_shifts = generator.film_parameters(latent_for_seed(seed, generator.z_dim, device), args.psi)
        identities.append((f'seed {seed}', seed, frequencies, phase_shifts))
    return generator, config, identities


def run(args):
    """Extract a mesh for every seed of `args` (or its --latent subject); returns the paths written."""
    seeds = validate(args)
    device = resolve_device(args.device)
    generator, config, identities = load_identities(args, seeds, device)
    camera_pos = fusion_cameras(config, args.view_step)
    tqdm.write(f'fusing {len(camera_pos)} views of {args.view_size} px per identity over the trained pose range; '
               f'{args.resolution} grid points along the object box')

    written = []
    with tqdm(total=len(identities) * len(camera_pos), desc='rendering views', unit='view') as progress:
        for label, file_label, frequencies, phase_shifts in identities:
            path = os.path.join(args.output_dir, f'shape_{file_label}.{args.format}')
            write_identity(generator, config, frequencies, phase_shifts, camera_pos, label, path, args, progress)
            written.append(path)
    return written


def main(argv=None):
    args = parse_args(argv)
    return cli.run_script(run, args)


if __name__ == '__main__':
    sys.exit(main())
