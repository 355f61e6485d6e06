"""Landmark files, pose fitting (POS) and alignment crops of the released preprocessing (docs/design.md §8).

Used by preprocess_dataset.py (whole raw datasets) and inversion/images.py (one raw photo).

Coordinates: landmarks passed to :func:`POS` are 2D image points with the y axis flipped to
point up (FFHQ: y' = height - 1 - y, Cats: y' = height - y). Templates are 3D points in the
released template frames. The arithmetic below follows the released code line by line,
including its odd roll formula; the only change is a documented fallback where that formula
takes the log of zero.
"""
import collections
import math
import os

import numpy as np
from PIL import Image

# 3D face template (5 points: eye, eye, nose, mouth corner, mouth corner), released values.
FACE_TEMPLATE = np.array([
    [-0.31148657, 0.09036078, 0.13377953],
    [0.30979887, 0.08972035, 0.13179526],
    [0.0032535, -0.24617933, 0.55244243],
    [-0.25216928, -0.5813392, 0.22405732],
    [0.2484662, -0.5812824, 0.22235769],
])

# 3D cat template (9 points of the CAT_DATASET annotation), released values.
CAT_TEMPLATE = np.array([
    [-4.893227, 0.255504, 3.936153],
    [4.893227, 0.255504, 3.936153],
    [0, -5.859148, 8.948051],
    [-11.579516, 3.35325, -6.676847],
    [-12.895623, 15.929962, -4.881758],
    [-5.203006, 9.29229, -3.132928],
    [5.203006, 9.29229, -3.132928],
    [12.895623, 15.929962, -4.881758],
    [11.579516, 3.35325, -6.676847],
])

# Least-squares row weights of the 9 cat landmarks (eyes and mouth count most).
CAT_LANDMARK_WEIGHTS = np.array([4, 4, 2, 0.5, 0.2, 0.2, 0.2, 0.2, 0.5])

# Scale = a·||R1|| + b·||R2||: faces average both rows, cats trust the x row more.
FACE_SCALE_MIX = (0.5, 0.5)
CAT_SCALE_MIX = (0.75, 0.25)

# The released roll correction is ln(|roll1 - roll2| in degrees); below this many degrees
# (in particular at exactly 0, where the log is -inf) we use roll2, the eye-line angle.
ROLL_DEGENERATE_DEG = 1e-6

# FFHQ crop: the face scale is mapped to RESCALE_PIXELS pixels at a 224-pixel reference crop.
FFHQ_REFERENCE_SIZE = 224
FFHQ_RESCALE_PIXELS = 95

# Cats crop: the square crop has half-size CAT_CROP_HALF_SIZE * scale (template units).
CAT_CROP_HALF_SIZE = 15

ALIGNED_SIZE = 256  # FFHQ and Cats crops are T x T

PoseFit = collections.namedtuple('PoseFit', ['yaw', 'pitch', 'roll', 'translate', 'scale'])
PoseFit.__doc__ = """Result of :func:`POS` (the released outputs, in this order).

yaw, pitch: camera angles in radians (pi/2, pi/2 = frontal); roll: in-plane angle in radians;
translate: array [2] = (tx, ty), the template origin in y-up image coordinates;
scale: pixels per template unit.
"""


class SkipSample(Exception):
    """A raw sample that cannot be used; the message is the reason (preprocess_dataset.py writes it to its report)."""


def read_ffhq_landmarks(path, height):
    """lm5p/<name>.txt: 5 rows "x y" in image coordinates -> [5, 2] with y pointing up."""
    if not os.path.exists(path):
        raise SkipSample(f'missing landmarks {path}')
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise SkipSample(f'garbled landmarks {path} ({error})') from error
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise SkipSample(f'garbled landmarks {path} (expected 5 finite rows "x y", got shape {points.shape})')
    points[:, 1] = height - 1 - points[:, 1]
    return points


