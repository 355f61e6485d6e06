"""The browser's camera as our camera, and the picture the generator renders for it.

viser reports a browser's camera as a rotation R_world_camera (quaternion wxyz) and a position, in
OpenCV camera axes (x right, y down, looking along +z), plus the vertical field of view (radians,
from the top edge of the canvas to the bottom edge) and the canvas aspect ratio. The viewer sets
the scene's up direction to +y, so viser's world axes are ours (docs/design.md §1.1): viser's
cameras are EG3D's kind of camera (our world axes, OpenCV camera axes) with look-at point 0 and
radius 1, and generators.cameras.eg3d_to_cam2world converts them (our camera axes, §1.3, are x
right, y up, looking along -z):

    cam2world rotation = R_world_camera @ diag(1, -1, -1),   translation = position.

Worked example: the frontal browser camera at (0, 0, 1) looking at the origin with +y up has
R_world_camera = diag(1, -1, -1) (wxyz = (0, 1, 0, 0)), so its cam2world is the identity rotation
with translation (0, 0, 1): exactly cameras.look_at_cam2world of the frontal origin.

Pixel grid. The browser stretches the picture over its canvas; a picture `rows` pixels high has
square pixels of side 2 tan(fov / 2) / rows, centred at y = tan(fov / 2) (rows - 1 - 2 i) / rows.
Our renderer (§1.4) places the centres of a G x G grid at linspace(-1, 1, G) tan(F / 2), so the
grid's fov F with tan(F / 2) = tan(fov / 2) (G - 1) / rows gives the same pixels. We take
G = max(rows, cols), with cols the canvas width in pixels rounded to the parity of rows, render
the band of rows [(G - rows) / 2, (G + rows) / 2) as a flat pixel range (nothing wasted on a wide
canvas) and keep the middle cols columns.

Distance. Rays are sampled from ray_start to ray_end for a camera at distance 1 from the origin;
a browser camera at distance d (after zooming) samples from ray_start + d - 1 to ray_end + d - 1,
so the same region around the origin is searched for manifolds.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch
from viser import transforms

from generators import cameras
from generators.renderer import DEFAULT_CHUNK_RAYS
from geometry.views import DEFAULT_OPACITY_THRESHOLD, object_opacity_and_depth
from utils.images import PIXEL_MAX, to_uint8

CAMERA_RADIUS = 1.0                           # distance of our cameras from the origin (§1.1)
WORLD_ORIGIN = (0.0, 0.0, 0.0)                # where our cameras look
MIN_RAY_START = 1e-3                          # nearest sample depth for a camera close to the object
WORLD_UP = (0.0, 1.0, 0.0)                    # our world up axis (§1.1)
MIN_ROWS = 2                                  # a picture needs two rows to have a field of view
VIEW_MODES = ('rgb', 'depth', 'weight')       # colour; depth (near = bright); composited object weight


@dataclass(frozen=True)
class BrowserCamera:
    """A browser's camera as viser reports it.

    wxyz: R_world_camera as a unit quaternion (OpenCV camera axes); position: [3] world;
    fov: vertical field of view in radians (canvas edge to edge); aspect: canvas width / height.
    """
    wxyz: tuple
    position: tuple
    fov: float
    aspect: float

    @classmethod
    def from_handle(cls, camera):
        """Snapshot of a viser CameraHandle (client.camera)."""
        return cls(tuple(float(v) for v in camera.wxyz), tuple(float(v) for v in camera.position),
                   float(camera.fov), float(camera.aspect))


@dataclass(frozen=True)
class ViewGrid:
    """Where a picture of rows x cols pixels lies in our square grid (see the module docstring).

    grid_size: G; fov: the grid's fov F in degrees (our convention); first_row, first_col: the
    picture's top-left pixel in the grid.
    """
    rows: int
    cols: int
    grid_size: int
    fov: float
    first_row: int
    first_col: int

    @property
    def pixel_range(self):
        """The flat pixel range [start, end) of the picture's rows in the G x G grid."""
        return self.first_row * self.grid_size, (self.first_row + self.rows) * self.grid_size


@dataclass(frozen=True)
class View:
    """One rendered view: rgb [rows, cols, 3] in ~[0, 1], opacity and depth [rows, cols] (CPU
    tensors; depth is NaN where nothing was hit), and the sampled depth range (near, far)."""
    rgb: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    near: float
    far: float


def cam2world_from_browser(camera):
    """Our camera-to-world matrix [4, 4] (torch float32) of a BrowserCamera."""
    opencv = torch.eye(4, dtype=torch.float64)
    opencv[:3, :3] = torch.from_numpy(transforms.SO3(np.asarray(camera.wxyz, dtype=np.float64)).as_matrix())
    opencv[:3, 3] = torch.tensor(camera.position, dtype=torch.float64)
    return cameras.eg3d_to_cam2world(opencv[None], WORLD_ORIGIN, CAMERA_RADIUS)[0].float()


def browser_pose(camera_pos):
    """Our camera (phi, theta) -> the browser camera's (position, look_at, up) as float tuples:
    on the unit sphere, looking at the origin, +y up (docs/design.md §1.1)."""
    origin = cameras.camera_origin_from_pos(torch.tensor([camera_pos], dtype=torch.float64), CAMERA_RADIUS)[0]
    return tuple(float(v) for v in origin), WORLD_ORIGIN, WORLD_UP


