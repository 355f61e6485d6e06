"""Shape and colour diversity of a generator next to its dataset's (objects on a plain background).

    python -m tools.diversity --generator_file demo/synthetic_demo.pt --data_dir data/synthetic_demo
    python -m tools.diversity --generator_file runs/demo/synthetic_demo.pt --num_images 500 --output eval/diversity.json

Renders --num_images images (seed --seed + i, psi 1, poses drawn from the generator's training pose
distribution, as fid_evaluation.py does) and reads the first --num_images dataset images at the
config's size; for each side prints the mean and spread of the silhouette area, the bounding-box
aspect and the paint saturation, the hue spread, and the generated / real ratio of each spread
(1 = as varied as the data; metrics/diversity.py says how each is measured). The background
colour is white for configs that composite on white, else --background.

It also renders VIEW_OBJECTS objects (seeds --seed + k) from the same VIEW_COUNT views (yaw evenly
over the training range, mean pitch) and prints the hue spread over objects and over views: a
generator that paints by camera angle shows colour variety in the hue spread above, but here its
spread over views rivals its spread over objects. For the built-in synthetic data
(synthetic_info.json in --data_dir) the real side renders the data's first cars the same way.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import json
import math
import os

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from checkpoints.loading import add_generator_arguments, load_generator
from datasets import build_dataset, synthetic, training_pixels
from generators import cameras
from geometry.views import pose_range
from metrics.diagnostics import hue_over_objects_and_views
from metrics.diversity import NUM_POSE_FEATURES, STATISTICS, image_statistics, summarize
from utils import cli
from utils.device import resolve_device
from utils.files import atomic_write_text, check_writable_file
from utils.images import PIXEL_MAX
from utils.seeds import latent_for_seed

WHITE = (1.0, 1.0, 1.0)
VIEW_OBJECTS = 16  # objects rendered from shared views (hue over objects vs over views)
VIEW_COUNT = 8     # shared views per object
SYNTHETIC_INFO = 'synthetic_info.json'  # written next to the built-in synthetic data
SPREADS = (tuple(f'{name}{kind}' for name in STATISTICS for kind in ('_std', '_residual_std'))
           + ('hue_spread', 'hue_over_objects'))


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__)
    add_generator_arguments(parser)
    parser.add_argument('--data_dir', default=None, help="dataset folder (default: the config's dataset_path)")
    parser.add_argument('--num_images', type=int, default=500, help='images per side (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the first generated image (default: %(default)s)')
    parser.add_argument('--batch_size', type=int, default=16, help='images rendered at once (default: %(default)s)')
    parser.add_argument('--background', type=float, nargs=3, default=None, metavar=('R', 'G', 'B'),
                        help='background colour in [0, 1] (default: white for white-background configs)')
    parser.add_argument('--output', default=None, help='also write the numbers to this JSON file')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def background_colour(config, background):
    if background is not None:
        return tuple(background)
    if config['generator']['renderer']['kwargs'].get('white_back'):
        return WHITE
    raise ValueError('this config does not composite on white: give the background colour with --background R G B')


@torch.no_grad()
def generated_images(generator, camera, num_images, seed, batch_size, device):
    """Images [num_images, 3, N, N] in [0, 1] (image i from seed `seed + i`) and their poses
    [num_images, 2] = (phi, theta), drawn from the generator's training pose distribution."""
    pose_rng = torch.Generator().manual_seed(seed)
    _, poses = cameras.sample_camera_positions(num_images, generator.sample_dist, generator.h_stddev,
                                               generator.v_stddev, generator.h_mean, generator.v_mean,
                                               'cpu', generator=pose_rng)
    images = []
    for start in tqdm(range(0, num_images, batch_size), desc='generated', unit='batch'):
        indices = range(start, min(start + batch_size, num_images))
        z = torch.cat([latent_for_seed(seed + index, generator.z_dim, device) for index in indices])
        img, _ = generator(z, camera['fov'], camera['ray_start'], camera['ray_end'],
                           camera_pos=poses[start:start + len(indices)].to(device))
        images.append((img.float().cpu() * 0.5 + 0.5).clamp(0, 1))
    return torch.cat(images), poses


def shared_views(generator_kwargs):
    """VIEW_COUNT cameras [V, 2] = (phi, theta) inside the trained pose range: yaw theta evenly over
    its range (once around for a full turn), polar angle phi at the middle of its range."""
    (phi_low, phi_high), (theta_low, theta_high) = pose_range(generator_kwargs)
    if theta_high - theta_low >= 2 * math.pi:  # a full turn: the last view would repeat the first
        theta = theta_low + torch.arange(VIEW_COUNT) * (2 * math.pi / VIEW_COUNT)
    else:
        theta = torch.linspace(theta_low, theta_high, VIEW_COUNT)
    return torch.stack([torch.full_like(theta, (phi_low + phi_high) / 2), theta], dim=1)