def read_cat_landmarks(path, height):
    """<name>.jpg.cat: "9 x0 y0 ... x8 y8" -> [9, 2] with y pointing up (y' = height - y)."""
    if not os.path.exists(path):
        raise SkipSample(f'missing landmarks {path}')
    with open(path) as handle:
        fields = handle.read().split()
    try:
        values = np.array([float(field) for field in fields])
    except ValueError as error:
        raise SkipSample(f'garbled landmarks {path} ({error})') from error
    num_points = len(CAT_TEMPLATE)
    if len(values) != 1 + 2 * num_points or values[0] != num_points or not np.isfinite(values).all():
        raise SkipSample(f'garbled landmarks {path} (expected "{num_points}" then {2 * num_points} numbers)')
    points = values[1:].reshape(num_points, 2)
    points[:, 1] = height - points[:, 1]
    return points


def _normalize(v):
    return v / np.linalg.norm(v)


def _weighted_roll(roll1, roll2):
    """The released roll: roll2 + sign(d)·ln(|d|·180/pi)·pi/180 with d = roll1 - roll2.

    Falls back to roll2 when |d| is below ROLL_DEGENERATE_DEG (the log would be -inf or a
    meaningless huge correction)."""
    diff = roll1 - roll2
    diff_deg = abs(diff) * 180 / math.pi
    if diff_deg < ROLL_DEGENERATE_DEG:
        return roll2
    return roll2 + np.sign(diff) * math.log(diff_deg) * math.pi / 180


def POS(xp, x, cate=None):
    """Fit a weak-perspective pose to landmarks (the released "POS").

    Args:
        xp: [N, 2] landmarks in image coordinates with y pointing up.
        x: [N, 3] matching 3D template points (FACE_TEMPLATE or CAT_TEMPLATE).
        cate: None or 'ffhq' for faces, 'cats' for cats (landmark weights and scale mix).
    Returns:
        PoseFit(yaw, pitch, roll, translate [2], scale), float64.
    """
    xp = np.asarray(xp, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if xp.ndim != 2 or xp.shape[1] != 2 or x.shape != (xp.shape[0], 3):
        raise ValueError(f'POS expects xp [N, 2] and x [N, 3], got {xp.shape} and {x.shape}')
    if cate not in (None, 'ffhq', 'cats'):
        raise ValueError(f"POS: unknown cate '{cate}'; use None, 'ffhq' or 'cats'")
    npts = xp.shape[0]

    # Rows [X_i, 1, 0, 0, 0, 0] -> x_i and [0, 0, 0, 0, X_i, 1] -> y_i.
    A = np.zeros([2 * npts, 8])
    A[0::2, 0:3] = x
    A[0::2, 3] = 1
    A[1::2, 4:7] = x
    A[1::2, 7] = 1
    b = xp.reshape(2 * npts)  # (x_0, y_0, x_1, y_1, ...)
    if cate == 'cats':
        row_weights = np.repeat(CAT_LANDMARK_WEIGHTS, 2)  # [2N], both rows of a landmark
        A = A * row_weights[:, None]
        b = b * row_weights
    k = np.linalg.lstsq(A, b, rcond=None)[0]  # [8]

    R1 = k[0:3]
    R2 = k[4:7]
    translate = np.array([k[3], k[7]])

    # Camera frame from the two projection rows.
    cz = _normalize(np.cross(R1, R2))
    cx = _normalize(np.cross(np.array([0.0, 1.0, 0.0]), cz))
    cy = _normalize(np.cross(cz, cx))
    yaw = math.atan2(-cz[0], cz[2]) + math.pi / 2
    pitch = math.atan(-cz[1] / np.linalg.norm(cz[[0, 2]])) + math.pi / 2

    # Roll: the rows' angle to the camera axes, pulled towards the eye-line angle.
    # (Cosines are clipped to [-1, 1]: rounding can push an exact alignment just past 1, where
    # the released arccos returns nan.)
    cos_x = np.clip(np.dot(R1, cx) / np.linalg.norm(R1), -1, 1)
    cos_y = np.clip(np.dot(R2, cy) / np.linalg.norm(R2), -1, 1)
    roll_x = np.sign(np.dot(cz, np.cross(cx, R1))) * math.acos(cos_x)
    roll_y = np.sign(np.dot(cz, np.cross(cy, R2))) * math.acos(cos_y)
    roll1 = (roll_x + roll_y) / 2
    roll2 = math.atan2(xp[0, 1] - xp[1, 1], xp[1, 0] - xp[0, 0])
    roll = _weighted_roll(roll1, roll2)

    mix = CAT_SCALE_MIX if cate == 'cats' else FACE_SCALE_MIX
    scale = mix[0] * np.linalg.norm(R1) + mix[1] * np.linalg.norm(R2)
    return PoseFit(float(yaw), float(pitch), float(roll), translate, float(scale))


def fit_pose(landmarks, cate):
    """POS on y-up landmarks; a fit that is not finite (degenerate landmarks) raises SkipSample."""
    template = CAT_TEMPLATE if cate == 'cats' else FACE_TEMPLATE
    with np.errstate(invalid='ignore', divide='ignore'):
        pos = POS(landmarks, template, cate=cate)
    values = [pos.yaw, pos.pitch, pos.roll, pos.scale, *pos.translate]
    if not np.isfinite(values).all() or pos.scale <= 0:
        raise SkipSample('degenerate landmarks (pose fit is not finite)')
    return pos


def _as_pil(img):
    return img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))


