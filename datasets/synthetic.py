"""Built-in procedural 3D dataset: toy cars ray-cast analytically, no download needed.

Every image shows one toy car (body with a chamfered nose, a cabin with slanted windshield
and rear window, four wheels with hubs, yellow headlights and a dark grille at the front, red
tail lights at the back) with random proportions and paint, lit by one directional light plus
ambient (Lambert), on a white background. The car is fixed in the world with its front facing
+z; the camera moves, so the pose says which side is seen.

Cameras follow docs/design.md §1: a camera at distance 1 from the origin, looking at it, with
origin = (sin phi cos theta, cos phi, sin phi sin theta). Poses are drawn from a config's pose
distribution (generators.cameras.sample_camera_positions); the default is CARLA_default's
(spherical_uniform over the upper hemisphere), and a config such as SYNTHETIC_demo can narrow it
so that the data and the generator's training poses match. Worked example: phi = theta = pi/2
is the camera at (0, 0, 1) that sees the car's front. The car fits in a ball of radius
OBJECT_RADIUS around the origin, so every visible surface lies between RAY_START and RAY_END
along every ray, and the frame (FOV_DEG) holds it from every view.

Poses are stored as CARLA extrinsics: a 4x4 camera-to-world matrix in CARLA's world axes
(z up), camera axes x right, y up, looking down -z. CARLA axes relate to ours (y up) by
x_carla = z, y_carla = x, z_carla = y, which the CARLA reader undoes (docs/design.md §7 row reorder).
Depth is the distance along the unit ray from the camera (float32), 0 on the background.
"""
import collections
import colorsys
import functools
import json
import math
import multiprocessing
import os

import numpy as np
import torch
from tqdm import tqdm

from generators import cameras
from utils.files import atomic_path, atomic_write_text
from utils.images import write_png

# Camera: use the same fov and ray range in the training config (CARLA_default's camera).
FOV_DEG = 30.0           # vertical (and horizontal) field of view, degrees
RAY_START = 0.7          # nearest depth the generator samples
RAY_END = 1.3            # farthest depth the generator samples
CAMERA_RADIUS = 1.0      # cameras sit on the unit sphere
OBJECT_RADIUS = 0.28     # every car lies inside this ball around the origin

# Pose distribution keys of a generator config (generators.cameras.sample_camera_positions).
POSE_KEYS = ('sample_dist', 'h_mean', 'h_stddev', 'v_mean', 'v_stddev')
# Default: CARLA_default's spherical_uniform, theta all around, phi from 0 to ~87 degrees.
CARLA_POSES = {'sample_dist': 'spherical_uniform', 'h_mean': math.pi / 2, 'h_stddev': math.pi,
               'v_mean': math.pi * 42.5 / 180, 'v_stddev': math.pi * 42.5 / 180}

# Lighting (Lambert + ambient) and background.
# The light lies in the car's mirror plane (x = 0), so a left-right flipped image is exactly the
# view from the mirrored camera (theta -> pi - theta), as the datasets' flip augmentation assumes.
LIGHT_DIR = np.array([0.0, 1.0, 0.5]) / np.linalg.norm([0.0, 1.0, 0.5])  # towards the light
AMBIENT = 0.5            # light reaching every surface
DIFFUSE = 0.55           # strength of the directional light
BACKGROUND = 1.0         # white

# Fixed paints.
GLASS = (0.16, 0.2, 0.27)
TYRE = (0.1, 0.1, 0.1)
HUB = (0.7, 0.7, 0.72)
HEADLIGHT = (1.0, 0.92, 0.5)
TAILLIGHT = (0.85, 0.06, 0.06)
GRILLE = (0.15, 0.15, 0.15)
HUB_FRACTION = 0.55      # hub radius / wheel radius
MIN_ROOF_FRACTION = 0.3  # flat roof length / cabin length, at least

# CARLA world axes from ours: p_carla = OURS_TO_CARLA @ p_ours.
OURS_TO_CARLA = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

