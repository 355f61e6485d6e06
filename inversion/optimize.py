"""Invert an image: find FiLM parameters and a camera whose render matches it (docs/inversion.md).

1. Pose search (when the camera is unknown): the truncation-average subject (psi 0) is rendered at
   POSE_SEARCH_SIZE px from cameras every POSE_GRID_STEP over the config's trained pose range
   (geometry.views), and the `pose_starts` cameras whose renders are closest to the target
   (pixel MSE) become starts.
2. Fit, from the truncation average, with Adam and a cosine learning-rate decay over `steps`; the
   camera_pos [1, 2] = (phi, theta) is optimised throughout (unless fixed by the caller):
   - first half: z [1, z_dim] (from 0) through the mapping network, truncated towards the
     average with a psi that ramps from ~0 to 1 (so the subject stays one the generator makes
     while the camera settles);
   - second half: the FiLM parameters (frequencies, phase_shifts) [1, 9 H] themselves.
   Every start runs the first `start_steps` steps; the one with the lowest loss continues.
   Loss = MSE + ssim_weight (1 - SSIM) + prior_weight * mean(((w - mean) / std)^2), with mean and
   std the FiLM statistics of the truncation latents.
3. Pivotal tuning (`finetune_steps` > 0): the FiLM parameters and camera stay fixed and a copy of
   the generator (all but the unused mapping network) is tuned on the same loss, plus
   locality_weight * MSE between the tuned and the original generator's renders of
   LOCALITY_LATENTS other subjects (seeded by `seed`), which keeps the rest of the latent space intact.
"""
import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from tqdm import tqdm

from generators import cameras
from generators.generators import TRUNCATION_NUM_Z, TRUNCATION_SEED
from geometry import views
from inversion.losses import psnr, ssim
from inversion.rendering import render

# Defaults (chosen by the measurements in docs/inversion.md).
DEFAULT_STEPS = 300          # steps of the winning start: the first half on z, the rest on FiLM
DEFAULT_POSE_STARTS = 2      # grid cameras refined from the pose search
DEFAULT_START_STEPS = 30     # steps every start runs before the best one is kept
Z_LR = 0.05                  # Adam lr of z (~N(0, I)) in the first half
PSI_RAMP = 0.5               # truncation psi ramps 0 -> 1 over this fraction of the z steps
LATENT_LR = 0.02             # Adam lr of the FiLM parameters (their spread is ~0.2)
CAMERA_LR = 0.05             # Adam lr of (phi, theta), radians
SSIM_WEIGHT = 0.05           # weight of 1 - SSIM in the reconstruction loss
PRIOR_WEIGHT = 1e-3          # weight of the FiLM prior (mean squared z-score)
FINETUNE_LR = 1e-4           # Adam lr of the generator weights in pivotal tuning
LOCALITY_WEIGHT = 1.0        # weight of the locality regulariser of pivotal tuning
LOCALITY_LATENTS = 4         # other subjects the locality regulariser keeps intact
LOCALITY_PSI = 0.7           # their truncation (the renders users make)
MIN_FILM_STD = 1e-6          # floor of the prior's standard deviations (the FiLM spread is ~0.2)

MAPPING_PREFIX = 'representation.rf_network.mapping_network.'  # parameters pivotal tuning leaves alone

POSE_GRID_STEP = math.radians(10)   # spacing of the pose-search grid
POSE_SEARCH_SIZE = 16               # render side of the pose search, pixels


@dataclasses.dataclass(frozen=True)
class Settings:
    """Optimisation settings (defaults above)."""
    steps: int = DEFAULT_STEPS
    pose_starts: int = DEFAULT_POSE_STARTS
    start_steps: int = DEFAULT_START_STEPS
    finetune_steps: int = 0
    seed: int = 0
    z_lr: float = Z_LR
    latent_lr: float = LATENT_LR
    camera_lr: float = CAMERA_LR
    ssim_weight: float = SSIM_WEIGHT
    prior_weight: float = PRIOR_WEIGHT
    finetune_lr: float = FINETUNE_LR
    locality_weight: float = LOCALITY_WEIGHT


