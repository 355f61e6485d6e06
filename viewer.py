"""Explore a generator in the browser: drag to orbit, change the identity, see depth and shape.

    python viewer.py --generator_file demo/synthetic_demo.pt
    python viewer.py --generator_file released/generator.pth --config FFHQ_default --port 8080
    python viewer.py --generator_file demo/synthetic_demo.pt --latent inv/inversion.pt
    # on a remote machine: ssh -L 8080:localhost:8080 host, then open http://localhost:8080

Serves a page on localhost (viser: a Python server with a bundled three.js client, no internet
needed) and prints its address. The page shows a 3D scene whose background is the generator's
render of exactly the view the browser's camera sees (browser/views.py converts viser's camera
into ours); dragging orbits the camera, scrolling zooms. While the camera moves, frames are
rendered at half the resolution and refined once it rests; a render thread always takes the
latest camera, so no stale frame is queued. Controls: seed, a second seed and the blend toward it,
truncation psi, view (rgb / depth / composited weight), resolution, fov, locked view dependence,
and buttons that save the current frame (PNG), an orbit video (MP4) and the mesh (PLY, also shown
in the scene) to --output_dir and offer them as downloads. docs/viewer.md has the details.

With --latent FILE (the inversion.pt of invert.py) the page opens on the inverted subject at its
recovered camera; a checkbox switches to the seeds. The generator is then the inversion's: the
config stored in FILE and, when FILE holds them, its fine-tuned weights on top of
--generator_file (the base model; --config does not apply).
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import sys
import time

from browser.app import DEFAULT_PSI, DEFAULT_ROWS, ROWS_RANGE, ViewerApp
from browser.frames import FrameRenderer
from checkpoints.loading import add_generator_arguments, load_generator
from generators.renderer import ACCELERATOR_CHUNK_RAYS, CPU_CHUNK_RAYS
from geometry.extraction import DEFAULT_RESOLUTION as DEFAULT_MESH_RESOLUTION
from geometry.fusion import MIN_RESOLUTION as MIN_MESH_RESOLUTION
from inversion.storage import load_inversion
from utils import cli
from utils.device import resolve_device
from utils.files import check_writable_folder

MAX_PORT = 65535
IDLE_SECONDS = 1.0  # the main thread's sleep while the server threads work


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_arguments(parser)
    parser.add_argument('--latent', default=None,
                        help="inversion.pt of invert.py: open on that subject at its camera (its stored config "
                             "and fine-tuned weights, if any; --generator_file is the base model)")
    parser.add_argument('--port', type=int, default=8080,
                        help='port to serve on (the next free one if taken; 0: any free port)')
    parser.add_argument('--host', default='127.0.0.1',
                        help="address to listen on (default: this machine only; use SSH port forwarding)")
    parser.add_argument('--output_dir', default='outputs/viewer', help='folder for saved frames, videos and meshes')
    parser.add_argument('--seed', type=int, default=0, help='initial seed')
    parser.add_argument('--psi', type=float, default=DEFAULT_PSI, help='initial truncation psi')
    parser.add_argument('--resolution', type=int, default=DEFAULT_ROWS,
                        help=f'initial picture height in pixels ({ROWS_RANGE[0]}-{ROWS_RANGE[1]})')
    parser.add_argument('--chunk_rays', type=int, default=None,
                        help=f'rays evaluated at once (lower = less memory; default {CPU_CHUNK_RAYS} per image on a CPU, '
                             f'{ACCELERATOR_CHUNK_RAYS} per call on a GPU)')
    parser.add_argument('--mesh_resolution', type=int, default=DEFAULT_MESH_RESOLUTION,
                        help='marching-cubes grid points along the object box of the mesh button '
                             '(extract_shapes.py --resolution)')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def check_args(args):
    """One-line errors for values argparse cannot check."""
    if not 0 <= args.port <= MAX_PORT:
        raise ValueError(f'--port must be in 0-{MAX_PORT}, got {args.port}')
    if not ROWS_RANGE[0] <= args.resolution <= ROWS_RANGE[1]:
        raise ValueError(f'--resolution must be in {ROWS_RANGE[0]}-{ROWS_RANGE[1]}, got {args.resolution}')
    if not 0 <= args.psi <= 1:
        raise ValueError(f'--psi must be in [0, 1], got {args.psi}')
    if args.seed < 0:
        raise ValueError(f'--seed must be >= 0, got {args.seed}')
    if args.chunk_rays is not None and args.chunk_rays < 1:
        raise ValueError(f'--chunk_rays must be >= 1, got {args.chunk_rays}')
    if args.mesh_resolution < MIN_MESH_RESOLUTION:
        raise ValueError(f'--mesh_resolution must be >= {MIN_MESH_RESOLUTION}, got {args.mesh_resolution}')
    if args.latent is not None and args.config is not None:
        raise cli.UserError('--latent shows the subject with the config stored in it; drop --config')
    check_writable_folder(args.output_dir)  # the save buttons write there


def load_subject(args, device):
    """The generator to explore and the --latent subject.

    Returns:
        (generator, config, latent, camera_pos). Without --latent: the EMA generator of
        --generator_file / --config, latent and camera_pos None. With it: the inversion's generator
        and config, latent = (frequencies, phase_shifts) [1, 9 H] and camera_pos = (phi, theta) in
        radians, its recovered camera.
    """
    if args.latent is None:
        generator, config = load_generator(args.generator_file, args.config, device, use_ema=True, log=print)
        return generator, config, None, None
    inverted = load_inversion(args.latent, args.generator_file, device, log=print)
    camera_pos = tuple(float(angle) for angle in inverted.camera_pos[0])
    return inverted.generator, inverted.config, (inverted.frequencies, inverted.phase_shifts), camera_pos


def start_viewer(args):
    """Load the generator and start serving; returns the running ViewerApp."""
    check_args(args)
    device = resolve_device(args.device)
    generator, config, latent, camera_pos = load_subject(args, device)
    renderer = FrameRenderer(generator, config, latent, args.chunk_rays)
    return ViewerApp(renderer, config, args.output_dir, args.host, args.port, camera_pos, args.seed,
                     args.resolution, args.psi, args.mesh_resolution)


def run(args):
    """Serve until Ctrl-C."""
    app = start_viewer(args)
    print(f'viewer at {app.url} (Ctrl-C to stop); from another machine: '
          f'ssh -L {app.server.get_port()}:localhost:{app.server.get_port()} <this host>, '
          f'then open http://localhost:{app.server.get_port()}', flush=True)
    try:
        while True:
            time.sleep(IDLE_SECONDS)
    except KeyboardInterrupt:
        print('stopping the viewer')
    finally:
        app.stop()
    return 0


def main(argv=None):
    args = parse_args(argv)
    return cli.run_script(run, args)


if __name__ == '__main__':
    sys.exit(main())
