"""Rendering from FiLM parameters with gradients for the camera too, and with depth.

The renderer builds its rays without gradients (they depend on the camera only), so
`GramGenerator.forward_with_frequencies_phase_shifts` gives no gradient for `camera_pos`. Here
the image is rendered at the camera c0 = `camera_pos.detach()` while the scene is rotated by

    R = I + (Q(c) - Q(c0)) Q(c0)^T          (c = camera_pos; Q: the look-at rotation, design.md §1.3)

Its value is exactly I (Q(c) - Q(c0) is exactly zero), so the network sees exactly the
generator's points and the render is the generator's own (bit for bit on the CPU; CUDA renders
are not bit-repeatable in any case). Its gradient is that of Q(c) Q(c0)^T, the rotation that
moves the scene as moving the camera would: a camera at pose c sees the point R p where the camera
at c0 sees p, because both sit on the unit sphere looking at the origin. The background plane of
the faces configs (design.md §2.5) is the one approximation: its points move with the camera in
the gradient (not in the value).
"""
import torch
from torch import nn

from generators import cameras
from generators.renderer import DEFAULT_CHUNK_RAYS


class _RotatedPredictor(nn.Module):
    """The manifold predictor evaluated at R p (points [..., 3])."""

    def __init__(self, predictor, rotation):
        super().__init__()
        self.predictor = predictor
        self.rotation = rotation  # [3, 3]

    def forward(self, points):
        return self.predictor(points @ self.rotation.T)


class _RotatedRadiance(nn.Module):
    """The radiance network evaluated at R p, seen along R d."""

    def __init__(self, rf_network, rotation):
        super().__init__()
        self.rf_network = rf_network
        self.rotation = rotation  # [3, 3]

    def forward_with_frequencies_phase_shifts(self, points, frequencies, phase_shifts, ray_directions):
        return self.rf_network.forward_with_frequencies_phase_shifts(
            points @ self.rotation.T, frequencies, phase_shifts, ray_directions @ self.rotation.T)


class _RotatedRepresentation(nn.Module):
    """What the renderer needs of a Gram representation (sample_network, rf_network), rotated."""

    def __init__(self, representation, rotation):
        super().__init__()
        self.sample_network = _RotatedPredictor(representation.sample_network, rotation)
        self.rf_network = _RotatedRadiance(representation.rf_network, rotation)


def render(generator, frequencies, phase_shifts, camera_pos, camera, img_size=None, with_depth=False,
           lock_view_dependence=False, chunk_rays=DEFAULT_CHUNK_RAYS):
    """Render FiLM parameters from cameras, differentiable in the FiLM parameters, the camera
    (when camera_pos requires grad; one camera only) and the generator's weights.

    Args:
        frequencies, phase_shifts: [B, 9 H].
        camera_pos: [B, 2] (phi, theta) or [1, 2] for the whole batch.
        camera: {'fov', 'ray_start', 'ray_end'}.
    Returns:
        img [B, 3, N, N] (~[-1, 1]), and with `with_depth` also depth [B, N, N] (ray distance)
        and opacity [B, N, N] (the summed compositing weights: ~1 on the object, ~0 where a
        white_back config shows its background).
    """
    img_size = generator.img_size if img_size is None else img_size
    batch_size = frequencies.shape[0]
    camera_pos = camera_pos.expand(batch_size, 2)
    fixed_pos = camera_pos.detach()
    representation = generator.representation
    if camera_pos.requires_grad:
        if batch_size != 1:
            raise ValueError('camera gradients need one camera per call (the predictor sees flattened points)')
        moving = cameras.look_at_cam2world(cameras.camera_origin_from_pos(camera_pos))[0, :3, :3]
        fixed = cameras.look_at_cam2world(cameras.camera_origin_from_pos(fixed_pos))[0, :3, :3]
        identity = torch.eye(3, dtype=fixed.dtype, device=fixed.device)
        representation = _RotatedRepresentation(representation, identity + (moving - fixed) @ fixed.T)
    cam2world = cameras.look_at_cam2world(cameras.camera_origin_from_pos(fixed_pos))
    result = generator.renderer.render(representation, frequencies, phase_shifts, cam2world, img_size,
                                       camera['fov'], camera['ray_start'], camera['ray_end'],
                                       (0, img_size * img_size), lock_view_dependence, chunk_rays)
    img = (result['rgb'].permute(0, 2, 1) * 2 - 1).reshape(batch_size, 3, img_size, img_size)
    if not with_depth:
        return img
    depth = result['depth'].reshape(batch_size, img_size, img_size)
    opacity = result['weights'].sum(dim=-2).reshape(batch_size, img_size, img_size)
    return img, depth, opacity