@dataclasses.dataclass
class Result:
    """What invert() found. Tensors on the generator's device, detached.

    frequencies, phase_shifts [1, 9 H]; camera_pos [1, 2]; generator: the tuned copy (None
    without fine-tuning); losses [steps] and finetune_losses [finetune_steps] (float lists);
    starts [S, 2]: the cameras the fit started from (the winner first).
    """
    frequencies: torch.Tensor
    phase_shifts: torch.Tensor
    camera_pos: torch.Tensor
    generator: object
    losses: list
    finetune_losses: list
    starts: torch.Tensor


@dataclasses.dataclass
class FilmPrior:
    """Mean and standard deviation [1, 9 H] of the FiLM parameters of the truncation latents (the
    standard deviations floored at MIN_FILM_STD, since the prior divides by them)."""
    mean_frequencies: torch.Tensor
    mean_phase_shifts: torch.Tensor
    std_frequencies: torch.Tensor
    std_phase_shifts: torch.Tensor


@torch.no_grad()
def film_prior(generator):
    """FiLM statistics over the generator's fixed truncation latents (mean = get_avg_w's)."""
    latent_rng = torch.Generator(device='cpu').manual_seed(TRUNCATION_SEED)
    z = torch.randn(TRUNCATION_NUM_Z, generator.z_dim, generator=latent_rng).to(generator.avg_frequencies.device)
    frequencies, phase_shifts = generator.representation.rf_network.mapping_network(z)
    return FilmPrior(frequencies.mean(0, keepdim=True), phase_shifts.mean(0, keepdim=True),
                     frequencies.std(0, keepdim=True).clamp_min(MIN_FILM_STD),
                     phase_shifts.std(0, keepdim=True).clamp_min(MIN_FILM_STD))


def prior_penalty(frequencies, phase_shifts, prior):
    """Mean squared z-score of the FiLM parameters under the prior (0 at the average)."""
    return 0.5 * (((frequencies - prior.mean_frequencies) / prior.std_frequencies).pow(2).mean()
                  + ((phase_shifts - prior.mean_phase_shifts) / prior.std_phase_shifts).pow(2).mean())


def reconstruction_loss(image, target, ssim_weight):
    """MSE (on [-1, 1]) + ssim_weight (1 - SSIM) of image vs target [B, 3, N, N]."""
    loss = (image - target).pow(2).mean()
    if ssim_weight:
        loss = loss + ssim_weight * (1 - ssim(image, target))
    return loss


# ----------------------------------------------------------------------------------- pose search
def pose_grid(generator):
    """Cameras [P, 2] = (phi, theta) at most POSE_GRID_STEP apart over the generator's trained pose
    range (geometry.views.pose_range / pose_grid, the grid that extract_shapes.py fuses at its own step)."""
    prior = {key: getattr(generator, key) for key in ('sample_dist', 'h_mean', 'h_stddev', 'v_mean', 'v_stddev')}
    return views.pose_grid(*views.pose_range(prior), POSE_GRID_STEP)


@torch.no_grad()
def search_poses(generator, camera, target, prior, count):
    """The `count` grid cameras [count, 2] whose average-subject renders best match target [1, 3, N, N]."""
    grid = pose_grid(generator).to(target.device)
    small_target = F.interpolate(target, size=POSE_SEARCH_SIZE, mode='area')
    errors = torch.stack([
        (render(generator, prior.mean_frequencies, prior.mean_phase_shifts, pose[None], camera,
                POSE_SEARCH_SIZE) - small_target).pow(2).mean()
        for pose in grid])
    return grid[errors.argsort()[:count]]


