"""The manifold renderer: rays -> manifold intersections -> radiance -> compositing.

One function renders any flat pixel range of the image; the whole image, a training patch and an
inference chunk are all pixel ranges (docs/design.md §1). The radiance network runs on valid
intersections (and background points) only, packed per image: invalid slots have alpha exactly
0, so their radiance is never needed (docs/design.md §2.4, §4).
"""
import torch

from generators import cameras, compositing, intersections

# Rays per chunk. On a CPU: per image, sized so the activations stay in cache (1,024 rays was the
# fastest of 256-4,096 for 128 px renders: docs/performance.md). On a GPU every chunk costs kernel
# launches, so chunks are large there; their activations grow with the batch, so the GPU size is a
# budget of rays per call that the images of the batch share.
CPU_CHUNK_RAYS = 1024
ACCELERATOR_CHUNK_RAYS = 16384
DEFAULT_CHUNK_RAYS = None  # chunk_rays=None: the size for the device rendered on (chunk_rays_for)


def chunk_rays_for(device, chunk_rays=None, batch_size=1):
    """Rays per image in one chunk: `chunk_rays` if given, else CPU_CHUNK_RAYS on the CPU and
    ACCELERATOR_CHUNK_RAYS // batch_size (at least 1) on a GPU (CUDA, MPS)."""
    if chunk_rays is not None:
        return chunk_rays
    if torch.device(device).type == 'cpu':
        return CPU_CHUNK_RAYS
    return max(1, ACCELERATOR_CHUNK_RAYS // batch_size)


class ManifoldRenderer:
    """Renders a Gram representation; holds only the renderer settings (no parameters).

    Args (the config's renderer kwargs):
        num_samples: S samples per ray for the level search.
        num_manifolds: L slots per ray (levels + the background point when `background`).
        levels_start, levels_end: first and last level value.
        delta_alpha, white_back, last_back, background: compositing options (docs/design.md §4).

    Attribute `lock_view_dependence` (False): set it to True, as the released render script does
    (`generator.renderer.lock_view_dependence = True`), to feed the fixed view direction
    (0, 0, -1) to the colour layer in every render, as the `lock_view_dependence` argument does
    for one call.
    """

    def __init__(self, num_samples=64, num_manifolds=24, levels_start=23, levels_end=8,
                 delta_alpha=0.04, last_back=False, white_back=False, background=True):
        self.num_samples = num_samples
        self.num_manifolds = num_manifolds
        self.num_levels = num_manifolds - 1 if background else num_manifolds
        self.levels_start = levels_start
        self.levels_end = levels_end
        self.delta_alpha = delta_alpha
        self.last_back = last_back
        self.white_back = white_back
        self.background = background
        self.lock_view_dependence = False

    def render(self, representation, frequencies, phase_shifts, cam2world, img_size, fov,
               ray_start, ray_end, pixel_range, lock_view_dependence=False, chunk_rays=DEFAULT_CHUNK_RAYS):
        """Render the flat pixels [pixel_range[0], pixel_range[1]) of B cameras.

        Args:
            representation: a Gram module (sample_network + rf_network).
            frequencies, phase_shifts: [B, 9 H] FiLM parameters (mapping output, before *15+30).
            cam2world: [B, 4, 4].
        Returns:
            dict of per-ray tensors, R = number of pixels in the range, slots sorted by depth:
            'rgb' [B, R, 3] in ~[0, 1], 'depth' [B, R, 1], 'weights' [B, R, L, 1],
            'z_vals' [B, R, L, 1], 'points' [B, R, L, 3], 'outputs' [B, R, L, 4] (zeros on
            invalid slots), 'validity' [B, R, L, 1].
        chunk_rays: rays per image in one chunk; None: chunk_rays_for's default for the device.
        """
        start, end = pixel_range
        chunk_rays = chunk_rays_for(cam2world.device, chunk_rays, batch_size=cam2world.shape[0])
        lock_view_dependence = lock_view_dependence or self.lock_view_dependence
        chunks = [self._render_chunk(representation, frequencies, phase_shifts, cam2world, img_size, fov,
                                     ray_start, ray_end, (first, min(first + chunk_rays, end)),
                                     lock_view_dependence)
                  for first in range(start, end, chunk_rays)]
        return {key: torch.cat([chunk[key] for chunk in chunks], dim=1) for key in chunks[0]}

    def _render_chunk(self, representation, frequencies, phase_shifts, cam2world, img_size, fov,
                      ray_start, ray_end, pixel_range, lock_view_dependence):
        device = cam2world.device

        # Rays and samples (no gradients: they depend on the camera only).
        with torch.no_grad():
            camera_dirs = cameras.camera_ray_directions(img_size, fov, *pixel_range, device)   # [R, 3]
            origins, directions = cameras.world_rays(cam2world, camera_dirs)          # [B, 3], [B, R, 3]
            depths = cameras.sample_depths(ray_start, ray_end, self.num_samples, device)  # [S]
            points = origins[:, None, None, :] + directions.unsqueeze(2) * depths[:, None]  # [B, R, S, 3]
            levels = intersections.levels_for(self.levels_start, self.levels_end, self.num_levels, device)

        # Manifold intersections (+ the background plane).
        hits, validity, _ = intersections.intersect_manifolds(representation.sample_network, points, levels)
        if self.background:
            back = intersections.background_points(origins, directions).unsqueeze(2)  # [B, R, 1, 3]
            hits = torch.cat([hits, back.to(hits.dtype)], dim=2)
            validity = torch.cat([validity, torch.ones_like(validity[:, :, :1])], dim=2)
        # hits [B, R, L, 3], validity [B, R, L, 1]

        # Radiance on valid slots only.
        outputs = self._radiance_on_valid(representation.rf_network, frequencies, phase_shifts, hits,
                                          validity, directions, lock_view_dependence)

        # Sort by distance and composite.
        z_vals = torch.linalg.vector_norm(hits - origins[:, None, None, :], dim=-1, keepdim=True)
        z_vals, outputs, hits, validity, order = compositing.sort_by_depth(z_vals, outputs, hits, validity)
        background_slot = torch.argmax(order, dim=-2, keepdim=True)  # where the last original slot went
        rgb, depth, weights = compositing.composite(
            outputs, z_vals, validity, background_slot, self.delta_alpha, self.background,
            self.white_back, self.last_back)
        return {'rgb': rgb, 'depth': depth, 'weights': weights, 'z_vals': z_vals,
                'points': hits, 'outputs': outputs, 'validity': validity}

    @staticmethod
    def _radiance_on_valid(rf_network, frequencies, phase_shifts, hits, validity, directions,
                           lock_view_dependence):
        """Evaluate the radiance network at valid slots; invalid slots get zeros.

        hits [B, R, L, 3], validity [B, R, L, 1], directions [B, R, 3] -> outputs [B, R, L, 4].

        The valid slots of each sample are packed to the front, in order, and the batch runs as
        one call on the first n = (largest valid count) packed slots [B, n, 3], each sample with
        its own FiLM parameters: one host-device synchronisation per chunk (for n), not one per
        sample. A sample with fewer valid slots fills its remaining packed slots with slot 0
        (padding); their outputs are zeroed before they are added back, so they change nothing
        and get no gradient.
        """
        B, R, L, _ = hits.shape
        if lock_view_dependence:
            directions = torch.zeros_like(directions)
            directions[..., 2] = -1
        view_dirs = directions.unsqueeze(2).expand(-1, -1, L, -1).reshape(B, R * L, 3)
        valid = validity.reshape(B, R * L) > 0
        counts = valid.sum(dim=1)                                                   # [B]
        n = int(counts.max())
        # index [B, n]: packed slot k of sample b holds flat slot index[b, k]; invalid slots are
        # written to an extra column n, which is dropped.
        position = torch.where(valid, valid.cumsum(dim=1) - 1, torch.full_like(counts, n).unsqueeze(1))
        slots = torch.arange(R * L, device=hits.device).expand(B, -1)
        index = torch.zeros(B, n + 1, dtype=torch.long, device=hits.device).scatter_(1, position, slots)[:, :n]
        index = index.unsqueeze(-1)                                                 # [B, n, 1]
        out = rf_network.forward_with_frequencies_phase_shifts(
            torch.take_along_dim(hits.reshape(B, R * L, 3), index, dim=1), frequencies, phase_shifts,
            torch.take_along_dim(view_dirs, index, dim=1))                          # [B, n, 4]
        in_count = torch.arange(n, device=hits.device) < counts.unsqueeze(1)        # [B, n]
        out = torch.where(in_count.unsqueeze(-1), out, out.new_zeros(()))
        # scatter_add: padding entries point at slot 0 too, and add exact zeros there.
        dense = out.new_zeros(B, R * L, 4).scatter_add(1, index.expand(-1, -1, 4), out)
        return dense.reshape(B, R, L, 4)