# A convex polyhedron {p : normals @ p <= offsets} with one colour per face.
ConvexPart = collections.namedtuple('ConvexPart', ['normals', 'offsets', 'face_colours'])
# A wheel: a cylinder with its axis along world x; caps show a hub inside the tyre.
Wheel = collections.namedtuple('Wheel', ['center', 'radius', 'half_width'])


# ------------------------------------------------------------------------------------------
# Cameras (docs/design.md §1) and the CARLA pose format.
# ------------------------------------------------------------------------------------------
def camera_origin(phi, theta, radius=CAMERA_RADIUS):
    """Camera position [3] for polar angle phi (from +y) and azimuth theta (generators.cameras)."""
    camera_pos = torch.tensor([[phi, theta]], dtype=torch.float64)
    return cameras.camera_origin_from_pos(camera_pos, radius)[0].numpy()


def look_at_cam2world(origin):
    """4x4 camera-to-world matrix for a camera at `origin` [3] looking at the world origin."""
    return cameras.look_at_cam2world(torch.as_tensor(origin, dtype=torch.float64).reshape(1, 3))[0].numpy()


def camera_ray_directions(img_size, fov_deg=FOV_DEG):
    """Unit camera-space ray directions [N*N, 3], pixels row-major (x left->right, y top->bottom)."""
    return cameras.camera_ray_directions(img_size, fov_deg, 0, img_size * img_size, 'cpu',
                                         dtype=torch.float64).numpy()


def to_carla_extrinsics(cam2world):
    """Our 4x4 camera-to-world matrix -> the same camera in CARLA world axes (4x4)."""
    extrinsics = np.eye(4)
    extrinsics[:3, :] = OURS_TO_CARLA @ cam2world[:3, :]
    return extrinsics


def poses_from_config(config):
    """The pose distribution (POSE_KEYS) of a config, checked against the renderer's camera.

    Raises ValueError if the config's fov or ray range differs from the one the cars are framed
    for (FOV_DEG, RAY_START, RAY_END): such data would not match what the generator renders.
    """
    camera = config['camera']
    expected = {'fov': FOV_DEG, 'ray_start': RAY_START, 'ray_end': RAY_END}
    for key, value in expected.items():
        if not math.isclose(camera[key], value):
            raise ValueError(f"config camera {key}={camera[key]} but the synthetic cars are framed for "
                             f"{key}={value}; use a config built on CARLA_default's camera (e.g. SYNTHETIC_demo)")
    return {key: config['generator']['kwargs'][key] for key in POSE_KEYS}


def sample_camera_pos(rng, poses=CARLA_POSES):
    """Draw (phi, theta) from the pose distribution `poses` (POSE_KEYS), seeded by `rng`."""
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 63)))
    _, camera_pos = cameras.sample_camera_positions(1, device='cpu', generator=generator, **poses)
    phi, theta = camera_pos[0].tolist()
    return phi, theta


# ------------------------------------------------------------------------------------------
# Ray-primitive intersections. origin [3], directions [R, 3] unit; misses have t = inf.
# Each returns t [R], unit normals [R, 3] and surface colours [R, 3].
# ------------------------------------------------------------------------------------------
def intersect_convex(origin, directions, part):
    """Ray entry into a convex polyhedron (camera outside it)."""
    denom = directions @ part.normals.T  # [R, P]: < 0 entering the half-space, > 0 leaving
    gap = part.offsets - part.normals @ origin  # [P]: >= 0 where the origin is inside
    with np.errstate(divide='ignore', invalid='ignore'):
        t_plane = gap / denom  # [R, P]
    t_enter = np.where(denom < 0, t_plane, -np.inf)
    t_exit = np.where(denom > 0, t_plane, np.inf)
    parallel_outside = ((denom == 0) & (gap < 0)).any(axis=1)
    face = t_enter.argmax(axis=1)  # [R] plane through which the ray enters
    t_near = t_enter[np.arange(len(face)), face]
    hit = (t_near <= t_exit.min(axis=1)) & (t_near > 0) & ~parallel_outside
    t = np.where(hit, t_near, np.inf)
    return t, part.normals[face], part.face_colours[face]


