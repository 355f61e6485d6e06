"""Shared test helpers (not tests): paths, the released reference outputs, tiny data and weights."""
import contextlib
import os
import sys
import types

import numpy as np
import torch
from PIL import Image

import configs
from generators import build_generator, cameras
from inversion import optimize
from inversion.storage import inversion_payload, save_inversion

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Outputs of the released implementation (tests/reference/README.md), or $GRAM_REFERENCE_DIR.
REFERENCE_DIR = os.environ.get('GRAM_REFERENCE_DIR', os.path.join(ROOT, 'tests', 'reference'))
CONFIG = 'TINY_test'


def write_tiny_dataset(root, count=6, size=16):
    """Random images in the CARLA layout: <root>/<name>.png + <root>/poses/<name>_extrinsics.npy."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, 'poses'), exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(os.path.join(root, f'{i:02d}.png'))
        cam2world = np.eye(4)
        origin = rng.normal(size=3)
        cam2world[:3, 3] = origin / np.linalg.norm(origin)
        np.save(os.path.join(root, 'poses', f'{i:02d}_extrinsics.npy'), cam2world)
    return root


RAW_SEED = 0      # seed of the generator.pth weights
SHADOW_SEED = 1   # seed of the weights stored as EMA shadow


def seeded_generator(seed, config_name=CONFIG):
    torch.manual_seed(seed)
    return build_generator(configs.get_config(config_name))


class FakeEMA:
    """Stands in for torch_ema's class while pickling (renamed below)."""

    def __init__(self, parameters, decay, num_updates):
        self.decay = decay
        self.num_updates = num_updates
        self.shadow_params = [p.clone().detach() for p in parameters]
        self.collected_params = []


@contextlib.contextmanager
def fake_torch_ema_module(cls, name='ExponentialMovingAverage'):
    """Register `cls` as torch_ema.ema.<name> in sys.modules for the duration of a save."""
    saved = {key: sys.modules.get(key) for key in ('torch_ema', 'torch_ema.ema')}
    original = (cls.__module__, cls.__qualname__)
    cls.__module__, cls.__qualname__ = 'torch_ema.ema', name
    module = types.ModuleType('torch_ema.ema')
    setattr(module, name, cls)
    sys.modules['torch_ema'] = types.ModuleType('torch_ema')
    sys.modules['torch_ema.ema'] = module
    try:
        yield
    finally:
        cls.__module__, cls.__qualname__ = original
        for key, previous in saved.items():
            if previous is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = previous


def save_fake_released_ema(parameters, path, decay=0.999, num_updates=42):
    """torch.save a fake torch_ema object; the fake module exists only during the save."""
    with fake_torch_ema_module(FakeEMA):
        torch.save(FakeEMA(parameters, decay, num_updates), path)


def make_released_pair(folder, prefix=''):
    """Write <prefix>generator.pth + <prefix>ema.pth; returns (generator path, shadow state_dict)."""
    raw = seeded_generator(RAW_SEED)
    shadow = seeded_generator(SHADOW_SEED)
    generator_path = os.path.join(folder, f'{prefix}generator.pth')
    torch.save(raw.state_dict(), generator_path)
    save_fake_released_ema(list(shadow.parameters()), os.path.join(folder, f'{prefix}ema.pth'))
    return generator_path, shadow.state_dict()


# Views of a known sphere (geometry tests).
RADIUS = 0.2
FOV = 30.0
SIZE = 48
COLOR = (0.25, 0.5, 0.75)


def sphere_views(camera_pos, size=SIZE, fov=FOV, radius=RADIUS, center=(0.0, 0.0, 0.0)):
    """Exact views (as views.render_views returns them) of an opaque sphere of constant colour COLOR."""
    cam2world = cameras.look_at_cam2world(cameras.camera_origin_from_pos(camera_pos))
    directions = cameras.camera_ray_directions(size, fov, 0, size * size, 'cpu')
    origins, world_directions = cameras.world_rays(cam2world, directions)         # [C, 3], [C, R, 3]
    offset = origins - torch.tensor(center)                                        # [C, 3]
    b = (world_directions * offset[:, None, :]).sum(-1)                            # [C, R]
    c = (offset * offset).sum(-1, keepdim=True) - radius ** 2
    disc = b * b - c
    hit = disc > 0
    depth = torch.where(hit, -b - disc.clamp(min=0).sqrt(), torch.full_like(b, float('nan')))
    shape = (len(camera_pos), size, size)
    return {'opacity': hit.float().reshape(shape), 'depth': depth.reshape(shape),
            'rgb': torch.tensor(COLOR).expand(*shape, 3).clone(), 'cam2world': cam2world}


def write_inversion(path, config, frequencies, phase_shifts, camera_pos, generator=None):
    """Save an inversion file as invert.py does (inversion.storage) holding FiLM parameters [1, 9 H],
    camera_pos [1, 2] and, when `generator` is given, its weights as the fine-tuned ones; returns the path."""
    result = optimize.Result(frequencies, phase_shifts, camera_pos, generator, [], [], camera_pos)
    save_inversion(inversion_payload(result, config), str(path))
    return str(path)


def read_ply(path):
    """Minimal reader for the files geometry.mesh_io.write_ply produces -> (vertices, faces, colors)."""
    data = path.read_bytes()
    header, body = data.split(b'end_header\n', 1)
    lines = header.decode('ascii').splitlines()
    assert lines[:2] == ['ply', 'format binary_little_endian 1.0']
    num_vertices = int(next(line for line in lines if line.startswith('element vertex')).split()[-1])
    num_faces = int(next(line for line in lines if line.startswith('element face')).split()[-1])
    vertex_type = np.dtype([('xyz', '<f4', (3,)), ('rgb', 'u1', (3,))])
    face_type = np.dtype([('count', 'u1'), ('indices', '<i4', (3,))])
    vertices = np.frombuffer(body, vertex_type, num_vertices)
    faces = np.frombuffer(body, face_type, num_faces, offset=num_vertices * vertex_type.itemsize)
    assert len(body) == num_vertices * vertex_type.itemsize + num_faces * face_type.itemsize
    assert (faces['count'] == 3).all()
    return vertices['xyz'], faces['indices'], vertices['rgb']


def stop_signal_worker(folder):
    """A stand-in training process for spawn tests: writes <folder>/ready<r>, waits for a stop
    signal (at most a minute), writes <folder>/rank<r> holding the signal number, and returns
    128 + that number."""
    import time

    from utils.signals import StopRequest
    with StopRequest() as stop_request:
        open(os.path.join(folder, f"ready{os.environ['RANK']}"), 'w').close()
        deadline = time.time() + 60
        while not stop_request.requested and time.time() < deadline:
            time.sleep(0.05)
    number = stop_request.signal_number or 0
    with open(os.path.join(folder, f"rank{os.environ['RANK']}"), 'w') as handle:
        handle.write(str(number))
    return 128 + number
