"""Camera statistics of a posed image folder, and the config settings that match them.

    python -m tools.pose_stats --data_dir data/mine
    python -m tools.pose_stats --data_dir data/mine --config SYNTHETIC_demo --img_size 32 --new_config MINE

Reads every pose file (not the images) with the loader's reader, then
- fits the generator's pose distribution (generators/cameras.py `sample_camera_positions`:
  sample_dist, h_mean, h_stddev, v_mean, v_stddev) to the poses training shows the discriminator:
  each pose and, with the loader's flip probability, its mirror (theta -> pi - theta). Each family
  (gaussian, uniform, spherical_uniform) is fitted by its moments; the one with the smallest
  Kolmogorov-Smirnov distance (the larger of theta's and phi's) wins, unless the base config's
  family is within about the sampling noise of that distance (0.5 / sqrt(number of poses));
- reads the fov from the folder's camera.json (preprocess_dataset.py --cate posed) or
  synthetic_info.json, at the training size; other folders keep the base config's fov;
- warns when extrinsics lie off the unit sphere or do not look at the origin;
- prints `--set` overrides for train.py (base: --config, else the nearest released config) and,
  with --new_config NAME, a config to paste into configs.py;
- draws theta / phi histograms with the fitted densities to --output (PNG).
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import math
import os
import sys

import matplotlib

matplotlib.use('Agg')  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import scipy.stats
import torch
from tqdm import tqdm

import configs
from datasets import DATASETS, DatasetError
from datasets.datasets import POSE_FOLDER
from datasets.eg3d import carla_to_cam2world, dataset_focal, fit_look_at, look_at_errors
from generators import cameras
from utils import cli
from utils.files import atomic_path

RELEASED_CONFIGS = ('FFHQ_default', 'CATS_default', 'CARLA_default')
FAMILIES = ('gaussian', 'uniform', 'spherical_uniform')
POSE_KEYS = ('sample_dist', 'h_mean', 'h_stddev', 'v_mean', 'v_stddev')
RELEASED_FLIP_PROBABILITY = 0.5   # the loader's default flip probability
UNIFORM_HALF_WIDTH = math.sqrt(3)  # half-width of a uniform distribution / its standard deviation
MIN_STDDEV = 1e-6                 # fitted spreads stay above this (a set with one pose)
FAMILY_MARGIN = 0.5               # the base's family is kept within this / sqrt(n) of the best KS distance
CONFIG_SAMPLES = 20000            # draws per config when comparing pose distributions
CONFIG_SEED = 0
RADIUS_TOLERANCE = 0.01           # warn when a camera distance is off 1 by more than this
CENTRE_TOLERANCE = 0.01           # warn when the fitted look-at point is this far from the origin
LOOK_AT_WARNING_DEG = 1.0         # warn when a camera is turned this far from looking at the origin
DECIMALS = 6                      # printed precision of fitted values
HISTOGRAM_BINS = 60


# ------------------------------------------------------------------------------------------
# Reading a folder.
# ------------------------------------------------------------------------------------------
def detect_dataset_class(data_dir):
    """The dataset class (datasets.DATASETS) whose pose files fill <data_dir>/poses/."""
    folder = os.path.join(data_dir, POSE_FOLDER)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    counts = {name: sum(f.endswith(cls.POSE_SUFFIX) for f in names) for name, cls in DATASETS.items()
              if name != 'CARLA'}  # CARLA reads PosedImageFolder's files
    best = max(counts, key=counts.get)
    if not counts[best]:
        raise DatasetError(f"'{folder}' holds no pose files (<name>.mat, <name>_pose.npy or <name>_extrinsics.npy); "
                           f"pass a folder written by preprocess_dataset.py")
    return DATASETS[best]


def read_poses(dataset, progress=True):
    """camera_pos [n, 2] = (phi, theta) float64 of every image, not flipped, as the loader reads them."""
    poses = [dataset.read_camera_pos(dataset.pose_path(i), flip=False).double().numpy()
             for i in tqdm(range(len(dataset)), desc='poses', unit='pose', disable=not progress)]
    return np.stack(poses)


def read_cam2world(dataset):
    """Our camera-to-world matrices [n, 4, 4] of an extrinsics folder (PosedImageFolder, CARLA)."""
    return carla_to_cam2world([np.load(dataset.pose_path(i), allow_pickle=False) for i in range(len(dataset))])


# ------------------------------------------------------------------------------------------
# Fitting the pose distribution.
# ------------------------------------------------------------------------------------------
def with_mirrors(camera_pos, flip_probability):
    """The poses training shows: values [m, 2] = (phi, theta) and weights [m] summing to 1."""
    mirrored = np.stack([camera_pos[:, 0], math.pi - camera_pos[:, 1]], axis=1)
    values = np.concatenate([camera_pos, mirrored])
    weights = np.concatenate([np.full(len(camera_pos), 1 - flip_probability), np.full(len(camera_pos), flip_probability)])
    keep = weights > 0
    return values[keep], weights[keep] / weights[keep].sum()


def weighted_moments(values, weights):
    """(mean, standard deviation) of values [m] with weights [m] summing to 1."""
    mean = float(np.sum(weights * values))
    return mean, float(math.sqrt(np.sum(weights * (values - mean) ** 2)))


def phi_variable(sample_dist):
    """(u, du/dphi): the function of phi that the family draws as gaussian or uniform.

    phi itself, except for spherical_uniform: v = (1 - cos phi) / 2, drawn uniformly.
    """
    if sample_dist == 'spherical_uniform':
        return (lambda phi: (1 - np.cos(phi)) / 2), (lambda phi: np.sin(phi) / 2)
    return (lambda phi: phi), (lambda phi: np.ones_like(phi))


def fit_family(values, weights, sample_dist):
    """Moment fit of one family to poses (values [m, 2] = (phi, theta), weights [m]) -> POSE_KEYS dict."""
    to_u, _ = phi_variable(sample_dist)
    theta_mean, theta_std = weighted_moments(values[:, 1], weights)
    u_mean, u_std = weighted_moments(to_u(values[:, 0]), weights)
    spread = 1.0 if sample_dist == 'gaussian' else UNIFORM_HALF_WIDTH
    params = {'sample_dist': sample_dist, 'h_mean': theta_mean, 'h_stddev': max(spread * theta_std, MIN_STDDEV),
              'v_mean': u_mean, 'v_stddev': max(spread * u_std, MIN_STDDEV)}
    if sample_dist == 'spherical_uniform':  # sample_camera_positions takes v's centre and half-width times pi
        params['v_mean'], params['v_stddev'] = math.pi * params['v_mean'], math.pi * params['v_stddev']
    return params


def marginals(params):
    """Frozen scipy distributions of theta and of u (phi_variable) under a POSE_KEYS dict."""
    if params['sample_dist'] == 'gaussian':
        return (scipy.stats.norm(params['h_mean'], params['h_stddev']),
                scipy.stats.norm(params['v_mean'], params['v_stddev']))
    scale = math.pi if params['sample_dist'] == 'spherical_uniform' else 1.0
    u_mean, u_half = params['v_mean'] / scale, params['v_stddev'] / scale
    return (scipy.stats.uniform(params['h_mean'] - params['h_stddev'], 2 * params['h_stddev']),
            scipy.stats.uniform(u_mean - u_half, 2 * u_half))


def ks_distance(values, weights, cdf):
    """Kolmogorov-Smirnov distance between the weighted sample values [m] and a cdf."""
    order = np.argsort(values)
    x, w = values[order], weights[order]
    upper = np.cumsum(w)
    model = cdf(x)
    return float(max(np.abs(upper - model).max(), np.abs(upper - w - model).max()))


def family_distance(values, weights, params):
    """The larger KS distance of theta and phi between the poses and a fitted family."""
    theta_dist, u_dist = marginals(params)
    to_u, _ = phi_variable(params['sample_dist'])
    return max(ks_distance(values[:, 1], weights, theta_dist.cdf),
               ks_distance(to_u(values[:, 0]), weights, u_dist.cdf))


def fit_pose_distribution(camera_pos, flip_probability=RELEASED_FLIP_PROBABILITY, preferred=None):
    """Fit every family to camera_pos [n, 2] (with mirrors); returns (best params, {family: KS distance}).

    The `preferred` family (the base config's) wins when its distance is within FAMILY_MARGIN / sqrt(n)
    of the best, about the sampling noise of the distance: a set that cannot tell them apart keeps it.
    """
    values, weights = with_mirrors(camera_pos, flip_probability)
    fits = {family: fit_family(values, weights, family) for family in FAMILIES}
    distances = {family: family_distance(values, weights, params) for family, params in fits.items()}
    best = min(distances, key=distances.get)
    if preferred in distances and distances[preferred] <= distances[best] + FAMILY_MARGIN / math.sqrt(len(camera_pos)):
        best = preferred
    return fits[best], distances


# ------------------------------------------------------------------------------------------
# Choosing and writing the config.
# ------------------------------------------------------------------------------------------
def pose_moments(values, weights):
    """(theta mean, theta std, phi mean, phi std): the numbers configs are compared on."""
    return (*weighted_moments(values[:, 1], weights), *weighted_moments(values[:, 0], weights))


def config_moments(config):
    """pose_moments of a config's pose distribution (CONFIG_SAMPLES seeded draws)."""
    kwargs = {key: config['generator']['kwargs'][key] for key in POSE_KEYS}
    generator = torch.Generator().manual_seed(CONFIG_SEED)
    _, camera_pos = cameras.sample_camera_positions(CONFIG_SAMPLES, device='cpu', generator=generator, **kwargs)
    camera_pos = camera_pos.double().numpy()
    return pose_moments(camera_pos, np.full(len(camera_pos), 1 / len(camera_pos)))


def nearest_config(moments, fov_at, dataset_class, img_size=None):
    """The released config nearest the data: first by fov, then by pose distribution.

    The fov comes first because it goes with what overrides leave alone (the scene's scale, ray
    range and background): the nearest fov at img_size (default: the config's), where fov_at(size)
    knows it (else None, and only poses count). Then the summed absolute differences of
    pose_moments. Ties (FFHQ and Cats share poses and fov) go to the config that reads this
    folder's pose files.
    """
    def key(name):
        config = configs.get_config(name)
        fov = fov_at(img_size or config['global']['img_size'])
        fov_distance = 0.0 if fov is None else abs(fov - config['camera']['fov'])
        pose_distance = sum(abs(a - b) for a, b in zip(moments, config_moments(config)))
        reads_folder = DATASETS[config['dataset']['class']].POSE_SUFFIX == dataset_class.POSE_SUFFIX
        return fov_distance, pose_distance, not reads_folder
    return min(RELEASED_CONFIGS, key=key)


def overrides(base, params, fov, dataset_class, img_size):
    """{key path: value} for train.py --set: the fitted pose keys, plus the fov, dataset class and
    image size where they differ from the base config."""
    values = {f'generator.kwargs.{key}': value if key == 'sample_dist' else round(value, DECIMALS)
              for key, value in params.items()}
    if fov is not None and not math.isclose(round(fov, DECIMALS), base['camera']['fov']):
        values['camera.fov'] = round(fov, DECIMALS)
    if DATASETS[base['dataset']['class']].POSE_SUFFIX != dataset_class.POSE_SUFFIX:
        values['dataset.class'] = dataset_class.__name__
    if img_size != base['global']['img_size']:
        values['global.img_size'] = img_size
    return values


def set_arguments(values):
    return ' '.join(f'--set {path}={value}' for path, value in values.items())


def config_snippet(name, base_name, values, data_dir):
    """Python for configs.py: NAME = _merge(BASE, {...}) with `values` and the dataset path."""
    tree = {}
    for path, value in {**values, 'dataset.kwargs.dataset_path': data_dir}.items():
        *parents, leaf = path.split('.')
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    body = ''.join(f'    {section!r}: {content!r},\n' for section, content in tree.items())
    return f"{name} = _merge({base_name}, {{\n{body}}})\n# and in CONFIGS: '{name}': {name},"


# ------------------------------------------------------------------------------------------
# Checks and the plot.
# ------------------------------------------------------------------------------------------
def geometry_warnings(cam2world):
    """(summary line, warnings) for our cameras [n, 4, 4]: distance from the origin and centring."""
    distances = np.linalg.norm(cam2world[:, :3, 3], axis=-1)
    errors = look_at_errors(cam2world)
    centre = fit_look_at(cameras.cam2world_to_eg3d(torch.from_numpy(cam2world), (0.0, 0.0, 0.0), 1.0).numpy())
    centre = np.round(centre, 4) + 0.0  # + 0.0: no negative zeros in messages
    summary = (f'radius {np.median(distances):.4f} (min {distances.min():.4f}, max {distances.max():.4f}); '
               f'look-at point {centre.tolist()}, cameras turned {np.median(errors):.3f} deg '
               f'median, {errors.max():.3f} max from looking at the origin')
    warnings = []
    if np.abs(distances - 1).max() > RADIUS_TOLERANCE:
        warnings.append(f'cameras lie {distances.min():.4g} to {distances.max():.4g} from the origin, ours at 1: '
                        f'the loader keeps only their direction, so the object must fill the frame as ours do '
                        f'(re-import with preprocess_dataset.py --cate posed to normalise an EG3D set)')
    if np.linalg.norm(centre) / np.median(distances) > CENTRE_TOLERANCE or errors.max() > LOOK_AT_WARNING_DEG:
        warnings.append(f'poses are not centred: the cameras look at {centre.tolist()} and up to '
                        f'{errors.max():.2f} deg away from the origin, but ours look at the origin; '
                        f'the fitted angles are those of the camera positions')
    return summary, warnings


def plot(camera_pos, values, weights, params, title, output):
    """Histograms of theta and phi (with mirrors) with the fitted densities, and theta against phi."""
    theta_dist, u_dist = marginals(params)
    to_u, du_dphi = phi_variable(params['sample_dist'])
    figure, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for axis, column, label in ((axes[0], 1, 'theta (azimuth, pi/2 = front)'), (axes[1], 0, 'phi (polar, pi/2 = level)')):
        axis.hist(values[:, column], bins=HISTOGRAM_BINS, weights=weights, density=True, alpha=0.6, label='data')
        grid = np.linspace(values[:, column].min() - 0.1, values[:, column].max() + 0.1, 400)
        density = theta_dist.pdf(grid) if column == 1 else u_dist.pdf(to_u(grid)) * du_dphi(grid)
        axis.plot(grid, density, label=f"fitted {params['sample_dist']}")
        axis.set_xlabel(f'{label} [rad]')
        axis.legend()
    axes[2].scatter(camera_pos[:, 1], camera_pos[:, 0], s=3, alpha=0.4)
    axes[2].set_xlabel('theta [rad]')
    axes[2].set_ylabel('phi [rad]')
    axes[2].invert_yaxis()  # cameras above the object (small phi) at the top
    axes[2].set_title('poses (not mirrored)')
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(output) as tmp_path:
        figure.savefig(tmp_path, dpi=100, format='png')
    plt.close(figure)


# ------------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data_dir', required=True, help='posed image folder (preprocess_dataset.py output)')
    parser.add_argument('--config', default=None, choices=list(configs.CONFIGS),
                        help='base config of the overrides (default: the nearest released config)')
    parser.add_argument('--img_size', type=int, default=None,
                        help="training resolution the fov is given for (default: the base config's)")
    parser.add_argument('--new_config', default=None, metavar='NAME',
                        help='also print a config NAME derived from the base, to paste into configs.py')
    parser.add_argument('--output', default='pose_stats.png', help='PNG of the pose histograms (default: %(default)s)')
    args = parser.parse_args(argv)
    if args.new_config is not None and not args.new_config.isidentifier():
        parser.error(f"--new_config '{args.new_config}' must be a Python name, e.g. MINE_default")
    if args.img_size is not None and args.img_size < 2:
        parser.error('--img_size must be at least 2')
    return args


def main(argv=None):
    args = parse_args(argv)
    return cli.run_script(run, args)


def run(args):
    dataset_class = detect_dataset_class(args.data_dir)
    dataset = dataset_class(args.data_dir, img_size=1, real_pos=True)  # images are not read
    camera_pos = read_poses(dataset)
    focal = dataset_focal(args.data_dir)
    base_config = configs.get_config(args.config) if args.config else None
    flip_probability = (base_config['dataset'].get('kwargs', {}).get('flip_probability', RELEASED_FLIP_PROBABILITY)
                        if base_config else RELEASED_FLIP_PROBABILITY)
    values, weights = with_mirrors(camera_pos, flip_probability)

    def fov_at(size):
        return None if focal is None else cameras.fov_from_focal(focal, size)

    base_name = args.config or nearest_config(pose_moments(values, weights), fov_at, dataset_class, args.img_size)
    base = configs.get_config(base_name)
    params, distances = fit_pose_distribution(camera_pos, flip_probability, base['generator']['kwargs']['sample_dist'])
    img_size = args.img_size or base['global']['img_size']
    fov = fov_at(img_size)

    print(f'{args.data_dir}: {len(camera_pos)} poses ({dataset_class.__name__}), '
          f'mirrored with probability {flip_probability} as the loader flips')
    theta_mean, theta_std, phi_mean, phi_std = pose_moments(values, weights)
    print(f'  theta (azimuth): mean {theta_mean:.4f}, std {theta_std:.4f}, range [{values[:, 1].min():.4f}, '
          f'{values[:, 1].max():.4f}]; phi (polar): mean {phi_mean:.4f}, std {phi_std:.4f}, '
          f'range [{values[:, 0].min():.4f}, {values[:, 0].max():.4f}]')
    warnings = []
    if dataset_class.POSE_SUFFIX == DATASETS['PosedImageFolder'].POSE_SUFFIX:
        summary, warnings = geometry_warnings(read_cam2world(dataset))
        print(f'  cameras: {summary}')
    else:
        print('  cameras: angles only, on the unit sphere looking at the origin by construction')
    if fov is None:
        print(f"  fov: not stored with this folder; keeping {base_name}'s {base['camera']['fov']} deg")
    else:
        print(f'  fov: {fov:.4f} deg for our pixel grid at {img_size} px (focal {focal:.6f}; '
              f'{math.degrees(2 * math.atan(0.5 / focal)):.4f} deg between image edges)')
    print('fitted pose distribution: ' + ', '.join(f'{key}={params[key]:.{DECIMALS}g}' if key != 'sample_dist'
                                                   else f'{key}={params[key]}' for key in POSE_KEYS)
          + ' (Kolmogorov-Smirnov distance: ' + ', '.join(f'{k} {v:.3f}' for k, v in distances.items()) + ')')
    values_to_set = overrides(base, params, fov, dataset_class, img_size)
    chosen = 'given' if args.config else 'nearest released config'
    print(f'base config: {base_name} ({chosen}); camera.ray_start/ray_end kept at '
          f"{base['camera']['ray_start']}/{base['camera']['ray_end']} (they depend on the object's size, not the poses)")
    print(f'train with:\n  python train.py --config {base_name} --data_dir {args.data_dir} {set_arguments(values_to_set)}')
    if args.new_config:
        print(f'config for configs.py:\n{config_snippet(args.new_config, base_name, values_to_set, args.data_dir)}')
    title = (f"{args.data_dir}: {len(camera_pos)} poses, {params['sample_dist']} fit"
             + ('' if fov is None else f', fov {fov:.2f} deg at {img_size} px'))
    plot(camera_pos, values, weights, params, title, args.output)
    print(f'wrote {args.output}')
    for warning in warnings:
        print(f'warning: {warning}')


if __name__ == '__main__':
    sys.exit(main())
