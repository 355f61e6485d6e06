"""EG3D `dataset.json` sets: import one into our posed image folder, export ours as one.

Camera conventions and the conversion: docs/cameras.md; the formulas live in generators/cameras.py
(`eg3d_to_cam2world`, `cam2world_to_eg3d`, `focal_from_fov`, `fov_from_focal`).

EG3D layout (what its dataset_tool.py writes; a folder or a .zip)::

    <root>/dataset.json        {"labels": [[<image path relative to root>, [25 numbers]], ...]}
    <root>/<relative path>     square images (.png/.jpg), possibly in sub-folders

The 25 numbers are a row-major 4x4 camera-to-world matrix (OpenCV camera axes: x right, y down,
z forward) and a row-major 3x3 intrinsic matrix normalised by the image size,
[[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]].

Our layout written by the import (read by PosedImageFolder, as CARLA's)::

    <out>/<name>.png                   <name> = the image's file name without its extension
    <out>/poses/<name>_extrinsics.npy  float64 [4, 4]: our camera-to-world, in CARLA's world axes
    <out>/camera.json                  the set's camera: focal, look_at, radius, img_size
    <out>/preprocess_report.json       counts, skipped images, warnings

Every label is checked before any image is written; all problems come back in one message.
"""
import collections
import functools
import io
import json
import math
import multiprocessing
import os
import zipfile

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from datasets.datasets import IMAGE_EXTENSIONS, POSE_FOLDER, DatasetError
from datasets.synthetic import OURS_TO_CARLA
from generators import cameras
from utils.files import atomic_path, atomic_write_text

DATASET_JSON = 'dataset.json'
CAMERA_INFO = 'camera.json'            # written next to an imported set
SYNTHETIC_INFO = 'synthetic_info.json'  # written next to the built-in synthetic set
REPORT_NAME = 'preprocess_report.json'
LABEL_LENGTH = 25                      # 16 cam2world + 9 intrinsics
RIGID_TOLERANCE = 1e-3                 # max |R^T R - I|, |det R - 1|, |bottom row - (0, 0, 0, 1)|
PRINCIPAL_POINT_TOLERANCE = 0.01       # |c - 0.5| in image widths
ASPECT_TOLERANCE = 0.01                # |fx / fy - 1|
FOV_TOLERANCE_DEG = 0.1                # max spread of the fov over the set
LOOK_AT_TOLERANCE_DEG = 5.0            # max angle between a camera and the look-at camera at its place
RADIUS_SPREAD_WARNING = 0.05           # warn when a camera's distance differs this much from the radius
LOOK_AT_RCOND = 1e-3                   # lstsq cut-off: look-at directions no camera constrains stay at 0
POLE_EPS = 1e-9                        # below this horizontal distance the look-at frame is undefined
MAX_EXAMPLES = 3                       # names listed per problem in an error message

# Problems a label can have, in the order the error message lists them.
MALFORMED = 'malformed labels, not [file, 25 numbers]'
DUPLICATE = 'duplicate labels'
NAME_CLASH = 'labels whose file names clash'
NO_IMAGE = 'labels without an image'
NO_LABEL = 'images without a label'
NON_FINITE = 'labels with non-finite numbers'
NON_RIGID = 'non-rigid cam2world matrices (rotation not orthonormal with det +1, or bottom row not 0 0 0 1)'
BAD_INTRINSICS = 'intrinsics that are not [[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]] normalised by the image size'
OFF_CENTRE = 'cameras not looking at the centre'
PROBLEMS = (MALFORMED, DUPLICATE, NAME_CLASH, NO_IMAGE, NO_LABEL, NON_FINITE, NON_RIGID, BAD_INTRINSICS, OFF_CENTRE)

# One validated EG3D set: names [n] (output stems), files [n] (paths in the source),
# cam2world [n, 4, 4] float64 (ours), focal (EG3D, normalised), look_at [3], radius,
# look_at_errors [n] (degrees), warnings (list of str).
Eg3dCameras = collections.namedtuple(
    'Eg3dCameras', ['names', 'files', 'cam2world', 'focal', 'look_at', 'radius', 'look_at_errors', 'warnings'])


