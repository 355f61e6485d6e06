"""GramGenerator: z and a camera -> image (the released public API).

``forward(z, fov, ray_start, ray_end, img_size=None, camera_origin=None, camera_pos=None,
truncation_psi=1, patch=None)`` returns (img [B, 3, N, N], camera_pos [B, 2]); with
``patch=(k, n)`` only the k-th of n horizontal bands is rendered and img is [B, 3, patch_len].
The camera is, in order of precedence: ``camera_origin`` (one [3] list/tensor for the whole batch,
or [B, 3]), ``camera_pos`` ([2] or [B, 2] = (phi, theta)), else drawn from the generator's pose
distribution.
"""
import torch
from torch import nn

from generators import cameras
from generators.renderer import DEFAULT_CHUNK_RAYS, ManifoldRenderer
from generators.representations import Gram

TRUNCATION_NUM_Z = 10000  # latents averaged for the truncation trick
TRUNCATION_SEED = 0       # fixed seed of those latents (the released code left them unseeded)


class GramGenerator(nn.Module):
    """Args follow the released constructor; the config supplies them (see build_generator)."""

    def __init__(self, z_dim, img_size, h_stddev, v_stddev, h_mean, v_mean, sample_dist,
                 representation_kwargs, renderer_kwargs, partial_grad=False):
        super().__init__()
        if partial_grad:
            raise ValueError('partial_grad=True is not supported; use --patch_split to bound memory')
        self.z_dim = z_dim
        self.img_size = img_size
        self.h_stddev, self.v_stddev = h_stddev, v_stddev
        self.h_mean, self.v_mean = h_mean, v_mean
        self.sample_dist = sample_dist
        self.representation = Gram(z_dim=z_dim, **representation_kwargs)
        self.renderer = ManifoldRenderer(**renderer_kwargs)
        film_width = self.representation.rf_network.mapping_network.network[-1].out_features // 2
        # Truncation averages: derived from the weights (recomputed by get_avg_w), so not saved.
        self.register_buffer('avg_frequencies', torch.zeros(1, film_width), persistent=False)
        self.register_buffer('avg_phase_shifts', torch.zeros(1, film_width), persistent=False)
        self.register_buffer('avg_ready', torch.zeros((), dtype=torch.bool), persistent=False)
        self.register_load_state_dict_post_hook(_invalidate_truncation_average)

    # ------------------------------------------------------------------ latents and truncation
    @torch.no_grad()
    def get_avg_w(self):
        """Average mapping outputs over TRUNCATION_NUM_Z fixed latents; stored for truncation."""
        latent_rng = torch.Generator(device='cpu').manual_seed(TRUNCATION_SEED)
        z = torch.randn(TRUNCATION_NUM_Z, self.z_dim, generator=latent_rng).to(self.avg_frequencies.device)
        frequencies, phase_shifts = self.representation.rf_network.mapping_network(z)
        self.avg_frequencies.copy_(frequencies.mean(0, keepdim=True))
        self.avg_phase_shifts.copy_(phase_shifts.mean(0, keepdim=True))
        self.avg_ready.fill_(True)
        return self.avg_frequencies, self.avg_phase_shifts

    def optimizer_param_groups(self, optimizer_config):
        """Adam groups [sampling network, rest, mapping network]; the first/last only when the
        config's optimizer section sets their lr (sampling_network_lr, mapping_network_lr).

        CARLA (sampling_network_lr) gives [sampling network, rest], the released order.
        """
        special = []
        if 'sampling_network_lr' in optimizer_config:
            special.append(('sampling_network', self.representation.sample_network,
                            optimizer_config['sampling_network_lr']))
        if 'mapping_network_lr' in optimizer_config:
            special.append(('mapping_network', self.representation.rf_network.mapping_network,
                            optimizer_config['mapping_network_lr']))
        special_ids = {id(p) for _, module, _ in special for p in module.parameters()}
        groups = {name: {'params': list(module.parameters()), 'name': name, 'lr': lr} for name, module, lr in special}
        rest = {'params': [p for p in self.parameters() if id(p) not in special_ids], 'name': 'generator'}
        return [group for group in (groups.get('sampling_network'), rest, groups.get('mapping_network')) if group]

    def film_parameters(self, z, truncation_psi=1):
        """z [B, z_dim] -> (frequencies, phase_shifts) [B, 9 H], truncated toward the average."""
        frequencies, phase_shifts = self.representation.rf_network.mapping_network(z)
        if truncation_psi < 1:
            if not bool(self.avg_ready):
                self.get_avg_w()
            frequencies = self.avg_frequencies + truncation_psi * (frequencies - self.avg_frequencies)
            phase_shifts = self.avg_phase_shifts + truncation_psi * (phase_shifts - self.avg_phase_shifts)
        return frequencies, phase_shifts

    # ------------------------------------------------------------------ cameras
    def resolve_camera(self, batch_size, device, camera_origin=None, camera_pos=None, sample_dist=None,
                       h_stddev=None, v_stddev=None, h_mean=None, v_mean=None):
        """Camera origins [B, 3] and camera_pos [B, 2] from the arguments (see module docstring)."""
        if camera_origin is not None:
            origins = torch.as_tensor(camera_origin, dtype=torch.float32, device=device).reshape(-1, 3)
            origins = origins.expand(batch_size, 3)
            return origins, cameras.camera_pos_from_origin(origins)
        if camera_pos is not None:
            camera_pos = torch.as_tensor(camera_pos, dtype=torch.float32, device=device).reshape(-1, 2)
            camera_pos = camera_pos.expand(batch_size, 2)
            return cameras.camera_origin_from_pos(camera_pos), camera_pos
        return cameras.sample_camera_positions(
            batch_size,
            self.sample_dist if sample_dist is None else sample_dist,
            self.h_stddev if h_stddev is None else h_stddev,
            self.v_stddev if v_stddev is None else v_stddev,
            self.h_mean if h_mean is None else h_mean,
            self.v_mean if v_mean is None else v_mean,
            device)

    # ------------------------------------------------------------------ rendering
    def forward(self, z, fov, ray_start, ray_end, img_size=None, camera_origin=None, camera_pos=None,
                truncation_psi=1, patch=None, lock_view_dependence=False, chunk_rays=DEFAULT_CHUNK_RAYS,
                **pose_kwargs):
        """Render z [B, z_dim] -> (img [B, 3, N, N] or [B, 3, patch_len], camera_pos [B, 2]).

        pose_kwargs: sample_dist, h_stddev, v_stddev, h_mean, v_mean override the pose prior.
        """
        frequencies, phase_shifts = self.film_parameters(z, truncation_psi)
        return self.forward_with_frequencies_phase_shifts(
            frequencies, phase_shifts, fov, ray_start, ray_end, img_size, camera_origin, camera_pos,
            patch, lock_view_dependence, chunk_rays, **pose_kwargs)

    def forward_with_frequencies_phase_shifts(self, frequencies, phase_shifts, fov, ray_start, ray_end,
                                              img_size=None, camera_origin=None, camera_pos=None, patch=None,
                                              lock_view_dependence=False, chunk_rays=DEFAULT_CHUNK_RAYS,
                                              **pose_kwargs):
        """As forward, from FiLM parameters [B, 9 H] instead of z."""
        img, camera_pos, _ = self._render(frequencies, phase_shifts, fov, ray_start, ray_end, img_size,
                                          camera_origin, camera_pos, patch, lock_view_dependence,
                                          chunk_rays, **pose_kwargs)
        return img, camera_pos

    def experiment(self, z, fov, ray_start, ray_end, img_size=None, camera_origin=None, camera_pos=None,
                   truncation_psi=1, patch=None, lock_view_dependence=False, chunk_rays=DEFAULT_CHUNK_RAYS,
                   **pose_kwargs):
        """As forward, plus a dict of per-pixel internals (whole images only).

        detail: 'depth' [B, N, N, 1, 1], 'weights' and 'z_vals' [B, N, N, L, 1],
        'points' [B, N, N, L, 3], 'outputs' [B, N, N, L, 4] (slots sorted by depth; invalid
        slots' outputs are zeros), 'validity' [B, N, N, L, 1].
        """
        if patch is not None:
            raise ValueError('experiment() renders whole images; call it without patch')
        frequencies, phase_shifts = self.film_parameters(z, truncation_psi)
        img, camera_pos, result = self._render(frequencies, phase_shifts, fov, ray_start, ray_end, img_size,
                                               camera_origin, camera_pos, None, lock_view_dependence,
                                               chunk_rays, **pose_kwargs)
        size = img.shape[-1]
        detail = {key: result[key].reshape(img.shape[0], size, size, *result[key].shape[2:])
                  for key in ('weights', 'z_vals', 'points', 'outputs', 'validity')}
        detail['depth'] = result['depth'].reshape(img.shape[0], size, size, 1, 1)
        return img, camera_pos, detail

    def _render(self, frequencies, phase_shifts, fov, ray_start, ray_end, img_size, camera_origin,
                camera_pos, patch, lock_view_dependence, chunk_rays, **pose_kwargs):
        img_size = self.img_size if img_size is None else img_size
        batch_size = frequencies.shape[0]
        origins, camera_pos = self.resolve_camera(batch_size, frequencies.device, camera_origin, camera_pos,
                                                  **pose_kwargs)
        cam2world = cameras.look_at_cam2world(origins)
        pixel_range = patch_pixel_range(img_size, patch)
        result = self.renderer.render(self.representation, frequencies, phase_shifts, cam2world, img_size,
                                      fov, ray_start, ray_end, pixel_range, lock_view_dependence, chunk_rays)
        img = result['rgb'].permute(0, 2, 1) * 2 - 1  # [B, 3, R]
        if patch is None:
            img = img.reshape(batch_size, 3, img_size, img_size)
        return img, camera_pos, result


def _invalidate_truncation_average(module, incompatible_keys):
    """New weights make the stored truncation average stale."""
    module.avg_ready.fill_(False)


def patch_pixel_range(img_size, patch):
    """Flat pixel range of patch (k, n): [N*N*k // n, N*N*(k+1) // n); the whole image for None."""
    num_pixels = img_size * img_size
    if patch is None:
        return 0, num_pixels
    k, n = patch
    if not 0 <= k < n:
        raise ValueError(f'patch index {k} out of range for {n} patches')
    return num_pixels * k // n, num_pixels * (k + 1) // n