def intersect_wheel(origin, directions, wheel):
    """Ray entry into a finite cylinder with its axis along x (tyre on the side, hub on caps)."""
    ox, oy, oz = origin - wheel.center
    dx, dy, dz = directions.T  # [R] each
    # Infinite cylinder (y^2 + z^2 = r^2): a t^2 + b t + c = 0.
    a = dy * dy + dz * dz
    b = 2 * (oy * dy + oz * dz)
    c = oy * oy + oz * oz - wheel.radius ** 2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0))
    with np.errstate(divide='ignore', invalid='ignore'):
        t_side_in = (-b - root) / (2 * a)
        t_side_out = (-b + root) / (2 * a)
        t_cap_a = (-wheel.half_width - ox) / dx
        t_cap_b = (wheel.half_width - ox) / dx
    # Rays parallel to the axis: inside the infinite cylinder for all t iff c <= 0.
    parallel = a == 0
    t_side_in = np.where(parallel, np.where(c <= 0, -np.inf, np.inf), t_side_in)
    t_side_out = np.where(parallel, np.where(c <= 0, np.inf, -np.inf), t_side_out)
    # Rays perpendicular to the axis: inside the slab for all t iff |ox| <= half_width.
    inside_slab = abs(ox) <= wheel.half_width
    t_cap_in = np.where(dx == 0, -np.inf if inside_slab else np.inf, np.minimum(t_cap_a, t_cap_b))
    t_cap_out = np.where(dx == 0, np.inf if inside_slab else -np.inf, np.maximum(t_cap_a, t_cap_b))

    on_cap = t_cap_in > t_side_in  # the ray enters through a cap
    t_near = np.maximum(t_side_in, t_cap_in)
    t_far = np.minimum(t_side_out, t_cap_out)
    hit = (disc >= 0) & (t_near <= t_far) & (t_near > 0)
    t = np.where(hit, t_near, np.inf)

    t_safe = np.where(hit, t_near, 0.0)
    hit_y = oy + t_safe * dy
    hit_z = oz + t_safe * dz
    cap_normal = np.stack([-np.sign(dx), np.zeros_like(dx), np.zeros_like(dx)], axis=1)
    side_normal = np.stack([np.zeros_like(dx), hit_y, hit_z], axis=1) / wheel.radius
    normals = np.where(on_cap[:, None], cap_normal, side_normal)
    is_hub = on_cap & (hit_y ** 2 + hit_z ** 2 < (HUB_FRACTION * wheel.radius) ** 2)
    colours = np.where(is_hub[:, None], np.array(HUB), np.array(TYRE))
    return t, normals, colours


def intersect_scene(origin, directions, parts):
    """Nearest hit over all parts: t [R] (inf = background), normals [R, 3], colours [R, 3]."""
    t_best = np.full(len(directions), np.inf)
    normals = np.zeros((len(directions), 3))
    colours = np.zeros((len(directions), 3))
    for part in parts:
        intersect = intersect_wheel if isinstance(part, Wheel) else intersect_convex
        t, part_normals, part_colours = intersect(origin, directions, part)
        closer = t < t_best
        t_best = np.where(closer, t, t_best)
        normals[closer] = part_normals[closer]
        colours[closer] = part_colours[closer]
    return t_best, normals, colours


# ------------------------------------------------------------------------------------------
# Scenes.
# ------------------------------------------------------------------------------------------
def box_part(lower, upper, colour):
    """Axis-aligned box [lower, upper] (3-vectors) in one colour."""
    normals = np.concatenate([np.eye(3), -np.eye(3)])  # +x, +y, +z, -x, -y, -z
    offsets = np.concatenate([upper, -np.asarray(lower, dtype=np.float64)])
    return ConvexPart(normals, offsets, np.tile(np.asarray(colour, dtype=np.float64), (6, 1)))