def browser_camera(camera_pos, fov, aspect, distance=CAMERA_RADIUS):
    """The BrowserCamera viser reports for our camera at (phi, theta) and `distance` from the origin,
    looking at it with +y up (the inverse of cam2world_from_browser)."""
    origin = cameras.camera_origin_from_pos(torch.tensor([camera_pos], dtype=torch.float64), distance)
    opencv = cameras.cam2world_to_eg3d(cameras.look_at_cam2world(origin), WORLD_ORIGIN, CAMERA_RADIUS)[0]
    return BrowserCamera(tuple(float(v) for v in transforms.SO3.from_matrix(opencv[:3, :3].numpy()).wxyz),
                         tuple(float(v) for v in origin[0]), fov, aspect)


def camera_pos_of(position):
    """(phi, theta) in radians of a camera at `position` [3] (cameras.camera_pos_from_origin)."""
    origin = torch.tensor([position], dtype=torch.float64)
    return tuple(float(v) for v in cameras.camera_pos_from_origin(origin)[0])


def view_grid(fov, aspect, rows):
    """The ViewGrid of a picture `rows` pixels high for a canvas of `aspect` and vertical `fov` (radians)."""
    if rows < MIN_ROWS:
        raise ValueError(f'a view needs at least {MIN_ROWS} rows, got {rows}')
    if not 0 < fov < math.pi or not aspect > 0:
        raise ValueError(f'invalid browser camera: fov {fov} rad, aspect {aspect}')
    cols = max(rows + 2 * round((rows * aspect - rows) / 2), 2 - rows % 2)  # same parity as rows
    grid_size = max(rows, cols)
    grid_fov = math.degrees(2 * math.atan(math.tan(fov / 2) * (grid_size - 1) / rows))
    return ViewGrid(rows, cols, grid_size, grid_fov, (grid_size - rows) // 2, (grid_size - cols) // 2)


def ray_range(position, ray_start, ray_end):
    """The sampled depth range (near, far) for a camera at `position` (see the module docstring)."""
    shift = float(np.linalg.norm(position)) - CAMERA_RADIUS
    return max(ray_start + shift, MIN_RAY_START), max(ray_end + shift, 2 * MIN_RAY_START)


@torch.no_grad()
def render_view(generator, frequencies, phase_shifts, cam2world, grid, near, far, lock_view_dependence=False,
                chunk_rays=DEFAULT_CHUNK_RAYS):
    """Render the picture of `grid` from one camera.

    Args:
        frequencies, phase_shifts: [1, 9 H] FiLM parameters on the generator's device.
        cam2world: [4, 4] our camera-to-world matrix; grid: ViewGrid; near, far: sampled depth range.
    Returns:
        View (CPU tensors).
    """
    cam2world = cam2world.to(frequencies.device).unsqueeze(0)
    renderer = generator.renderer
    result = renderer.render(generator.representation, frequencies, phase_shifts, cam2world, grid.grid_size,
                             grid.fov, near, far, grid.pixel_range, lock_view_dependence, chunk_rays)
    opacity, depth = object_opacity_and_depth(result['weights'][0], result['z_vals'][0], result['points'][0],
                                              renderer.background)
    columns = slice(grid.first_col, grid.first_col + grid.cols)

    def crop(pixels):  # [rows * G, ...] -> [rows, cols, ...] on the CPU
        return pixels.reshape(grid.rows, grid.grid_size, *pixels.shape[1:])[:, columns].cpu()

    return View(crop(result['rgb'][0]), crop(opacity), crop(depth), near, far)


def render_browser_view(generator, frequencies, phase_shifts, camera, rows, ray_start, ray_end,
                        lock_view_dependence=False, chunk_rays=DEFAULT_CHUNK_RAYS):
    """Render what BrowserCamera `camera` sees, `rows` pixels high; ray_start, ray_end: the config's
    sample range for a camera at distance 1. Returns a View."""
    grid = view_grid(camera.fov, camera.aspect, rows)
    near, far = ray_range(camera.position, ray_start, ray_end)
    return render_view(generator, frequencies, phase_shifts, cam2world_from_browser(camera), grid, near, far,
                       lock_view_dependence, chunk_rays)


def view_image(view, mode):
    """A View as uint8 pixels [rows, cols, 3].

    'rgb': the colour, encoded as the render script encodes images (utils.images.to_uint8);
    'depth': grey levels, PIXEL_MAX at the near end of the sampled range and 0 at the far end,
    black where the object opacity is below DEFAULT_OPACITY_THRESHOLD;
    'weight': the composited object weight (opacity), 0 -> black, 1 -> white.
    """
    if mode == 'rgb':
        return to_uint8(view.rgb.permute(2, 0, 1) * 2 - 1)
    if mode == 'depth':
        closeness = ((view.far - view.depth) / (view.far - view.near)).clamp(0, 1)
        level = torch.where(view.opacity >= DEFAULT_OPACITY_THRESHOLD, closeness, torch.zeros_like(closeness))
    elif mode == 'weight':
        level = view.opacity.clamp(0, 1)
    else:
        raise ValueError(f"unknown view mode '{mode}'; choose one of {', '.join(VIEW_MODES)}")
    grey = (level.nan_to_num(0.0) * PIXEL_MAX).round().to(torch.uint8).numpy()
    return np.repeat(grey[:, :, None], 3, axis=2)
