"""How well the meshes of extract_shapes.py reproduce the renders (docs/shapes.md, "Measured accuracy").

For each seed: the mesh of the default settings (extraction.extract_mesh, psi 0.7 as
extract_shapes.py), then fresh renders from cameras drawn uniformly inside the trained pose range
(not the fused grid; the same cameras as tests/test_shapes.py), and per camera the IoU of the
mesh's silhouette with the object mask, the median relative depth error, and the share of the
mesh's pixels outside the mask (floaters raise it). Also the vertex count, the number of connected
components and the largest vertex radius.

    python benchmarks/mesh_accuracy.py                        # shipped demo model, seeds 0-5
    python benchmarks/mesh_accuracy.py --generator_file runs/demo/synthetic_demo.pt --seeds 0-2
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import utils.openmp  # noqa: E402, F401, I001  (before torch: OMP_WAIT_POLICY)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import extract_shapes  # noqa: E402
from checkpoints.loading import load_generator  # noqa: E402
from geometry import extraction, meshing, views  # noqa: E402
from utils.seeds import latent_for_seed, parse_seeds  # noqa: E402

NUM_CAMERAS = 4      # random cameras inside the trained pose range, per seed
CAMERA_SEED = 123    # as tests/test_shapes.py
IMAGE_SIZE = 64      # twice the demo's training resolution


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--generator_file', default=os.path.join(ROOT, 'demo', 'synthetic_demo.pt'))
    parser.add_argument('--config', default=None, help='config of weights that do not carry one')
    parser.add_argument('--seeds', default='0-5', help="e.g. '0-5' or '0,3'")
    parser.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    generator, config = load_generator(args.generator_file, args.config, 'cpu', use_ema=True)
    fused = extraction.fusion_cameras(config, extraction.DEFAULT_VIEW_STEP)
    test_cameras = views.random_poses(config['generator']['kwargs'], NUM_CAMERAS, CAMERA_SEED)
    elevations = ', '.join(f'({90 - np.degrees(phi):.1f}°, {np.degrees(theta) - 90:.1f}°)'
                           for phi, theta in test_cameras.tolist())
    print(f'{args.generator_file}, psi {extract_shapes.DEFAULT_PSI}, {IMAGE_SIZE} px renders from (elevation, '
          f'azimuth from the front) = {elevations}')
    print('| seed | vertices | components | IoU | depth error | outside (max) | max radius |')
    for seed in seeds:
        z = latent_for_seed(seed, generator.z_dim, 'cpu')
        film = generator.film_parameters(z, extract_shapes.DEFAULT_PSI)
        vertices, faces, _, _ = extraction.extract_mesh(generator, config, *film, fused)
        components = len(meshing.component_sizes(faces, len(vertices)))
        agreements = extraction.agreement_with_renders(generator, config, *film, vertices, faces, test_cameras,
                                                       IMAGE_SIZE)
        print(f"| {seed} | {len(vertices):,} | {components} | "
              f"{' / '.join(format(a['iou'], '.3f') for a in agreements)} | "
              f"{' / '.join(format(100 * a['depth_error'], '.2f') for a in agreements)} % | "
              f"{100 * max(a['outside'] for a in agreements):.1f} % | "
              f"{np.linalg.norm(vertices, axis=1).max():.3f} |", flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
