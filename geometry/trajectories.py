"""Camera paths around a generated subject: the render settings of a config's camera family and
the sweep / orbit / grid trajectories of render_multiview_images.py (docs/design.md §9).

Camera family, chosen from the config's dataset class:
  faces / cats (FFHQ, CATS, anything not listed in OBJECT_DATASETS): fov 12, pitch pi/2, view
  dependence locked.
  objects (CARLA, PosedImageFolder = the synthetic configs): fov 35, pitch 60 degrees from +y,
  view dependence kept.
Angles are (pitch, yaw) in radians: pitch the polar angle from +y, yaw pi/2 facing the front.
"""
import math

import numpy as np

SWEEP_YAW = 0.4                   # released faces sweep amplitude, radians
GRID_PITCH = 0.2                  # pitch half-range of the grid trajectory, radians
FACE_FOV = 12                     # released render fov for faces and cats, degrees
OBJECT_FOV = 35                   # released render fov for CARLA, degrees
OBJECT_PITCH = math.pi * 60 / 180  # released CARLA pitch (polar angle from +y)
OBJECT_DATASETS = ('CARLA', 'PosedImageFolder')  # dataset classes rendered as objects (orbit)
TRAJECTORIES = ('released', 'sweep', 'orbit', 'grid')


def camera_family(config):
    """Render settings of the config's family: {'name', 'fov', 'pitch', 'lock_view_dependence'}."""
    if config['dataset']['class'] in OBJECT_DATASETS:
        return {'name': 'object', 'fov': OBJECT_FOV, 'pitch': OBJECT_PITCH, 'lock_view_dependence': False}
    return {'name': 'face', 'fov': FACE_FOV, 'pitch': math.pi / 2, 'lock_view_dependence': True}


def sweep_yaw_offsets(frames, amplitude=SWEEP_YAW):
    """Yaw offsets of the sweep: F floats going -a -> +a -> -a (a triangle wave).

    Even F: exactly the released lists, linspace(-a, a, F//2 + 1)[:-1] + linspace(a, -a, F//2 + 1)[:-1].
    Odd F (fix): the same triangle wave sampled at t = i / F, so there are F real angles.
    """
    if frames % 2 == 0:
        half = frames // 2 + 1
        return list(np.linspace(-amplitude, amplitude, half)[:-1]) + list(np.linspace(amplitude, -amplitude, half)[:-1])
    phases = np.arange(frames) / frames                              # t in [0, 1)
    return list(-amplitude + 2 * amplitude * (1 - np.abs(2 * phases - 1)))  # -a at t=0, +a at t=1/2


def orbit_yaw_offsets(frames):
    """Full-turn yaw offsets: linspace(-pi, pi, F + 1) without its last value (released CARLA)."""
    return list(np.linspace(-math.pi, math.pi, frames + 1)[:-1])


def grid_shape(frames):
    """rows x cols = frames with rows the largest divisor <= sqrt(frames) (a prime gives 1 row)."""
    rows = max(d for d in range(1, math.isqrt(frames) + 1) if frames % d == 0)
    return rows, frames // rows


def grid_offsets(frames, yaw_amplitude=SWEEP_YAW, pitch_amplitude=GRID_PITCH):
    """(pitch offsets, yaw offsets) of a rows x cols grid, rows visited in alternating directions."""
    rows, cols = grid_shape(frames)
    pitches = np.linspace(-pitch_amplitude, pitch_amplitude, rows) if rows > 1 else np.zeros(1)
    yaws = np.linspace(-yaw_amplitude, yaw_amplitude, cols) if cols > 1 else np.zeros(1)
    pitch_list, yaw_list = [], []
    for row, pitch in enumerate(pitches):
        for yaw in (yaws if row % 2 == 0 else yaws[::-1]):
            pitch_list.append(pitch)
            yaw_list.append(yaw)
    return pitch_list, yaw_list


def trajectory_angles(name, frames, family, yaw_amplitude=SWEEP_YAW):
    """Absolute (pitch, yaw) lists of length `frames` for trajectory `name` and camera family.

    yaw_amplitude: half-range of the sweep and grid yaws, radians (the orbit always turns fully).
    """
    if name == 'released':
        name = 'orbit' if family['name'] == 'object' else 'sweep'
    if name == 'sweep':
        yaw_offsets, pitch_offsets = sweep_yaw_offsets(frames, yaw_amplitude), [0.0] * frames
    elif name == 'orbit':
        yaw_offsets, pitch_offsets = orbit_yaw_offsets(frames), [0.0] * frames
    elif name == 'grid':
        pitch_offsets, yaw_offsets = grid_offsets(frames, yaw_amplitude)
    else:
        raise ValueError(f"unknown trajectory '{name}'; choose one of {', '.join(TRAJECTORIES)}")
    pitches = [float(offset) + family['pitch'] for offset in pitch_offsets]
    yaws = [float(offset) + math.pi / 2 for offset in yaw_offsets]
    return pitches, yaws