class SkipImage(Exception):
    """An image that cannot be used; the message is the reason written to the report."""


# ------------------------------------------------------------------------------------------
# Our cameras in CARLA's world axes (the `_extrinsics.npy` files, docs/design.md §7.2).
# ------------------------------------------------------------------------------------------
def cam2world_to_carla(cam2world):
    """Our camera-to-world matrices [n, 4, 4] (numpy) -> the same cameras in CARLA axes [n, 4, 4]."""
    extrinsics = np.array(cam2world, dtype=np.float64)
    extrinsics[:, :3, :] = OURS_TO_CARLA @ extrinsics[:, :3, :]
    return extrinsics


def carla_to_cam2world(extrinsics):
    """CARLA-axes camera-to-world matrices [n, 3 or 4, 4] -> ours [n, 4, 4] (numpy)."""
    extrinsics = np.asarray(extrinsics, dtype=np.float64)
    cam2world = np.tile(np.eye(4), (len(extrinsics), 1, 1))
    cam2world[:, :3, :] = OURS_TO_CARLA.T @ extrinsics[:, :3, :]
    return cam2world


def look_at_errors(cam2world):
    """Angle (degrees) between each of our cameras [n, 4, 4] and the look-at camera at its place.

    0 means the camera looks at the origin without roll, as our generator renders it. Where the
    look-at frame is undefined (camera straight above or below the origin) only the viewing
    axes are compared.
    """
    cam2world = torch.as_tensor(np.asarray(cam2world, dtype=np.float64))
    origins = cam2world[:, :3, 3]
    expected = cameras.look_at_cam2world(origins)[:, :3, :3]
    relative = expected.transpose(1, 2) @ cam2world[:, :3, :3]
    trace = relative.diagonal(dim1=1, dim2=2).sum(-1)
    angle = torch.arccos(torch.clamp((trace - 1) / 2, -1.0, 1.0))
    viewing = -cam2world[:, :3, 2]  # our cameras look down their -z
    axis_cos = (viewing * -origins).sum(-1) / torch.linalg.norm(origins, dim=-1)
    axis_angle = torch.arccos(torch.clamp(axis_cos, -1.0, 1.0))
    at_pole = torch.linalg.norm(origins[:, [0, 2]], dim=-1) < POLE_EPS
    return torch.rad2deg(torch.where(at_pole, axis_angle, angle)).numpy()


def fit_look_at(eg3d_cam2world):
    """The point [3] nearest to all optical axes of EG3D cameras [n, 4, 4] (least squares).

    Minimises sum_i |(I - d_i d_i^T)(p - t_i)|^2 over p (t_i camera centre, d_i forward axis).
    A direction no axis constrains (e.g. every camera frontal) keeps the component of the
    smallest-norm solution, i.e. the point nearest the world origin along it.
    """
    centres = eg3d_cam2world[:, :3, 3]
    forward = eg3d_cam2world[:, :3, 2] / np.linalg.norm(eg3d_cam2world[:, :3, 2], axis=-1, keepdims=True)
    projectors = np.eye(3) - forward[:, :, None] * forward[:, None, :]  # [n, 3, 3]
    matrix = projectors.sum(0)
    target = np.einsum('nij,nj->i', projectors, centres)
    return np.linalg.lstsq(matrix, target, rcond=LOOK_AT_RCOND)[0]


# ------------------------------------------------------------------------------------------
# Reading an EG3D set (folder or .zip).
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _open_zip(path, pid):
    """One ZipFile per (path, process): forked workers must not share a file offset."""
    return zipfile.ZipFile(path)


def _is_zip(path):
    return os.path.isfile(path) and zipfile.is_zipfile(path)