def _plane_through(normal, point):
    """(unit normal, offset) of the plane through `point` with outward `normal`."""
    normal = np.asarray(normal, dtype=np.float64)
    normal = normal / np.linalg.norm(normal)
    return normal, float(normal @ point)


def _convex_from_planes(planes, colours):
    normals = np.stack([normal for normal, _ in planes])
    offsets = np.array([offset for _, offset in planes])
    return ConvexPart(normals, offsets, np.array(colours, dtype=np.float64))


def random_paint(rng):
    """A car paint: mostly saturated colours, sometimes grey (never near white)."""
    if rng.random() < 0.2:
        return (rng.uniform(0.2, 0.6),) * 3
    return colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.45, 0.9), rng.uniform(0.55, 0.95))


def sample_car(rng):
    """A random toy car as a list of parts; front faces +z, y is up, centred on the origin."""
    half_length = rng.uniform(0.17, 0.22)
    half_width = rng.uniform(0.08, 0.105)
    height = rng.uniform(0.15, 0.21)
    wheel_radius = rng.uniform(0.038, 0.052)
    wheel_half_width = rng.uniform(0.014, 0.02)
    body_height = rng.uniform(0.055, 0.08)
    paint = random_paint(rng)
    ground = -height / 2

    # Body: a box with a chamfered front-top edge (the hood's nose).
    body_bottom = ground + 0.55 * wheel_radius
    body_top = body_bottom + body_height
    nose = rng.uniform(0.01, 0.025)
    body = _convex_from_planes(
        [_plane_through([1, 0, 0], [half_width, 0, 0]), _plane_through([-1, 0, 0], [-half_width, 0, 0]),
         _plane_through([0, 1, 0], [0, body_top, 0]), _plane_through([0, -1, 0], [0, body_bottom, 0]),
         _plane_through([0, 0, 1], [0, 0, half_length]), _plane_through([0, 0, -1], [0, 0, -half_length]),
         _plane_through([0, 1, 1], [0, body_top, half_length - nose])],
        [paint] * 7)

    # Cabin: glass sides and slanted windshield / rear window, painted roof.
    cabin_top = ground + height
    cabin_height = cabin_top - body_top
    cabin_back = -half_length * rng.uniform(0.55, 0.9)
    cabin_front = half_length * rng.uniform(-0.1, 0.35)
    windshield_run = cabin_height * rng.uniform(0.6, 1.3)
    rear_run = cabin_height * rng.uniform(0.1, 0.6)
    max_runs = (1 - MIN_ROOF_FRACTION) * (cabin_front - cabin_back)
    if windshield_run + rear_run > max_runs:  # keep a flat roof, not a wedge
        shrink = max_runs / (windshield_run + rear_run)
        windshield_run, rear_run = windshield_run * shrink, rear_run * shrink
    cabin_half_width = half_width * rng.uniform(0.8, 0.92)
    cabin = _convex_from_planes(
        [_plane_through([1, 0, 0], [cabin_half_width, 0, 0]), _plane_through([-1, 0, 0], [-cabin_half_width, 0, 0]),
         _plane_through([0, 1, 0], [0, cabin_top, 0]), _plane_through([0, -1, 0], [0, body_top, 0]),
         _plane_through([0, windshield_run, cabin_height], [0, body_top, cabin_front]),
         _plane_through([0, rear_run, -cabin_height], [0, body_top, cabin_back])],
        [GLASS, GLASS, paint, GLASS, GLASS, GLASS])

    # Lights and grille: thin boxes proud of the front and back faces.
    light_top = body_top - nose - 0.004
    light_bottom = light_top - rng.uniform(0.012, 0.02)
    proud = 0.004  # how far lights stick out of the body
    inner, outer = 0.45 * half_width, 0.88 * half_width
    details = [
        box_part([-0.35 * half_width, light_bottom, half_length - proud], [0.35 * half_width, light_top, half_length + proud], GRILLE),
        box_part([inner, light_bottom, half_length - proud], [outer, light_top, half_length + proud], HEADLIGHT),
        box_part([-outer, light_bottom, half_length - proud], [-inner, light_top, half_length + proud], HEADLIGHT),
        box_part([inner, light_bottom, -half_length - proud], [outer, light_top, -half_length + proud], TAILLIGHT),
        box_part([-outer, light_bottom, -half_length - proud], [-inner, light_top, -half_length + proud], TAILLIGHT),
    ]

    # Wheels, slightly proud of the body sides.
    axle_front = half_length * rng.uniform(0.55, 0.68)
    axle_back = -half_length * rng.uniform(0.55, 0.68)
    wheel_x = half_width - 0.5 * wheel_half_width
    wheels = [Wheel(np.array([side * wheel_x, ground + wheel_radius, axle]), wheel_radius, wheel_half_width)
              for side in (-1, 1) for axle in (axle_front, axle_back)]
    return [body, cabin] + details + wheels