# ----------------------------------------------------------------------------------- fitting
class _Fit:
    """One start of the fit: its parameters, optimiser and loss curve.

    Steps [0, z_steps) (z_steps = steps // 2) optimise z [1, z_dim] (from 0) through the mapping
    network, truncated towards the average with psi = min(1, (step + 1) / (PSI_RAMP z_steps)); later
    steps optimise the FiLM parameters themselves from where z left them.
    """

    def __init__(self, generator, prior, camera_pos, settings, optimize_pose):
        self.mapping = generator.representation.rf_network.mapping_network
        self.prior = prior
        self.z_steps = settings.steps // 2
        self.total_steps = settings.steps
        self.z = torch.zeros(1, generator.z_dim, device=camera_pos.device, requires_grad=True)
        self.frequencies = prior.mean_frequencies.clone().requires_grad_(True)
        self.phase_shifts = prior.mean_phase_shifts.clone().requires_grad_(True)
        self.camera_pos = camera_pos.reshape(1, 2).clone().requires_grad_(optimize_pose)
        groups = [{'params': [self.z], 'lr': settings.z_lr},
                  {'params': [self.frequencies, self.phase_shifts], 'lr': settings.latent_lr}]
        if optimize_pose:
            groups.append({'params': [self.camera_pos], 'lr': settings.camera_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.base_lrs = [group['lr'] for group in groups]
        self.losses = []

    def film(self):
        """The current FiLM parameters (frequencies, phase_shifts) [1, 9 H]."""
        step = len(self.losses)
        if step >= self.z_steps:
            return self.frequencies, self.phase_shifts
        psi = min(1.0, (step + 1) / (PSI_RAMP * self.z_steps))
        frequencies, phase_shifts = self.mapping(self.z)
        return (self.prior.mean_frequencies + psi * (frequencies - self.prior.mean_frequencies),
                self.prior.mean_phase_shifts + psi * (phase_shifts - self.prior.mean_phase_shifts))

    def run(self, generator, camera, target, settings, steps, progress):
        for _ in range(steps):
            if len(self.losses) == self.z_steps > 0:  # switch from z to the FiLM parameters
                with torch.no_grad():
                    frequencies, phase_shifts = self.mapping(self.z)
                    self.frequencies.copy_(frequencies)
                    self.phase_shifts.copy_(phase_shifts)
            decay = 0.5 * (1 + math.cos(math.pi * len(self.losses) / self.total_steps))  # cosine, 1 -> 0
            for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
                group['lr'] = base_lr * decay
            frequencies, phase_shifts = self.film()
            image = render(generator, frequencies, phase_shifts, self.camera_pos, camera)
            loss = reconstruction_loss(image, target, settings.ssim_weight)
            loss = loss + settings.prior_weight * prior_penalty(frequencies, phase_shifts, self.prior)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                self.camera_pos[:, 0].clamp_(cameras.POLE_EPS, math.pi - cameras.POLE_EPS)
            self.losses.append(loss.item())
            progress.update(1)
            progress.set_postfix(loss=f'{loss.item():.4f}', psnr=f'{psnr(image.detach(), target):.2f}')


def fit_latent(generator, camera, target, prior, starts, settings, optimize_pose, progress):
    """Fit FiLM parameters (and the camera) to target [1, 3, N, N] from each start [S, 2].

    Returns the winning _Fit (lowest loss after start_steps) run to settings.steps, and the
    starts reordered winner first.
    """
    fits = [_Fit(generator, prior, start, settings, optimize_pose) for start in starts]
    best = 0
    if len(fits) > 1:
        for fit in fits:
            fit.run(generator, camera, target, settings, min(settings.start_steps, settings.steps), progress)
        best = min(range(len(fits)), key=lambda index: fits[index].losses[-1])
    winner = fits[best]
    winner.run(generator, camera, target, settings, settings.steps - len(winner.losses), progress)
    order = [best] + [index for index in range(len(fits)) if index != best]
    return winner, starts[order]


# ----------------------------------------------------------------------------------- pivotal tuning
def finetune(generator, camera, target, frequencies, phase_shifts, camera_pos, settings, progress):
    """Tune a copy of the generator so that the fixed FiLM parameters and camera render target.

    Returns (tuned generator in eval mode, loss curve).
    """
    draw = torch.Generator().manual_seed(settings.seed)
    device = target.device
    z = torch.randn(LOCALITY_LATENTS, generator.z_dim, generator=draw).to(device)
    _, poses = cameras.sample_camera_positions(
        LOCALITY_LATENTS, generator.sample_dist, generator.h_stddev, generator.v_stddev, generator.h_mean,
        generator.v_mean, 'cpu', generator=draw)
    poses = poses.to(device)
    with torch.no_grad():
        other_film = generator.film_parameters(z, LOCALITY_PSI)
        originals = [render(generator, other_film[0][i:i + 1], other_film[1][i:i + 1], poses[i:i + 1], camera)
                     for i in range(LOCALITY_LATENTS)]

    tuned = copy.deepcopy(generator)
    parameters = []
    for name, parameter in tuned.named_parameters():
        trained = not name.startswith(MAPPING_PREFIX)  # the mapping network is unused: FiLM parameters are given
        parameter.requires_grad_(trained)
        if trained:
            parameters.append(parameter)
    optimizer = torch.optim.Adam(parameters, lr=settings.finetune_lr)
    losses = []
    for step in range(settings.finetune_steps):
        image = render(tuned, frequencies, phase_shifts, camera_pos, camera)
        loss = reconstruction_loss(image, target, settings.ssim_weight)
        other = step % LOCALITY_LATENTS
        other_image = render(tuned, other_film[0][other:other + 1], other_film[1][other:other + 1],
                             poses[other:other + 1], camera)
        loss = loss + settings.locality_weight * (other_image - originals[other]).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        progress.update(1)
        progress.set_postfix(loss=f'{loss.item():.4f}', psnr=f'{psnr(image.detach(), target):.2f}')
    for parameter in tuned.parameters():
        parameter.requires_grad_(False)
    return tuned.eval(), losses


# ----------------------------------------------------------------------------------- all together
def invert(generator, camera, target, settings=Settings(), pose=None, optimize_pose=True, progress=True):
    """Invert target [1, 3, N, N] (in [-1, 1], N = generator.img_size).

    Args:
        camera: {'fov', 'ray_start', 'ray_end'} (the config's camera section).
        pose: None (search the pose grid) or a known (phi, theta) to start from.
        optimize_pose: optimise the camera (always when pose is None).
        progress: show a tqdm bar.
    Returns:
        Result. The generator's own weights are never changed.
    """
    device = target.device
    optimize_pose = optimize_pose or pose is None
    prior = film_prior(generator)
    if pose is None:
        starts = search_poses(generator, camera, target, prior, settings.pose_starts)
    else:
        starts = torch.tensor([pose], dtype=torch.float32, device=device)
    total = settings.steps + (len(starts) - 1) * min(settings.start_steps, settings.steps) + settings.finetune_steps
    requires_grad = [p.requires_grad for p in generator.parameters()]
    for parameter in generator.parameters():
        parameter.requires_grad_(False)  # only the latent and camera learn in the fit
    try:
        with tqdm(total=total, desc='inverting', unit='step', disable=not progress) as bar:
            fit, starts = fit_latent(generator, camera, target, prior, starts, settings, optimize_pose, bar)
            frequencies, phase_shifts = (value.detach() for value in fit.film())
            camera_pos = fit.camera_pos.detach()
            tuned, finetune_losses = None, []
            if settings.finetune_steps > 0:
                bar.set_description('fine-tuning')
                tuned, finetune_losses = finetune(generator, camera, target, frequencies, phase_shifts, camera_pos,
                                                  settings, bar)
    finally:
        for parameter, flag in zip(generator.parameters(), requires_grad):
            parameter.requires_grad_(flag)
    return Result(frequencies, phase_shifts, camera_pos, tuned, fit.losses, finetune_losses, starts)