def list_files(source):
    """Relative paths ('/'-separated) of every file in the folder or .zip `source`."""
    if _is_zip(source):
        return [name for name in _open_zip(source, os.getpid()).namelist() if not name.endswith('/')]
    if not os.path.isdir(source):
        raise DatasetError(f"EG3D set '{source}' not found; pass the folder or .zip holding {DATASET_JSON} "
                           f"and the images as --raw_dataset_path")
    files = []
    for folder, _, names in os.walk(source):
        relative = os.path.relpath(folder, source)
        files += [name if relative == '.' else f'{relative}/{name}'.replace(os.sep, '/') for name in names]
    return files


def read_file(source, relative):
    """Bytes of the file `relative` in the folder or .zip `source`."""
    if _is_zip(source):
        return _open_zip(source, os.getpid()).read(relative)
    with open(os.path.join(source, *relative.split('/')), 'rb') as handle:
        return handle.read()


def read_labels(source):
    """The 'labels' list of <source>/dataset.json; a clear error when it is missing or not a label list."""
    try:
        text = read_file(source, DATASET_JSON)
    except (FileNotFoundError, KeyError):
        raise DatasetError(f"no {DATASET_JSON} in '{source}'; an EG3D set holds {DATASET_JSON} next to its images "
                           f"(written by EG3D's dataset_tool.py)") from None
    try:
        contents = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise DatasetError(f"{DATASET_JSON} in '{source}' is not valid JSON ({error}); "
                           f"re-write it with EG3D's dataset_tool.py") from None
    labels = contents.get('labels') if isinstance(contents, dict) else None
    if not isinstance(labels, list) or not labels:
        raise DatasetError(f"{DATASET_JSON} in '{source}' has no camera labels (expected "
                           f'{{"labels": [[file, [16 cam2world + 9 intrinsics]], ...]}}); export the set with its cameras')
    return labels


# ------------------------------------------------------------------------------------------
# Validation: every problem of every label, reported in one message.
# ------------------------------------------------------------------------------------------
def _describe(problems):
    """'3 labels with X (a, b, c, ...)' for every non-empty problem list, joined by '; '."""
    parts = []
    for description, names in problems.items():
        if names:
            examples = ', '.join(str(name) for name in names[:MAX_EXAMPLES]) + (', ...' if len(names) > MAX_EXAMPLES else '')
            parts.append(f'{len(names)} {description} ({examples})')
    return '; '.join(parts)


