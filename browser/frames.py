"""View requests of one generator: who is shown (Subject), from where and how (ViewRequest), and the
frames, orbit videos and FiLM parameters they give (FrameRenderer).

A subject is a seed (z as render_multiview_images.py draws it, truncated by psi) or a loaded
latent (FiLM parameters, e.g. an inversion's), optionally blended with a second seed: the FiLM
parameters (frequencies, phase shifts) of the two are interpolated linearly, blend 0 giving the
first and 1 the second.
"""
import math
from dataclasses import dataclass, replace

import torch

from browser import views
from generators import cameras
from generators.renderer import DEFAULT_CHUNK_RAYS
from geometry.trajectories import orbit_yaw_offsets, sweep_yaw_offsets
from utils.seeds import latent_for_seed

PREVIEW_FACTOR = 2      # while the camera moves, frames are rendered this many times smaller
MIN_PREVIEW_ROWS = 16   # ... but at least this many rows high


@dataclass(frozen=True)
class Subject:
    """seed: the first identity (None: the loaded latent); seed_b, blend: the second identity and
    the interpolation weight toward it; psi: truncation of the seeds (1 = none)."""
    seed: int | None
    seed_b: int
    blend: float
    psi: float


@dataclass(frozen=True)
class ViewRequest:
    """One frame to render: a BrowserCamera, a Subject, the picture height in pixels, the view mode
    (views.VIEW_MODES) and whether view dependence is locked."""
    camera: views.BrowserCamera
    subject: Subject
    rows: int
    mode: str
    lock_view_dependence: bool


def preview_of(request):
    """The smaller request rendered while the camera moves, or None when `request` is small already."""
    rows = max(MIN_PREVIEW_ROWS, request.rows // PREVIEW_FACTOR)
    return replace(request, rows=rows) if rows < request.rows else None


class FrameRenderer:
    """Renders ViewRequests of one generator; safe to call from several threads at once.

    Args:
        generator: GramGenerator in eval mode.
        config: its config (the camera section gives ray_start and ray_end).
        latent: optional (frequencies, phase_shifts) [1, 9 H] of the loaded subject (Subject.seed None).
        chunk_rays: rays evaluated at once.
    """

    def __init__(self, generator, config, latent=None, chunk_rays=DEFAULT_CHUNK_RAYS):
        self.generator = generator
        self.device = generator.avg_frequencies.device
        self.ray_start, self.ray_end = config['camera']['ray_start'], config['camera']['ray_end']
        self.latent = None if latent is None else tuple(t.to(self.device) for t in latent)
        self.chunk_rays = chunk_rays
        generator.get_avg_w()  # the truncation average, computed once here rather than racing in threads

    @torch.no_grad()
    def film(self, subject):
        """FiLM parameters (frequencies, phase_shifts) [1, 9 H] of a Subject."""
        if subject.seed is None:
            if self.latent is None:
                raise ValueError('no latent was loaded; pick a seed')
            first = self.latent
        else:
            first = self._seed_film(subject.seed, subject.psi)
        if subject.blend == 0:
            return first
        second = self._seed_film(subject.seed_b, subject.psi)
        return tuple(torch.lerp(a, b, subject.blend) for a, b in zip(first, second))

    def _seed_film(self, seed, psi):
        z = latent_for_seed(seed, self.generator.z_dim, self.device)
        return self.generator.film_parameters(z, psi)

    def view(self, request):
        """The views.View of a ViewRequest."""
        return views.render_browser_view(self.generator, *self.film(request.subject), request.camera, request.rows,
                                         self.ray_start, self.ray_end, request.lock_view_dependence, self.chunk_rays)

    def frame(self, request):
        """uint8 pixels [rows, cols, 3] of a ViewRequest."""
        return views.view_image(self.view(request), request.mode)

    def orbit_frames(self, request, num_frames, object_family, progress=None):
        """Square frames [rows, rows, 3] (uint8) of the request's subject and mode from num_frames
        cameras at the request camera's distance and polar angle phi, looking at the origin:
        a full turn of theta for objects, the render script's yaw sweep around the current theta
        otherwise. progress: optional callable receiving the number of frames done."""
        phi, theta = views.camera_pos_of(request.camera.position)
        distance = math.dist(request.camera.position, (0.0, 0.0, 0.0))
        offsets = orbit_yaw_offsets(num_frames) if object_family else sweep_yaw_offsets(num_frames)
        grid = views.view_grid(request.camera.fov, 1.0, request.rows)
        near, far = views.ray_range(request.camera.position, self.ray_start, self.ray_end)
        frequencies, phase_shifts = self.film(request.subject)
        frames = []
        for index, offset in enumerate(offsets):
            camera_pos = torch.tensor([[phi, theta + offset]], dtype=torch.float32)
            cam2world = cameras.look_at_cam2world(cameras.camera_origin_from_pos(camera_pos, distance))[0]
            view = views.render_view(self.generator, frequencies, phase_shifts, cam2world, grid, near, far,
                                     request.lock_view_dependence, self.chunk_rays)
            frames.append(views.view_image(view, request.mode))
            if progress is not None:
                progress(index + 1)
        return frames