# ------------------------------------------------------------------------------------------
# Rendering.
# ------------------------------------------------------------------------------------------
def render_view(parts, camera_pos, img_size, fov_deg=FOV_DEG):
    """Ray-cast `parts` from the camera at camera_pos = (phi, theta).

    Returns:
        rgb [N, N, 3] float32 in [0, 1] (white background), depth [N, N] float32 (ray distance,
        0 on the background), mask [N, N] bool (object pixels), cam2world [4, 4] (our axes).
    """
    cam2world = look_at_cam2world(camera_origin(*camera_pos))
    directions = camera_ray_directions(img_size, fov_deg) @ cam2world[:3, :3].T  # [N*N, 3] world
    t, normals, colours = intersect_scene(cam2world[:3, 3], directions, parts)

    mask = np.isfinite(t)
    shade = AMBIENT + DIFFUSE * np.clip(normals @ LIGHT_DIR, 0, None)  # [N*N]
    rgb = np.where(mask[:, None], np.clip(colours * shade[:, None], 0, 1), BACKGROUND)
    depth = np.where(mask, t, 0.0)
    shape = (img_size, img_size)
    return (rgb.reshape(*shape, 3).astype(np.float32), depth.reshape(shape).astype(np.float32),
            mask.reshape(shape), cam2world)


def render_example(index, seed, img_size, poses=CARLA_POSES):
    """Image `index` of the dataset made with `seed`: (rgb, depth, mask, CARLA extrinsics [4, 4]).

    Depends only on (seed, index, poses), so any worker order gives the same dataset.
    """
    rng = np.random.default_rng([seed, index])
    parts = sample_car(rng)
    camera_pos = sample_camera_pos(rng, poses)
    rgb, depth, mask, cam2world = render_view(parts, camera_pos, img_size)
    return rgb, depth, mask, to_carla_extrinsics(cam2world)


def render_car_views(index, seed, camera_positions, img_size):
    """RGB views [V, N, N, 3] in [0, 1] of the car of image `index` of the dataset made with `seed`,
    seen from camera_positions [(phi, theta)] * V (e.g. to compare one car's colour across views)."""
    parts = sample_car(np.random.default_rng([seed, index]))  # render_example's first draws
    return np.stack([render_view(parts, camera_pos, img_size)[0] for camera_pos in camera_positions])


# ------------------------------------------------------------------------------------------
# Dataset writing.
# ------------------------------------------------------------------------------------------
def example_paths(output_dir, name):
    """Output files of one example: image, CARLA extrinsics, depth, mask."""
    return {
        'image': os.path.join(output_dir, f'{name}.png'),
        'pose': os.path.join(output_dir, 'poses', f'{name}_extrinsics.npy'),
        'depth': os.path.join(output_dir, 'depth', f'{name}_depth.npy'),
        'mask': os.path.join(output_dir, 'masks', f'{name}_mask.png'),
    }