def check_labels(source, labels, files, look_at=None, radius=None, look_at_tolerance=LOOK_AT_TOLERANCE_DEG):
    """Validate EG3D labels against the set's files and convert the cameras to ours.

    Args:
        source: the set's path, for messages.
        labels: the 'labels' list of dataset.json.
        files: relative paths of the files in the set (images and others).
        look_at: [3] point the cameras look at (EG3D world); None fits it (fit_look_at).
        radius: camera distance from look_at that becomes 1; None takes the median distance.
        look_at_tolerance: largest accepted angle (degrees) between a camera and the look-at
            camera at its place (look_at_errors).
    Returns:
        Eg3dCameras, in the order of `labels`.
    Raises:
        DatasetError: one line listing every problem found (missing or duplicate labels, malformed
            entries, non-finite numbers, non-rigid matrices, unusable intrinsics, a fov that varies
            beyond FOV_TOLERANCE_DEG, cameras not looking at the centre).
    """
    problems = {problem: [] for problem in PROBLEMS}  # problem -> names of the labels that have it
    images = {name for name in files if name.lower().endswith(IMAGE_EXTENSIONS)}
    seen, stems = set(), {}
    entries = []  # (file, stem, values [25]) of well-formed, unique labels with an image
    for index, entry in enumerate(labels):
        valid = (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)
                 and isinstance(entry[1], (list, tuple)) and len(entry[1]) == LABEL_LENGTH
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry[1]))
        if not valid:
            problems[MALFORMED].append(f'entry {index}')
            continue
        file, values = entry[0], np.array(entry[1], dtype=np.float64)
        if file in seen:
            problems[DUPLICATE].append(file)
            continue
        seen.add(file)
        stem = os.path.splitext(file.split('/')[-1])[0]
        if stem in stems:
            problems[NAME_CLASH].append(f'{stems[stem]} and {file}')
            continue
        stems[stem] = file
        if file not in images:
            problems[NO_IMAGE].append(file)
            continue
        entries.append((file, stem, values))
    problems[NO_LABEL] = sorted(images - seen)

    good = []
    for file, stem, values in entries:
        if not np.isfinite(values).all():
            problems[NON_FINITE].append(file)
            continue
        matrix, intrinsics = values[:16].reshape(4, 4), values[16:].reshape(3, 3)
        rotation = matrix[:3, :3]
        if (np.abs(rotation.T @ rotation - np.eye(3)).max() > RIGID_TOLERANCE
                or abs(np.linalg.det(rotation) - 1) > RIGID_TOLERANCE
                or np.abs(matrix[3] - [0, 0, 0, 1]).max() > RIGID_TOLERANCE):
            problems[NON_RIGID].append(file)
            continue
        fx, fy = intrinsics[0, 0], intrinsics[1, 1]
        if (fx <= 0 or fy <= 0 or abs(fx / fy - 1) > ASPECT_TOLERANCE
                or np.abs(intrinsics[:2, 2] - 0.5).max() > PRINCIPAL_POINT_TOLERANCE
                or abs(intrinsics[0, 1]) > RIGID_TOLERANCE or np.abs(intrinsics[1, 0]) > RIGID_TOLERANCE
                or np.abs(intrinsics[2] - [0, 0, 1]).max() > RIGID_TOLERANCE):
            problems[BAD_INTRINSICS].append(file)
            continue
        good.append((file, stem, matrix, (fx + fy) / 2))

    fov_problem = ''
    if good:
        focals = np.array([focal for *_, focal in good])
        fovs = np.degrees(2 * np.arctan(0.5 / focals))  # between image edges
        focal = float(np.median(focals))
        if fovs.max() - fovs.min() > FOV_TOLERANCE_DEG:
            fov_problem = (f'fov varies from {fovs.min():.3f} to {fovs.max():.3f} degrees (tolerance '
                           f'{FOV_TOLERANCE_DEG}): one fov is assumed for the whole set, so split it by camera')
        eg3d_cam2world = np.stack([matrix for _, _, matrix, _ in good])
        centre = 'given' if look_at is not None else 'fitted'
        look_at = fit_look_at(eg3d_cam2world) if look_at is None else np.asarray(look_at, dtype=np.float64)
        distances = np.linalg.norm(eg3d_cam2world[:, :3, 3] - look_at, axis=-1)
        radius = float(np.median(distances)) if radius is None else float(radius)
        if radius <= 0:
            raise DatasetError(f'camera radius must be positive, got {radius}; pass --radius R > 0')
        cam2world = cameras.eg3d_to_cam2world(torch.from_numpy(eg3d_cam2world), look_at, radius).numpy()
        errors = look_at_errors(cam2world)
        problems[OFF_CENTRE] = [f'{file} {error:.1f} deg' for (file, *_), error in zip(good, errors)
                             if not error <= look_at_tolerance]
    message = '; '.join(part for part in (_describe(problems), fov_problem) if part)
    if message:
        if problems[OFF_CENTRE]:
            message += (f' (centre {np.round(look_at, 4).tolist()} {centre}, tolerance {look_at_tolerance} deg: '
                        f'our generator renders cameras that look at the centre without roll; pass --look_at X,Y,Z '
                        f'or raise --look_at_tolerance)')
        raise DatasetError(f"{DATASET_JSON} of '{source}' is not usable: {message}; fix or remove these entries")

    warnings = []
    spread = np.abs(distances / radius - 1)
    if spread.max() > RADIUS_SPREAD_WARNING:
        warnings.append(f'cameras lie {distances.min():.4g} to {distances.max():.4g} from the look-at point '
                        f'(radius {radius:.4g}); ours all render from distance 1, so nearer cameras show the object larger')
    return Eg3dCameras(names=[stem for _, stem, _, _ in good], files=[file for file, *_ in good],
                       cam2world=cam2world, focal=focal, look_at=[float(v) for v in look_at], radius=radius,
                       look_at_errors=errors, warnings=warnings)


