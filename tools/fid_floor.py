"""FID / KID of real images against other real images: the best score a generator can reach.

    python -m tools.fid_floor --config SYNTHETIC_demo --data_dir data/synthetic_demo --num_images 1000
    python -m tools.fid_floor --config SYNTHETIC_demo --num_images 1000 --splits 3 --output eval/floor.json

FID is biased upwards at small sample counts, so a generator's FID at, say, 1,000 / 1,000 images
is best read next to the FID of two sets of real images of that size. This takes --splits
disjoint sets of --num_images dataset images each (images 0..n-1, n..2n-1, ...; at the config's
size, not flipped, rounded to 8 bits as fid_evaluation.py rounds), extracts their Inception
features once with the same weights fid_evaluation.py would use, and prints FID and KID for
every pair of sets.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import itertools
import json
import os

import torch
from tqdm import tqdm

import configs
from datasets import build_dataset
from metrics.fid import (
    POOL3,
    build_feature_networks,
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
)
from metrics.inception import resolve_feature_source
from utils import cli
from utils.device import resolve_device
from utils.files import atomic_write_text, check_writable_file
from utils.images import to_uint8

BACKEND = 'torch-fidelity'   # the extractor fid_evaluation.py uses for FID (its default) and KID
BATCH_SIZE = 64              # images per Inception forward pass


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument('--config', default='SYNTHETIC_demo', choices=sorted(configs.CONFIGS),
                        help='config whose dataset and image size to use (default: %(default)s)')
    parser.add_argument('--data_dir', default=None, help="dataset folder (default: the config's dataset_path)")
    parser.add_argument('--num_images', type=int, default=1000, help='images per set (default: %(default)s)')
    parser.add_argument('--splits', type=int, default=2, help='number of disjoint sets, >= 2 (default: %(default)s)')
    parser.add_argument('--inception_weights', default=None,
                        help='Inception weights file (default: as fid_evaluation.py finds them)')
    parser.add_argument('--offline', action='store_true', help='never download Inception weights')
    parser.add_argument('--output', default=None, help='also write the numbers to this JSON file')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def real_features(network, dataset, count, device):
    """pool3 features [count, D] of dataset images 0..count-1 (unflipped, rounded to uint8)."""
    features = []
    for start in tqdm(range(0, count, BATCH_SIZE), desc='real images', unit='batch'):
        indices = range(start, min(start + BATCH_SIZE, count))
        images = torch.stack([dataset.load_image(index) for index in indices])  # [b, 3, N, N] in [-1, 1]
        pixels = torch.from_numpy(to_uint8(images, rounding='round')).permute(0, 3, 1, 2)  # [b, 3, N, N] uint8
        features.append(network(pixels.to(device))[POOL3])
    return torch.cat(features)


def run(args):
    if args.splits < 2 or args.num_images < 2:
        raise ValueError(f'--splits and --num_images must both be at least 2 (got {args.splits} and {args.num_images})')
    if args.output:
        check_writable_file(args.output)
    config = configs.get_config(args.config)
    dataset = build_dataset(config, args.data_dir)
    needed = args.splits * args.num_images
    if len(dataset) < needed:
        raise ValueError(f"the dataset '{dataset.root}' has {len(dataset)} images, fewer than --splits x "
                         f"--num_images = {needed}; lower one of them")
    device = resolve_device(args.device)
    source = resolve_feature_source(BACKEND, args.inception_weights, not args.offline, print)
    network = build_feature_networks({BACKEND: source}, ['fid', 'kid'], BACKEND, device)[BACKEND]
    features = real_features(network, dataset, needed, device).split(args.num_images)
    pairs = []
    for a, b in itertools.combinations(range(args.splits), 2):
        fid = frechet_distance(BACKEND, feature_statistics(features[a]), feature_statistics(features[b]))
        kid, note = kernel_inception_distance(features[a], features[b])
        pairs.append({'sets': [a, b], 'fid': float(fid), 'kid_mean': kid['kid_mean'], 'kid_std': kid['kid_std']})
        print(f"sets {a} and {b}: FID {pairs[-1]['fid']:.2f}, KID x100 {100 * kid['kid_mean']:.3f}")
    if note:
        print(f'note: {note}')
    summary = {'data_dir': dataset.root, 'img_size': dataset.img_size, 'num_images': args.num_images,
               'feature_source': source.description, 'pairs': pairs, 'kid_note': note}
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        atomic_write_text(json.dumps(summary, indent=2, allow_nan=False) + '\n', args.output)
    return summary


def main(argv=None):
    return cli.run_script(run, parse_args(argv))


if __name__ == '__main__':
    raise SystemExit(main())
