"""GRAM's GAN losses (docs/design.md §6) as named phases that the training loop schedules.

Phases, each of which accumulates gradients (through the shared GradScaler) and returns its
losses for logging:
- 'D main' + 'D R1'  `accumulate_discriminator`: non-saturating loss on fakes and reals, pose
  losses, and (when due) the R1 penalty `r1_penalty` on reals, in one backward as released.
- 'G main'           `accumulate_generator`: non-saturating loss + pose loss on fresh fakes,
  backward per `batch_split` chunk (gradients are summed over chunks, not averaged); with
  process.view_consistency_lambda > 0 (ours) also the penalty `view_consistency_penalty` on the
  same latents, back-propagated once for the whole batch.

Both phases handle `batch_split` (chunks of the per-GPU batch) and `patch_split` (fakes rendered
as P horizontal bands, with the patch-level forward/backward in the G phase). Random draws, in
order: z for the whole batch, then inside each chunk's generator call that chunk's poses (theta,
then phi); with patch_split only the first patch draws the pose, the others reuse it. The
view-consistency penalty draws after all chunks: points, then two cameras' poses.
"""
import contextlib

import torch
import torch.nn.functional as F

from configs import OPTIONAL_DEFAULTS
from generators.generators import patch_pixel_range

R1_WEIGHT = 0.5  # R1 = 0.5 * r1_lambda * mean_b ||dD/dx_b||^2
VIEW_PENALTY_POINTS = 256  # points per latent at which the view-consistency penalty compares two views


def is_power_of_two(value):
    return isinstance(value, int) and value >= 1 and value & (value - 1) == 0


