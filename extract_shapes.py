"""Extract a coloured mesh of a generated subject: density on a grid -> marching cubes -> .ply.

    python extract_shapes.py --generator_file <run>/generator_ema.pth --config SYNTHETIC_demo --seeds 0-3
    python extract_shapes.py --generator_file released/generator.pth --config FFHQ_default \
        --resolution 256 --threshold 10 --output_dir shapes

For each seed (z drawn as in render_multiview_images.py, EMA weights, truncation --psi), the
radiance network's density sigma is sampled on a resolution^3 grid over the cube
[-b, b]^3, b = --bounds (default: the network's normalize box, normalize / 2: 0.12 for faces and
cats, 1 for CARLA). sigma depends on z only through the FiLM parameters and not on the view
direction. scikit-image's marching cubes extracts the surface sigma = --threshold; each vertex
is coloured with the network's rgb seen along the locked view direction (0, 0, -1) (the one the
faces renders use). Writes shape_<seed>.ply (binary little-endian PLY, vertex colours, faces
oriented with normals pointing out of the dense region) in --output_dir.

Note: GRAM renders density only where rays meet its radiance manifolds, so this mesh is the
density field's level set, a view of the geometry rather than exactly what the renderer composites.
"""
import argparse
import os
import sys

import numpy as np
import torch
from skimage import measure
from tqdm import tqdm

from checkpoints.loading import add_generator_arguments, load_generator
from utils import cli
from utils.device import resolve_device
from utils.files import atomic_path
from utils.seeds import latent_for_seed, parse_seeds

DEFAULT_RESOLUTION = 128           # grid points per axis
DEFAULT_THRESHOLD = 10.0           # sigma level of the surface
DEFAULT_CHUNK_POINTS = 65536       # grid points per radiance-network call (bounds memory)
VIEW_DIRECTION = (0.0, 0.0, -1.0)  # the locked view direction used for colours
PIXEL_MAX = 255                    # vertex colours are 8-bit


def grid_points(resolution, half_extent):
    """Axis coordinates [R] and grid points [R^3, 3], x-major: point (i, j, k) is at row (i R + j) R + k."""
    axis = torch.linspace(-half_extent, half_extent, resolution)
    xs, ys, zs = torch.meshgrid(axis, axis, axis, indexing='ij')  # each [R, R, R]
    return axis, torch.stack([xs, ys, zs], dim=-1).reshape(-1, 3)


@torch.no_grad()
def evaluate_radiance(rf_network, frequencies, phase_shifts, points, chunk_points, progress=None):
    """rgb + sigma at `points` [P, 3] for one subject (frequencies / phase_shifts [1, 9 H]) -> [P, 4] (CPU).

    The network runs on the device of `frequencies`, chunk_points points at a time.
    """
    device = frequencies.device
    direction = torch.tensor(VIEW_DIRECTION, device=device)
    outputs = []
    for first in range(0, points.shape[0], chunk_points):
        chunk = points[first:first + chunk_points].to(device).unsqueeze(0)  # [1, n, 3]
        directions = direction.expand_as(chunk)                             # [1, n, 3]
        outputs.append(rf_network.forward_with_frequencies_phase_shifts(
            chunk, frequencies, phase_shifts, directions).squeeze(0).cpu())  # [n, 4]
        if progress is not None:
            progress.update(chunk.shape[1])
    return torch.cat(outputs)


@torch.no_grad()
def extract_mesh(generator, z, resolution=DEFAULT_RESOLUTION, threshold=DEFAULT_THRESHOLD, half_extent=0.12,
                 psi=1.0, chunk_points=DEFAULT_CHUNK_POINTS, progress=None):
    """Mesh of the surface sigma = threshold of subject z [1, z_dim] inside [-half_extent, half_extent]^3.

    Returns:
        vertices [V, 3] float32 (world), faces [T, 3] int32 (outward normals), colors [V, 3] uint8.
    Raises ValueError when sigma never crosses `threshold` on the grid.
    """
    frequencies, phase_shifts = generator.film_parameters(z, psi)  # [1, 9 H] each
    rf_network = generator.representation.rf_network
    axis, points = grid_points(resolution, half_extent)
    sigma = evaluate_radiance(rf_network, frequencies, phase_shifts, points, chunk_points, progress)[:, 3]
    volume = sigma.reshape(resolution, resolution, resolution).double().numpy()  # [x, y, z]
    low, high = float(volume.min()), float(volume.max())
    if not low < threshold < high:
        raise ValueError(f'density on the grid ranges {low:.3g}..{high:.3g} and never crosses --threshold '
                         f'{threshold:g}; pick a threshold inside that range (or change --bounds)')

    step = float(axis[1] - axis[0])
    # 'ascent': with density high inside, the face winding then gives outward normals.
    vertices, faces, _, _ = measure.marching_cubes(volume, level=threshold, spacing=(step, step, step),
                                                   gradient_direction='ascent')
    vertices = (vertices - half_extent).astype(np.float32)  # grid index space -> world
    faces = faces.astype(np.int32)
    rgb = evaluate_radiance(rf_network, frequencies, phase_shifts, torch.from_numpy(vertices), chunk_points)[:, :3]
    colors = (rgb.clamp(0, 1) * PIXEL_MAX).round().to(torch.uint8).numpy()
    return vertices, faces, colors


