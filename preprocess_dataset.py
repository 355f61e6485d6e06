"""Turn raw datasets into the aligned training layout (docs/design.md §8), or make the built-in synthetic set.

    python preprocess_dataset.py --raw_dataset_path=./raw_data/ffhq --cate=ffhq
    python preprocess_dataset.py --raw_dataset_path=./raw_data/cats --cate=cats
    python preprocess_dataset.py --raw_dataset_path=./raw_data/carla --cate=carla
    python preprocess_dataset.py --cate=synthetic            # no download needed
    python preprocess_dataset.py --cate=posed --raw_dataset_path=./my_eg3d_set --output_dir=data/mine --img_size=128
    python preprocess_dataset.py --export=eg3d --cate=ffhq --data_dir=data/ffhq --output_dir=data/ffhq_eg3d

Raw layouts (released README):
    ffhq:  <raw>/<name>.png, <raw>/lm5p/<name>.txt (5 rows "x y"), <raw>/poses/<name>.mat
    cats:  <raw>/<name>.jpg with <raw>/<name>.jpg.cat ("9 x0 y0 ... x8 y8"); sub-folders
           (CAT_00, CAT_01, ... as downloaded) are searched too
    carla: <raw>/<name>.png, <raw>/poses/<name>_extrinsics.npy
    posed: an EG3D set, folder or .zip: <raw>/dataset.json {"labels": [[file, [16 cam2world + 9 intrinsics]], ...]}
           and the square images it names (docs/cameras.md: conventions and conversion)
Training layouts written to --output_dir (default data/<cate>, what the configs read):
    ffhq:  <name>.png (256 px) + poses/<name>.mat (copied unchanged)
    cats:  <name>.png (256 px) + poses/<name>_pose.npy = [pitch, yaw]
    carla: <name>.png (128 px) + poses/<name>_extrinsics.npy (copied)
    synthetic: <name>.png + poses/<name>_extrinsics.npy + depth/<name>_depth.npy + masks/<name>_mask.png
    posed: <name>.png (--img_size, default kept) + poses/<name>_extrinsics.npy + camera.json (PosedImageFolder)
--export=eg3d writes a training folder (--data_dir, default data/<cate>) as an EG3D set: <name>.png +
dataset.json with the camera each image is trained with (default --output_dir data/<cate>_eg3d).

A raw sample that cannot be used (unreadable image, missing or garbled landmarks or pose) is
skipped and listed with its reason in <output_dir>/preprocess_report.json. Finished samples are
skipped on re-runs unless --overwrite. Every file is written atomically. An EG3D set is checked
as a whole first: every bad label is named in one error before anything is written.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import functools
import glob
import json
import math
import multiprocessing
import os
import shutil
import sys

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

import configs
from datasets import DATASETS, DatasetError, PosedImageFolder, eg3d, synthetic
from datasets.alignment import (  # noqa: F401  (re-exported: the released functions and readers live here)
    ALIGNED_SIZE,
    CAT_LANDMARK_WEIGHTS,
    CAT_TEMPLATE,
    FACE_TEMPLATE,
    POS,
    PoseFit,
    SkipSample,
    align_img_cats,
    align_img_ffhq,
    fit_pose,
    read_cat_landmarks,
    read_ffhq_landmarks,
)
from generators.cameras import focal_from_fov, fov_from_focal
from utils import cli
from utils.files import atomic_path, atomic_write_text

CARLA_SIZE = 128         # CARLA images are resized to this
REPORT_NAME = 'preprocess_report.json'
CATEGORIES = ('ffhq', 'cats', 'carla', 'synthetic', 'posed')
SYNTHETIC_SIZE = 64      # default --img_size of the synthetic set
EXPORT_FORMATS = ('eg3d',)
# Export: the released config whose dataset class reads a category and whose camera was trained
# on it (fov at global.img_size); synthetic and posed folders carry their own camera file.
EXPORT_CONFIGS = {'ffhq': 'FFHQ_default', 'cats': 'CATS_default', 'carla': 'CARLA_default'}


# ------------------------------------------------------------------------------------------
# Reading raw inputs (each raises SkipSample with a reason).
# ------------------------------------------------------------------------------------------
def read_image(path):
    """Open an image fully and return it as RGB; unreadable files raise SkipSample."""
    if not os.path.exists(path):
        raise SkipSample(f'missing image {path}')
    try:
        with Image.open(path) as img:
            return img.convert('RGB')
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise SkipSample(f'unreadable image {path} ({error})') from error


def check_ffhq_pose(path):
    """The Deep3DFaceRecon .mat must load and hold a finite 'angle' of 3 values."""
    if not os.path.exists(path):
        raise SkipSample(f'missing pose {path}')
    try:
        angle = scipy.io.loadmat(path).get('angle')
    except (OSError, ValueError, TypeError) as error:
        raise SkipSample(f'unreadable pose {path} ({error})') from error
    if angle is None or np.size(angle) != 3 or not np.isfinite(np.asarray(angle, dtype=np.float64)).all():
        raise SkipSample(f"garbled pose {path} (needs a finite 'angle' with 3 values)")


def read_carla_extrinsics(path):
    """poses/<name>_extrinsics.npy: a finite 3x4 or 4x4 camera-to-world matrix."""
    if not os.path.exists(path):
        raise SkipSample(f'missing pose {path}')
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SkipSample(f'unreadable pose {path} ({error})') from error
    if matrix.shape not in ((3, 4), (4, 4)) or not np.isfinite(matrix).all():
        raise SkipSample(f'garbled pose {path} (expected a finite 3x4 or 4x4 matrix, got shape {matrix.shape})')
    return matrix


# ------------------------------------------------------------------------------------------
# One sample per category: output paths and processing.
# ------------------------------------------------------------------------------------------
def output_paths(cate, output_dir, name):
    """The files a finished sample has in the training layout."""
    pose_file = {'ffhq': f'{name}.mat', 'cats': f'{name}_pose.npy', 'carla': f'{name}_extrinsics.npy'}[cate]
    return {'image': os.path.join(output_dir, f'{name}.png'),
            'pose': os.path.join(output_dir, 'poses', pose_file)}


def save_png(img, path):
    with atomic_path(path) as tmp:
        img.save(tmp)


def process_ffhq(image_path, raw_dir, out):
    name = os.path.splitext(os.path.basename(image_path))[0]
    pose_path = os.path.join(raw_dir, 'poses', f'{name}.mat')
    check_ffhq_pose(pose_path)
    img = read_image(image_path)
    landmarks = read_ffhq_landmarks(os.path.join(raw_dir, 'lm5p', f'{name}.txt'), img.size[1])
    aligned = align_img_ffhq(img, fit_pose(landmarks, 'ffhq'), target_size=ALIGNED_SIZE)
    with atomic_path(out['pose']) as tmp:
        shutil.copyfile(pose_path, tmp)
    save_png(aligned, out['image'])


def process_cats(image_path, raw_dir, out):
    img = read_image(image_path)
    landmarks = read_cat_landmarks(image_path + '.cat', img.size[1])
    pos = fit_pose(landmarks, 'cats')
    aligned = align_img_cats(img, pos, target_size=ALIGNED_SIZE)
    with atomic_path(out['pose']) as tmp:
        np.save(tmp, np.array([pos.pitch, pos.yaw]))
    save_png(aligned, out['image'])


def process_carla(image_path, raw_dir, out):
    name = os.path.splitext(os.path.basename(image_path))[0]
    pose_path = os.path.join(raw_dir, 'poses', f'{name}_extrinsics.npy')
    read_carla_extrinsics(pose_path)
    try:
        with Image.open(image_path) as img:
            resized = img.resize((CARLA_SIZE, CARLA_SIZE), resample=Image.LANCZOS)  # mode kept
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise SkipSample(f'unreadable image {image_path} ({error})') from error
    with atomic_path(out['pose']) as tmp:
        shutil.copyfile(pose_path, tmp)
    save_png(resized, out['image'])


PROCESSORS = {'ffhq': process_ffhq, 'cats': process_cats, 'carla': process_carla}


def process_sample(image_path, cate, raw_dir, output_dir, overwrite):
    """Process one raw sample. Returns (name, status, reason): status 'written', 'done' or 'skipped'."""
    name = os.path.splitext(os.path.basename(image_path))[0]
    out = output_paths(cate, output_dir, name)
    if not overwrite and all(os.path.exists(path) for path in out.values()):
        return name, 'done', ''
    try:
        PROCESSORS[cate](image_path, raw_dir, out)
    except SkipSample as reason:
        return name, 'skipped', str(reason)
    return name, 'written', ''


def find_samples(cate, raw_dir):
    """Raw image paths, sorted, plus (name, reason) for names that occur more than once."""
    if cate == 'cats':
        paths = sorted(glob.glob(os.path.join(raw_dir, '**', '*.jpg'), recursive=True))
    else:
        paths = sorted(glob.glob(os.path.join(raw_dir, '*.png')))
    seen, unique, duplicates = set(), [], []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        if name in seen:
            duplicates.append((name, f'duplicate name, {path} not used'))
        else:
            seen.add(name)
            unique.append(path)
    return unique, duplicates


# ------------------------------------------------------------------------------------------
# Whole runs.
# ------------------------------------------------------------------------------------------
def preprocess_raw(cate, raw_dir, output_dir, workers=None, overwrite=False, progress=True):
    """Preprocess every raw sample of `cate` in `raw_dir` into `output_dir`; write the report.

    Returns the report dict: counts 'written', 'already_done' and the 'skipped' list of
    {'name', 'reason'}.
    """
    if not os.path.isdir(raw_dir):
        raise FileNotFoundError(f"raw dataset folder '{raw_dir}' does not exist; pass --raw_dataset_path")
    paths, duplicates = find_samples(cate, raw_dir)
    if not paths:
        pattern = '*.jpg' if cate == 'cats' else '*.png'
        raise FileNotFoundError(f"no {pattern} images in '{raw_dir}'; see the raw layout in --help")
    os.makedirs(os.path.join(output_dir, 'poses'), exist_ok=True)

    task = functools.partial(process_sample, cate=cate, raw_dir=raw_dir, output_dir=output_dir,
                             overwrite=overwrite)
    workers = workers or os.cpu_count() or 1
    bar = functools.partial(tqdm, total=len(paths), desc=cate, unit='img', disable=not progress)
    if workers == 1:
        results = list(bar(map(task, paths)))
    else:
        with multiprocessing.Pool(workers) as pool:
            results = list(bar(pool.imap_unordered(task, paths, chunksize=8)))

    skipped = sorted([(name, reason) for name, status, reason in results if status == 'skipped'] + duplicates)
    report = {
        'cate': cate, 'raw_dataset_path': raw_dir, 'output_dir': output_dir,
        'found': len(paths) + len(duplicates),
        'written': sum(status == 'written' for _, status, _ in results),
        'already_done': sum(status == 'done' for _, status, _ in results),
        'skipped': [{'name': name, 'reason': reason} for name, reason in skipped],
    }
    atomic_write_text(json.dumps(report, indent=2) + '\n', os.path.join(output_dir, REPORT_NAME))
    return report


def preprocess_synthetic(output_dir, num_images, img_size, seed, config_name=None, workers=None,
                         overwrite=False, progress=True):
    """Render the built-in synthetic dataset and write a report like preprocess_raw's.

    Poses follow the pose distribution of the config `config_name` (default: CARLA_default's).
    """
    poses = synthetic.CARLA_POSES if config_name is None else synthetic.poses_from_config(configs.get_config(config_name))
    written, done = synthetic.render_synthetic_dataset(
        output_dir, num_images=num_images, img_size=img_size, seed=seed, poses=poses, workers=workers,
        overwrite=overwrite, progress=progress)
    report = {'cate': 'synthetic', 'output_dir': output_dir, 'found': num_images,
              'written': written, 'already_done': done, 'skipped': []}
    atomic_write_text(json.dumps(report, indent=2) + '\n', os.path.join(output_dir, REPORT_NAME))
    return report


def summary_line(report):
    return (f"{report['cate']}: {report['written']} written, {report['already_done']} already done, "
            f"{len(report['skipped'])} skipped -> {os.path.join(report['output_dir'], REPORT_NAME)}")


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--raw_dataset_path', default=None,
                        help='folder with the raw data in the released layout (not needed for synthetic); '
                             'posed: the EG3D folder or .zip holding dataset.json')
    parser.add_argument('--cate', required=True, choices=CATEGORIES, help='dataset category')
    parser.add_argument('--output_dir', default=None, help='where to write the training layout (default: data/<cate>; --export: data/<cate>_eg3d)')
    parser.add_argument('--overwrite', action='store_true', help='redo samples that are already finished')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='parallel worker processes (default: number of CPU cores; 1 = no pool)')
    parser.add_argument('--num_images', type=int, default=10000, help='synthetic only: number of images')
    parser.add_argument('--img_size', type=int, default=None,
                        help=f'image side in pixels: synthetic (default {SYNTHETIC_SIZE}), posed and --export '
                             f'(default: the images keep their size)')
    parser.add_argument('--seed', type=int, default=0, help='synthetic only: random seed (same seed, same data)')
    parser.add_argument('--config', default=None,
                        help="synthetic only: draw camera poses from this config's pose distribution, "
                             "e.g. SYNTHETIC_demo (default: CARLA_default's full upper hemisphere)")
    parser.add_argument('--export', default=None, choices=EXPORT_FORMATS,
                        help='write the training folder --data_dir of --cate in this format instead')
    parser.add_argument('--data_dir', default=None, help='--export only: training folder to export (default data/<cate>)')
    parser.add_argument('--look_at', default=None, metavar='X,Y,Z',
                        help='posed / --export: the point EG3D cameras look at, which becomes our origin '
                             '(posed default: fitted to the optical axes; export default: 0,0,0; '
                             'write --look_at=-1,0,0 when it starts with a minus)')
    parser.add_argument('--radius', type=float, default=None,
                        help="posed / --export: EG3D camera distance from --look_at, which becomes 1 (posed "
                             "default: the cameras' median distance; export default: 1; EG3D's FFHQ: 2.7)")
    parser.add_argument('--look_at_tolerance', type=float, default=eg3d.LOOK_AT_TOLERANCE_DEG,
                        help='posed only: largest angle (degrees) between a camera and one that looks at '
                             'the centre without roll (default: %(default)s)')
    args = parser.parse_args(argv)
    if args.output_dir is None:
        args.output_dir = os.path.join('data', f'{args.cate}_eg3d' if args.export else args.cate)
    if args.export and args.data_dir is None:
        args.data_dir = os.path.join('data', args.cate)
    if args.cate == 'synthetic' and not args.export and args.img_size is None:
        args.img_size = SYNTHETIC_SIZE
    if args.look_at is not None:
        try:
            args.look_at = tuple(float(value) for value in args.look_at.split(','))
        except ValueError:
            args.look_at = ()
        if len(args.look_at) != 3 or not all(math.isfinite(value) for value in args.look_at):
            parser.error('--look_at must be three numbers X,Y,Z, e.g. --look_at 0,0,0.2')
    if args.radius is not None and not 0 < args.radius < math.inf:
        parser.error('--radius must be a positive number')
    if args.cate != 'synthetic' and not args.export and args.raw_dataset_path is None:
        where = 'DIR (an EG3D folder or .zip with dataset.json)' if args.cate == 'posed' else f'./raw_data/{args.cate}'
        parser.error(f'--cate={args.cate} needs --raw_dataset_path={where}')
    if args.config is not None and args.config not in configs.CONFIGS:
        parser.error(f"unknown --config '{args.config}'; valid names: {', '.join(configs.CONFIGS)}")
    if args.workers < 1 or args.num_images < 1 or (args.img_size is not None and args.img_size < 1):
        parser.error('--workers, --num_images and --img_size must be positive')
    return args


def main(argv=None):
    args = parse_args(argv)
    return cli.run_script(run, args)


def export_dataset(cate, data_dir, output_dir, img_size=None, look_at=None, radius=None, workers=1, progress=True):
    """Write the training folder `data_dir` of `cate` as an EG3D set; returns a one-line summary.

    The focal length comes from the folder's camera file (synthetic, posed) or from the released
    config of the category (camera.fov at its global.img_size).
    """
    if cate in EXPORT_CONFIGS:
        config = configs.get_config(EXPORT_CONFIGS[cate])
        dataset_class = DATASETS[config['dataset']['class']]
        focal = focal_from_fov(config['camera']['fov'], config['global']['img_size'])
    else:
        dataset_class = PosedImageFolder
        focal = eg3d.dataset_focal(data_dir)
        if focal is None:
            raise DatasetError(f"'{data_dir}' has no {eg3d.CAMERA_INFO} or {eg3d.SYNTHETIC_INFO} giving its fov; "
                                    f"pass the folder written by --cate={cate}")
    dataset = dataset_class(data_dir, img_size=1, real_pos=True)  # images are read by the export itself
    labels = eg3d.export_eg3d(dataset, output_dir, focal, img_size=img_size,
                              look_at=(0.0, 0.0, 0.0) if look_at is None else look_at,
                              radius=1.0 if radius is None else radius, workers=workers, progress=progress)
    return (f"{cate}: {len(labels)} images exported -> {os.path.join(output_dir, eg3d.DATASET_JSON)} "
            f"(focal {focal:.6f}, i.e. fov {2 * math.degrees(math.atan(0.5 / focal)):.4f} deg between image edges)")


def posed_summary(report):
    """The import's summary: counts, the fov assumed, the camera normalisation and any warnings."""
    camera = report['camera']
    sizes = ', '.join(f"{fov_from_focal(camera['focal'], size):.4f} deg at {size} px" for size in report['image_sizes'])
    look_at = [round(v, 6) + 0.0 for v in camera['look_at']]  # + 0.0: no negative zeros
    errors = report['look_at_error_deg']
    lines = [summary_line(report),
             (f"assumed fov: {camera['fov_image_edges']:.4f} deg between image edges (EG3D focal {camera['focal']:.6f}); "
              f"camera.fov for our pixel grid: {sizes or 'n/a'}"),
             (f"cameras: look_at {look_at} -> origin, radius {camera['radius']:.6g} -> 1, "
              f"off the look-at camera by {errors['median']:.3f} deg median, {errors['max']:.3f} max"),
             f"next: python -m tools.pose_stats --data_dir {report['output_dir']}"]
    lines += [f'warning: {warning}' for warning in report['warnings']]
    return '\n'.join(lines)


def run(args):
    if args.export:
        print(export_dataset(args.cate, args.data_dir, args.output_dir, img_size=args.img_size, look_at=args.look_at,
                             radius=args.radius, workers=args.workers))
        return
    if args.cate == 'posed':
        report = eg3d.import_eg3d(args.raw_dataset_path, args.output_dir, img_size=args.img_size,
                                  look_at=args.look_at, radius=args.radius, look_at_tolerance=args.look_at_tolerance,
                                  workers=args.workers, overwrite=args.overwrite)
    elif args.cate == 'synthetic':
        report = preprocess_synthetic(args.output_dir, args.num_images, args.img_size, args.seed,
                                      config_name=args.config, workers=args.workers, overwrite=args.overwrite)
    else:
        report = preprocess_raw(args.cate, args.raw_dataset_path, args.output_dir,
                                workers=args.workers, overwrite=args.overwrite)
    print(posed_summary(report) if args.cate == 'posed' else summary_line(report))
    if report['written'] + report['already_done'] == 0:
        first = report['skipped'][0]
        raise ValueError(f"every sample was skipped (e.g. {first['name']}: {first['reason']}); nothing usable in "
                         f"'{report['output_dir']}' — see {REPORT_NAME} there for each reason")


if __name__ == '__main__':
    sys.exit(main())