@torch.no_grad()
def generated_views(generator, camera, views, seed, device):
    """Images [VIEW_OBJECTS, V, 3, N, N] in [0, 1]: object k (seed `seed + k`) from every view."""
    objects = []
    for index in tqdm(range(VIEW_OBJECTS), desc='generated views', unit='object'):
        z = latent_for_seed(seed + index, generator.z_dim, device).expand(len(views), -1)
        img, _ = generator(z, camera['fov'], camera['ray_start'], camera['ray_end'], camera_pos=views.to(device))
        objects.append((img.float().cpu() * 0.5 + 0.5).clamp(0, 1))
    return torch.stack(objects)


def real_views(data_root, views, img_size):
    """Images [VIEW_OBJECTS, V, 3, N, N] in [0, 1] of the first cars of built-in synthetic data,
    rendered from every view at the data's size and resized as training reads the data; None for
    other data (whose objects cannot be re-rendered)."""
    info_path = os.path.join(data_root, SYNTHETIC_INFO)
    if not os.path.isfile(info_path):
        return None
    with open(info_path) as handle:
        info = json.load(handle)
    if not isinstance(info.get('seed'), int) or not isinstance(info.get('img_size'), int):
        raise ValueError(f"'{info_path}' has no integer seed and img_size; re-run preprocess_dataset.py "
                         f"--cate synthetic for this folder")
    cars = []
    for index in range(VIEW_OBJECTS):
        rgb = synthetic.render_car_views(index, info['seed'], views.tolist(), info['img_size'])  # [V, n, n, 3]
        frames = [training_pixels(Image.fromarray(np.round(frame * PIXEL_MAX).astype(np.uint8)), img_size)
                  for frame in rgb]                                                           # V x [3, N, N]
        cars.append(torch.stack(frames) * 0.5 + 0.5)
    return torch.stack(cars)


def real_images(dataset, num_images):
    """The first `num_images` dataset images [n, 3, N, N] in [0, 1] (not flipped) and their
    poses [n, 2] = (phi, theta)."""
    indices = tqdm(range(num_images), desc='real', unit='img')
    images = torch.stack([dataset.load_image(index) * 0.5 + 0.5 for index in indices])
    return images, torch.stack([dataset.camera_pos(index, flip=False) for index in range(num_images)])


def spread_ratio(generated, real):
    """generated / real spread; NaN when the real spread is 0 or either is NaN."""
    return generated / real if real > 0 else math.nan


def json_safe(value):
    """`value` with every NaN float replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def run(args):
    if args.num_images <= NUM_POSE_FEATURES or args.batch_size < 1:
        raise ValueError(f'--num_images must be > {NUM_POSE_FEATURES} (the pose fit has {NUM_POSE_FEATURES} terms) '
                         f'and --batch_size >= 1')
    if args.output:
        check_writable_file(args.output)
    device = resolve_device(args.device)
    generator, config = load_generator(args.generator_file, args.config, device, use_ema=True, log=print)
    background = background_colour(config, args.background)
    dataset = build_dataset(config, args.data_dir)
    if len(dataset) < args.num_images:
        raise ValueError(f"the dataset '{dataset.root}' has {len(dataset)} images, fewer than --num_images "
                         f"{args.num_images}")
    sides = {'generated': generated_images(generator, config['camera'], args.num_images, args.seed,
                                           args.batch_size, device),
             'real': real_images(dataset, args.num_images)}
    summary = {side: summarize(image_statistics(images, background), images, poses)
               for side, (images, poses) in sides.items()}
    views = shared_views(config['generator']['kwargs'])
    view_images = {'generated': generated_views(generator, config['camera'], views, args.seed, device),
                   'real': real_views(dataset.root, views, dataset.img_size)}
    for side, images in view_images.items():
        over = hue_over_objects_and_views(images) if images is not None else (math.nan, math.nan)
        summary[side]['hue_over_objects'], summary[side]['hue_over_views'] = over
    summary['spread_ratio'] = {name: spread_ratio(summary['generated'][name], summary['real'][name])
                               for name in SPREADS}
    summary['num_images'] = args.num_images
    summary['generator_file'] = args.generator_file
    print(f"{'':<24}{'generated':>12}{'real':>12}{'ratio':>8}")
    for name in summary['generated']:
        ratio = summary['spread_ratio'].get(name)
        print(f"{name:<24}{summary['generated'][name]:>12.4f}{summary['real'][name]:>12.4f}"
              + (f'{ratio:>8.2f}' if ratio is not None else ''))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        atomic_write_text(json.dumps(json_safe(summary), indent=2) + '\n', args.output)
    return summary


def main(argv=None):
    return cli.run_script(run, parse_args(argv))


if __name__ == '__main__':
    raise SystemExit(main())