def write_ply(path, vertices, faces, colors):
    """Binary little-endian PLY with per-vertex uchar colours, written atomically.

    vertices [V, 3] float, faces [T, 3] int, colors [V, 3] uint8.
    """
    vertex_data = np.empty(len(vertices), dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                                                 ('red', 'u1'), ('green', 'u1'), ('blue', 'u1')])
    for axis, name in enumerate('xyz'):
        vertex_data[name] = vertices[:, axis]
    for channel, name in enumerate(('red', 'green', 'blue')):
        vertex_data[name] = colors[:, channel]
    face_data = np.empty(len(faces), dtype=[('count', 'u1'), ('indices', '<i4', (3,))])
    face_data['count'] = 3
    face_data['indices'] = faces
    header = '\n'.join([
        'ply', 'format binary_little_endian 1.0', 'comment GRAM density level set (extract_shapes.py)',
        f'element vertex {len(vertices)}', 'property float x', 'property float y', 'property float z',
        'property uchar red', 'property uchar green', 'property uchar blue',
        f'element face {len(faces)}', 'property list uchar int vertex_indices', 'end_header']) + '\n'
    with atomic_path(path) as tmp_path:
        with open(tmp_path, 'wb') as handle:
            handle.write(header.encode('ascii'))
            handle.write(vertex_data.tobytes())
            handle.write(face_data.tobytes())


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_arguments(parser)
    parser.add_argument('--output_dir', default='shapes', help='folder for shape_<seed>.ply')
    parser.add_argument('--seeds', default='0', help="seeds: '0-19', '0,5,9' or '3'")
    parser.add_argument('--psi', type=float, default=0.7, help='truncation psi (1 = no truncation)')
    parser.add_argument('--resolution', type=int, default=DEFAULT_RESOLUTION, help='grid points per axis (>= 2)')
    parser.add_argument('--threshold', type=float, default=DEFAULT_THRESHOLD, help='density (sigma) of the surface')
    parser.add_argument('--bounds', type=float, default=None,
                        help="half side of the sampled cube (default: the config's normalize / 2)")
    parser.add_argument('--chunk_points', type=int, default=DEFAULT_CHUNK_POINTS,
                        help='grid points per network call (lower = less memory)')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def run(args):
    """Extract a mesh for every seed of `args`; returns the paths written."""
    if args.resolution < 2 or args.chunk_points < 1:
        raise ValueError('--resolution must be >= 2 and --chunk_points >= 1')
    if args.bounds is not None and args.bounds <= 0:
        raise ValueError(f'--bounds must be > 0, got {args.bounds}')
    seeds = parse_seeds(args.seeds)
    device = resolve_device(args.device)
    generator, config = load_generator(args.generator_file, args.config, device, use_ema=True, log=tqdm.write)
    half_extent = args.bounds or config['generator']['representation']['kwargs']['normalize'] / 2

    written = []
    with tqdm(total=len(seeds) * args.resolution ** 3, desc='density grid', unit='pt', unit_scale=True) as progress:
        for seed in seeds:
            z = latent_for_seed(seed, generator.z_dim, device)
            vertices, faces, colors = extract_mesh(generator, z, args.resolution, args.threshold, half_extent,
                                                   args.psi, args.chunk_points, progress)
            written.append(os.path.join(args.output_dir, f'shape_{seed}.ply'))
            write_ply(written[-1], vertices, faces, colors)
            tqdm.write(f'seed {seed}: {len(vertices)} vertices, {len(faces)} faces -> {written[-1]}')
    return written


def main(argv=None):
    args = parse_args(argv)
    return cli.run_script(run, args)


if __name__ == '__main__':
    sys.exit(main())