def count_examples_from(output_dir, first_index):
    """Number of example images <index>.png in `output_dir` with index >= first_index."""
    if not os.path.isdir(output_dir):
        return 0
    names = (os.path.splitext(name) for name in os.listdir(output_dir))
    return sum(1 for stem, extension in names
               if extension == '.png' and stem.isdigit() and int(stem) >= first_index)


def _write_example(index, output_dir, seed, img_size, poses, overwrite):
    """Render and write one example; returns True if written, False if it already existed."""
    paths = example_paths(output_dir, f'{index:06d}')
    if not overwrite and all(os.path.exists(path) for path in paths.values()):
        return False
    rgb, depth, mask, extrinsics = render_example(index, seed, img_size, poses)
    with atomic_path(paths['pose']) as tmp:
        np.save(tmp, extrinsics)
    with atomic_path(paths['depth']) as tmp:
        np.save(tmp, depth)
    write_png(mask.astype(np.uint8) * 255, paths['mask'])
    write_png(np.round(rgb * 255).astype(np.uint8), paths['image'])  # last: it marks a finished example
    return True


def dataset_info(num_images, img_size, seed, poses):
    """Metadata written next to the dataset (and checked on re-runs)."""
    return {
        'generator': 'datasets/synthetic.py toy cars', 'num_images': num_images,
        'img_size': img_size, 'seed': seed, 'poses': dict(poses), 'fov': FOV_DEG, 'ray_start': RAY_START,
        'ray_end': RAY_END, 'camera_radius': CAMERA_RADIUS, 'object_radius': OBJECT_RADIUS,
        'pose_format': 'CARLA extrinsics (4x4 camera-to-world, z up)',
        'depth': 'float32 [H, W] distance along the unit ray, 0 on the background',
    }


def render_synthetic_dataset(output_dir, num_images=10000, img_size=64, seed=0, poses=CARLA_POSES,
                             workers=None, overwrite=False, progress=True):
    """Write the synthetic dataset to `output_dir` (training layout of CARLA plus depth/ and masks/).

    Examples already on disk are kept unless `overwrite`. A folder made with another img_size,
    seed or pose distribution is refused (mixing them would corrupt the set), and so is
    overwriting it with fewer examples than it holds (its last ones would stay from the old set).
    Returns:
        (written, already_done) counts.
    """
    info_path = os.path.join(output_dir, 'synthetic_info.json')
    old = None
    if os.path.exists(info_path):
        with open(info_path) as handle:
            old = json.load(handle)
    same_set = old is not None and (old.get('img_size'), old.get('seed'), old.get('poses')) == (img_size, seed, dict(poses))
    if old is not None and not same_set and not overwrite:
        raise ValueError(
            f"'{output_dir}' holds a synthetic set with img_size={old.get('img_size')}, "
            f"seed={old.get('seed')}, poses={old.get('poses')}; pass --overwrite or choose another --output_dir")
    if overwrite and not same_set and (beyond := count_examples_from(output_dir, num_images)):
        raise ValueError(f"'{output_dir}' holds {beyond} more examples of another set than --num_images {num_images} "
                         f"replaces; they would stay mixed in: raise --num_images to cover them, delete the folder "
                         f"or choose another --output_dir")
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_text(json.dumps(dataset_info(num_images, img_size, seed, poses), indent=2) + '\n', info_path)

    task = functools.partial(_write_example, output_dir=output_dir, seed=seed, img_size=img_size,
                             poses=dict(poses), overwrite=overwrite)
    workers = workers or os.cpu_count() or 1
    bar = functools.partial(tqdm, total=num_images, desc='synthetic', unit='img', disable=not progress)
    if workers == 1:
        results = [written for written in bar(map(task, range(num_images)))]
    else:
        with multiprocessing.Pool(workers) as pool:
            results = list(bar(pool.imap_unordered(task, range(num_images), chunksize=32)))
    written = sum(results)
    return written, len(results) - written