@contextlib.contextmanager
def frozen(module):
    """Switch off parameter gradients of `module` inside the block (inputs still get gradients)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in zip(module.parameters(), flags):
            param.requires_grad_(flag)


class GramLoss:
    """The losses of one training iteration.

    Args:
        generator: GramGenerator (not wrapped: gradients are averaged over ranks by the loop).
        discriminator: GramDiscriminator.
        config: resolved config; reads global.img_size, process.{batch_split, r1_lambda,
            r1_interval (default 1), pos_lambda, real_pos_lambda, view_consistency_lambda (default 0)},
            camera.{fov, ray_start, ray_end},
            global.z_dist (only 'gaussian').
        scaler: torch.amp.GradScaler (disabled outside fp16; then scale() is the identity).
        autocast: zero-argument callable returning the autocast context of this run.
        patch_split: None (whole images) or P, a power of 2.
    """

    def __init__(self, generator, discriminator, config, scaler, autocast, patch_split=None):
        process = config['process']
        if patch_split is not None and not is_power_of_two(patch_split):
            raise ValueError(f"--patch_split must be a power of 2 (1, 2, 4, 8, ...), got {patch_split}")
        if config['global'].get('z_dist', 'gaussian') != 'gaussian':
            raise ValueError(f"global.z_dist '{config['global']['z_dist']}' is not supported; use 'gaussian'")
        self.generator = generator
        self.discriminator = discriminator
        self.scaler = scaler
        self.autocast = autocast
        self.patch_split = patch_split
        self.img_size = config['global']['img_size']
        self.batch_split = process['batch_split']
        self.r1_lambda = process['r1_lambda']
        self.r1_interval = process.get('r1_interval', 1)
        self.pos_lambda = process['pos_lambda']
        self.real_pos_lambda = process['real_pos_lambda']
        self.view_consistency_lambda = process.get('view_consistency_lambda',
                                                   OPTIONAL_DEFAULTS['process.view_consistency_lambda'])
        camera = config['camera']
        self.render_kwargs = dict(fov=camera['fov'], ray_start=camera['ray_start'],
                                  ray_end=camera['ray_end'], img_size=self.img_size)

    # ------------------------------------------------------------------ helpers
    def sample_z(self, batch_size, device):
        """z ~ N(0, I): [batch_size, z_dim]."""
        return torch.randn(batch_size, self.generator.z_dim, device=device)

    def chunks(self, z):
        """Split z [B, z_dim] into batch_split chunks of B // batch_split (B must divide)."""
        if z.shape[0] % self.batch_split != 0:
            raise ValueError(f"batch size {z.shape[0]} is not divisible by process.batch_split={self.batch_split}")
        return z.split(z.shape[0] // self.batch_split)

    def r1_due(self, step):
        """True when the R1 penalty is applied at this (0-based) step."""
        return self.r1_lambda > 0 and step % self.r1_interval == 0

    def render(self, z, camera_pos=None):
        """Render whole images -> (img [b, 3, N, N], camera_pos [b, 2]).

        Without patch_split one generator call draws the poses (unless camera_pos is given).
        With patch_split P the image is rendered as P bands: the first call draws the pose and
        the other bands reuse it; the bands are concatenated along the pixel axis.
        """
        if self.patch_split is None:
            return self.generator(z, camera_pos=camera_pos, **self.render_kwargs)
        bands = []
        for k in range(self.patch_split):
            band, camera_pos = self.generator(z, camera_pos=camera_pos, patch=(k, self.patch_split),
                                              **self.render_kwargs)
            bands.append(band)                                  # [b, 3, patch_len]
        img = torch.cat(bands, dim=-1)                          # [b, 3, N * N]
        return img.reshape(z.shape[0], 3, self.img_size, self.img_size), camera_pos

    def generator_loss(self, fake_img, fake_pos):
        """softplus(-D(fake)).mean() + pos_lambda * MSE(D_pos(fake), camera_pos): scalar."""
        logits, pos_pred = self.discriminator(fake_img)
        loss = F.softplus(-logits).mean()
        if self.pos_lambda > 0:
            loss = loss + self.pos_lambda * F.mse_loss(pos_pred, fake_pos)
        return loss

    def view_consistency_penalty(self, z):
        """Mean squared change of a point's colour between two views: a scalar with a graph.

        For each latent, VIEW_PENALTY_POINTS points are drawn uniformly in the ball around the
        origin that the rays' depth range spans (radius (ray_end - ray_start) / 2, where the object
        lives), and two cameras from the training pose distribution. The radiance network colours
        every point once along each camera's ray through it; the penalty is
        mean_{b, p} ||rgb(x_bp, d1_bp) - rgb(x_bp, d2_bp)||^2, which is zero for colour that does
        not depend on the view. Both views share the point's features, so the difference comes from
        the colour layer's direction input; the gradient reaches the FiLM layers and the mapping
        network through it, never the manifold predictor.
        """
        batch, device = z.shape[0], z.device
        radius = (self.render_kwargs['ray_end'] - self.render_kwargs['ray_start']) / 2
        directions = F.normalize(torch.randn(batch, VIEW_PENALTY_POINTS, 3, device=device), dim=-1)
        distances = radius * torch.rand(batch, VIEW_PENALTY_POINTS, 1, device=device).pow(1 / 3)
        points = directions * distances                                    # [b, P, 3], uniform in the ball
        origins = torch.stack([self.generator.resolve_camera(batch, device)[0] for _ in range(2)], dim=1)  # [b, 2, 3]
        ray_directions = F.normalize(points[:, None] - origins[:, :, None], dim=-1)  # [b, 2, P, 3]
        frequencies, phase_shifts = self.generator.film_parameters(z)
        rgb_sigma = self.generator.representation.rf_network.forward_with_frequencies_phase_shifts(
            points.repeat(1, 2, 1), frequencies, phase_shifts, ray_directions.reshape(batch, -1, 3))  # [b, 2 P, 4]
        rgb = rgb_sigma[..., :3].reshape(batch, 2, VIEW_PENALTY_POINTS, 3)
        return (rgb[:, 0] - rgb[:, 1]).float().pow(2).sum(dim=-1).mean()

    # ------------------------------------------------------------------ phase: D main (+ D R1)
    def r1_penalty(self, real_logits, real_img):
        """'D R1': mean_b ||d sum D(real) / d real_b||^2 (unweighted), a scalar with a graph.

        The gradient is taken of the scaled sum and unscaled afterwards, so fp16 does not
        underflow (identity when the scaler is disabled).
        """
        (grad,) = torch.autograd.grad(self.scaler.scale(real_logits.sum()), real_img, create_graph=True)
        grad = grad.float() / self.scaler.get_scale()
        return grad.reshape(grad.shape[0], -1).pow(2).sum(dim=1).mean()

    def accumulate_discriminator(self, real_img, real_pos, apply_r1):
        """'D main' (+ 'D R1' when `apply_r1`): one backward of the full d_loss.

        Args:
            real_img: [B, 3, N, N] in [-1, 1]; real_pos: [B, 2] (phi, theta).
            apply_r1: add the R1 term, weighted 0.5 * r1_lambda * r1_interval (lazy
                regularisation: applied every r1_interval steps, scaled up by the interval so
                its average strength does not depend on it; the released interval is 1).
        Returns:
            dict of detached scalars; 'D' is the total loss that was back-propagated.
        """
        # Fakes without gradients: z for the whole batch first, poses drawn chunk by chunk.
        z = self.sample_z(real_img.shape[0], real_img.device)
        with torch.no_grad(), self.autocast():
            rendered = [self.render(chunk) for chunk in self.chunks(z)]
        fake_img = torch.cat([img for img, _ in rendered])     # [B, 3, N, N]
        fake_pos = torch.cat([pos for _, pos in rendered])     # [B, 2]

        # Realism and pose terms.
        real_img = real_img.detach().requires_grad_(apply_r1)
        with self.autocast():
            real_logits, real_pos_pred = self.discriminator(real_img)
            fake_logits, fake_pos_pred = self.discriminator(fake_img)
            losses = {'D_fake': F.softplus(fake_logits).mean(), 'D_real': F.softplus(-real_logits).mean()}
            if self.pos_lambda > 0:
                losses['D_pos'] = self.pos_lambda * F.mse_loss(fake_pos_pred, fake_pos)
            if self.real_pos_lambda > 0:
                losses['D_real_pos'] = self.real_pos_lambda * F.mse_loss(real_pos_pred, real_pos)

        # R1 on the reals.
        if apply_r1:
            losses['D_r1'] = R1_WEIGHT * self.r1_lambda * self.r1_interval * self.r1_penalty(real_logits, real_img)

        d_loss = sum(losses.values())
        self.scaler.scale(d_loss).backward()
        return {'D': d_loss.detach(), **{name: value.detach() for name, value in losses.items()}}

    # ------------------------------------------------------------------ phase: G main
    def accumulate_generator(self, batch_size, device):
        """'G main': fresh z, backward per batch_split chunk (gradients summed over chunks).

        Returns:
            dict with 'G': the sum over chunks of the chunk losses plus the weighted view penalty
            (what was back-propagated), and 'G_view': the weighted view penalty (when it is on).
        """
        z = self.sample_z(batch_size, device)
        total = torch.zeros((), device=device)
        with frozen(self.discriminator):
            for chunk in self.chunks(z):
                if self.patch_split is None:
                    with self.autocast():
                        fake_img, fake_pos = self.render(chunk)
                        loss = self.generator_loss(fake_img, fake_pos)
                    self.scaler.scale(loss).backward()
                else:
                    loss = self._patch_backward(chunk)
                total = total + loss.detach().float()
            if self.view_consistency_lambda == 0:
                return {'G': total}
            with self.autocast():
                view = self.view_consistency_lambda * self.view_consistency_penalty(z)
            self.scaler.scale(view).backward()
        view = view.detach().float()
        return {'G': total + view, 'G_view': view}

    def _patch_backward(self, z):
        """Patch-level forward/backward of one chunk; returns its (detached) loss.

        Render the whole image without gradients, take d(scaled g_loss)/d(image), then re-render
        each band with gradients and back-propagate the matching slice of that image gradient.
        The parameter gradients equal those of a whole-image backward (up to float rounding)
        while only one band's graph is alive at a time.
        """
        with torch.no_grad(), self.autocast():
            fake_img, fake_pos = self.render(z)
        fake_img = fake_img.detach().requires_grad_(True)
        with self.autocast():
            loss = self.generator_loss(fake_img, fake_pos)
        (img_grad,) = torch.autograd.grad(self.scaler.scale(loss), fake_img)
        img_grad = img_grad.reshape(z.shape[0], 3, -1)          # [b, 3, N * N]
        for k in range(self.patch_split):
            start, end = patch_pixel_range(self.img_size, (k, self.patch_split))
            with self.autocast():
                band, _ = self.generator(z, camera_pos=fake_pos, patch=(k, self.patch_split), **self.render_kwargs)
            band.backward(img_grad[..., start:end].to(band.dtype))
        return loss.detach()