# ------------------------------------------------------------------------------------------
# Whole runs.
# ------------------------------------------------------------------------------------------
def _run_tasks(task, items, workers, desc, progress):
    """task(item) for every item, in a pool of `workers` processes (1 = none), with a progress bar."""
    bar = functools.partial(tqdm, total=len(items), desc=desc, unit='img', disable=not progress)
    if workers == 1:
        return list(bar(map(task, items)))
    with multiprocessing.Pool(workers) as pool:
        return list(bar(pool.imap_unordered(task, items, chunksize=8)))


def _read_rgb(data, what):
    """Decode image bytes fully to RGB; an unreadable image raises SkipImage."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert('RGB')
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise SkipImage(f'unreadable image {what} ({error})') from error


def _import_one(item, source, output_dir, img_size, overwrite):
    """Write one image and its pose. Returns (name, status, reason, written image size)."""
    name, file, extrinsics = item
    image_path = os.path.join(output_dir, f'{name}.png')
    pose_path = os.path.join(output_dir, POSE_FOLDER, f'{name}_extrinsics.npy')
    if not overwrite and os.path.exists(image_path) and os.path.exists(pose_path):
        with Image.open(image_path) as image:
            return name, 'done', '', image.size[0]
    try:
        image = _read_rgb(read_file(source, file), file)
        if image.size[0] != image.size[1]:
            raise SkipImage(f'image {file} is {image.size[0]}x{image.size[1]}, not square')
    except SkipImage as reason:
        return name, 'skipped', str(reason), None
    if img_size is not None and image.size[0] != img_size:
        image = image.resize((img_size, img_size), Image.Resampling.LANCZOS)
    with atomic_path(pose_path) as tmp:
        np.save(tmp, extrinsics)
    with atomic_path(image_path) as tmp:  # last: it marks a finished image
        image.save(tmp, format='PNG')
    return name, 'written', '', image.size[0]


def import_eg3d(source, output_dir, img_size=None, look_at=None, radius=None,
                look_at_tolerance=LOOK_AT_TOLERANCE_DEG, workers=1, overwrite=False, progress=True):
    """Import the EG3D set `source` (folder or .zip) into our layout at `output_dir`.

    Labels are checked first (check_labels), then camera.json is written, then each image as
    <name>.png (resized to img_size with Lanczos when given) with poses/<name>_extrinsics.npy, and
    the report last. A folder imported with another look_at, radius, focal or img_size is refused
    unless `overwrite`; images already there are kept unless `overwrite`.
    Returns:
        the report dict: counts, 'skipped' [{'name', 'reason'}], 'camera' (camera.json's content),
        'image_sizes' (sizes written), 'warnings'.
    """
    source, output_dir = os.fspath(source), os.fspath(output_dir)
    files = list_files(source)
    checked = check_labels(source, read_labels(source), files, look_at, radius, look_at_tolerance)
    camera = {
        'format': f'EG3D {DATASET_JSON}', 'focal': checked.focal,
        'fov_image_edges': math.degrees(2 * math.atan(0.5 / checked.focal)),
        'look_at': checked.look_at, 'radius': checked.radius, 'img_size': img_size,
        'pose_format': 'our camera-to-world (docs/cameras.md) in CARLA world axes, 4x4',
    }
    info_path = os.path.join(output_dir, CAMERA_INFO)
    if os.path.exists(info_path) and not overwrite:
        with open(info_path) as handle:
            old = json.load(handle)
        settings = ('focal', 'look_at', 'radius', 'img_size')
        if not all(np.allclose(old.get(key), camera[key]) if camera[key] is not None else old.get(key) is None
                   for key in settings):
            raise DatasetError(f"'{output_dir}' holds an import with other settings "
                               f"({', '.join(f'{key}={old.get(key)}' for key in settings)}); "
                               f"pass --overwrite or choose another --output_dir")
    os.makedirs(os.path.join(output_dir, POSE_FOLDER), exist_ok=True)
    atomic_write_text(json.dumps(camera, indent=2) + '\n', info_path)

    extrinsics = cam2world_to_carla(checked.cam2world)
    items = list(zip(checked.names, checked.files, extrinsics))
    task = functools.partial(_import_one, source=source, output_dir=output_dir, img_size=img_size,
                             overwrite=overwrite)
    results = _run_tasks(task, items, workers, 'posed', progress)
    report = {
        'cate': 'posed', 'raw_dataset_path': source, 'output_dir': output_dir, 'found': len(items),
        'written': sum(status == 'written' for _, status, _, _ in results),
        'already_done': sum(status == 'done' for _, status, _, _ in results),
        'skipped': [{'name': name, 'reason': reason} for name, status, reason, _ in sorted(results)
                    if status == 'skipped'],
        'image_sizes': sorted({size for *_, size in results if size is not None}),
        'camera': camera, 'warnings': checked.warnings,
        'look_at_error_deg': {'median': float(np.median(checked.look_at_errors)),
                              'max': float(np.max(checked.look_at_errors))},
    }
    atomic_write_text(json.dumps(report, indent=2) + '\n', os.path.join(output_dir, REPORT_NAME))
    return report


def dataset_focal(data_dir):
    """EG3D focal length of a folder made here, from camera.json (import) or synthetic_info.json; else None."""
    camera_path, synthetic_path = os.path.join(data_dir, CAMERA_INFO), os.path.join(data_dir, SYNTHETIC_INFO)
    if os.path.exists(camera_path):
        with open(camera_path) as handle:
            return float(json.load(handle)['focal'])
    if os.path.exists(synthetic_path):
        with open(synthetic_path) as handle:
            info = json.load(handle)
        return cameras.focal_from_fov(info['fov'], info['img_size'])
    return None


def _export_one(index, dataset, output_dir, img_size):
    """Write image `index` of `dataset` as <name>.png; returns (file name, camera_pos [2])."""
    path = dataset.image_paths[index]
    name = os.path.splitext(os.path.basename(path))[0] + '.png'
    with open(path, 'rb') as handle:
        image = _read_rgb(handle.read(), path)
    if img_size is not None and image.size != (img_size, img_size):
        image = image.resize((img_size, img_size), Image.Resampling.LANCZOS)
    with atomic_path(os.path.join(output_dir, name)) as tmp:
        image.save(tmp, format='PNG')
    return name, dataset.read_camera_pos(dataset.pose_path(index), flip=False).tolist()


def export_eg3d(dataset, output_dir, focal, img_size=None, look_at=(0.0, 0.0, 0.0), radius=1.0,
                workers=1, progress=True):
    """Write `dataset` (a PosedImageDataset: FFHQ, CATS, CARLA, PosedImageFolder) as an EG3D set.

    Each image becomes <output_dir>/<name>.png (RGB, resized to img_size when given). Its label is
    the camera our loader gives it (camera_pos, not flipped): the look-at camera on the unit
    sphere, moved to EG3D's axes and scale by cam2world_to_eg3d(look_at, radius), with the
    intrinsics [[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]]. dataset.json is written last.
    Returns:
        the labels written.
    """
    task = functools.partial(_export_one, dataset=dataset, output_dir=output_dir, img_size=img_size)
    try:
        results = sorted(_run_tasks(task, list(range(len(dataset))), workers, 'eg3d', progress))
    except SkipImage as error:
        raise DatasetError(f'{error}; replace or delete the file') from None
    camera_pos = torch.tensor([pos for _, pos in results], dtype=torch.float64)
    cam2world = cameras.look_at_cam2world(cameras.camera_origin_from_pos(camera_pos))
    eg3d_cam2world = cameras.cam2world_to_eg3d(cam2world, look_at, radius).numpy()
    intrinsics = np.array([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], dtype=np.float64)
    labels = [[name, matrix.reshape(-1).tolist() + intrinsics.reshape(-1).tolist()]
              for (name, _), matrix in zip(results, eg3d_cam2world)]
    atomic_write_text(json.dumps({'labels': labels}) + '\n', os.path.join(output_dir, DATASET_JSON))
    return labels