def align_img_ffhq(img, pos, target_size=ALIGNED_SIZE):
    """Scale and crop a face image around its POS fit (released FFHQ alignment).

    Args:
        img: PIL image (or uint8 array [H, W, C]) of the raw photo.
        pos: PoseFit from :func:`POS` on the y-up landmarks (uses translate and scale).
        target_size: output side T.
    Returns:
        PIL image [T, T], same mode as the input. A crop that leaves the resized image is
        filled by reflect padding (edge pixel not repeated).
    """
    img = _as_pil(img)
    w0, h0 = img.size
    tx, ty = pos.translate
    s = pos.scale / target_size * FFHQ_REFERENCE_SIZE
    w = int(w0 / s * FFHQ_RESCALE_PIXELS)
    h = int(h0 / s * FFHQ_RESCALE_PIXELS)
    resized = np.asarray(img.resize((w, h), resample=Image.LANCZOS))

    # int() truncates toward zero, as in the released code.
    left = int(w / 2 - target_size / 2 + (tx - w0 / 2) * FFHQ_RESCALE_PIXELS / s)
    up = int(h / 2 - target_size / 2 + (h0 / 2 - ty) * FFHQ_RESCALE_PIXELS / s)
    overhang = max(0, -left, -up, left + target_size - w, up + target_size - h)
    if overhang > 0:
        pad = [(overhang, overhang), (overhang, overhang)] + [(0, 0)] * (resized.ndim - 2)
        resized = np.pad(resized, pad, mode='reflect')
        left += overhang
        up += overhang
    crop = resized[up:up + target_size, left:left + target_size]
    return Image.fromarray(np.ascontiguousarray(crop))


def align_img_cats(img, pos, target_size=ALIGNED_SIZE):
    """Crop a cat image around its POS fit with the roll removed (released Cats alignment).

    Args:
        img: PIL image (or uint8 array [H, W, C]) of the raw photo.
        pos: PoseFit from :func:`POS` with cate='cats' on the y-up landmarks (y' = height - y).
        target_size: output side T.
    Returns:
        PIL image [T, T]; parts outside the photo are black.
    """
    img = _as_pil(img)
    w0, h0 = img.size
    tx, ty = pos.translate
    half = CAT_CROP_HALF_SIZE * pos.scale
    pad = int(half)

    padded = Image.new(img.mode, (w0 + 2 * pad, h0 + 2 * pad))  # black
    padded.paste(img, (pad, pad))
    cx = tx + pad
    cy = h0 - ty + pad
    rotated = padded.rotate(pos.roll * 180 / math.pi, resample=Image.BICUBIC, center=(cx, cy))
    box = (cx - half, cy - half, cx + half, cy + half)
    return rotated.resize((target_size, target_size), resample=Image.LANCZOS, box=box)
