"""The GRAM training loop (docs/design.md §6): one function, read top to bottom.

Each iteration: reset a loss scale that fell below 1; D step ('D main' + 'D R1' when due);
G step ('G main'); both EMAs; then logs, snapshots and checkpoints. Gradients are summed over a
rank's chunks and averaged over ranks (utils.distributed.average_gradients); a non-finite loss
skips that update on every rank, and too many in a row stop training.
"""
import json
import math
import os
import signal
import time
import traceback

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from checkpoints import checkpoint
from datasets import begin_epoch, build_dataloader, build_dataset
from discriminators import build_discriminator
from generators import build_generator
from metrics.diagnostics import hue_over_objects_and_views, hue_spread, latent_spread
from training.ema import EMA
from training.loss import GramLoss
from utils import distributed
from utils.cli import UserError
from utils.files import atomic_path, atomic_write_text, remove_stale_temporaries
from utils.signals import StopRequest

EMA_DECAY = 0.999              # first EMA (written to generator_ema.pth)
EMA2_DECAY = 0.9999            # second EMA
SNAPSHOT_COUNT = 25            # fixed latents rendered in each snapshot grid
SNAPSHOT_ROWS = 5              # 5 x 5 grid
SNAPSHOT_PSI = 0.7             # truncation of the snapshots
SNAPSHOT_TILT = 0.5            # tilted snapshot: camera origin (-sin 0.5, 0, cos 0.5)
SNAPSHOT_SEED_OFFSET = 12345   # snapshot latents come from seed + this offset (own RNG)
PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class TrainingError(UserError):
    """Training cannot go on; the message says why and what to do, in one line."""


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT / SIGTERM at `step`, after saving a checkpoint there unless
    `saved` is False (a streak of non-finite losses: the newest checkpoint is the last healthy one)."""

    def __init__(self, signal_number, step, saved):
        what = ('after saving a checkpoint' if saved else
                'without saving (non-finite losses: the newest checkpoint is the last healthy one)')
        super().__init__(f"stopped by {signal.Signals(signal_number).name} at step {step} {what}; "
                         f"resume with --load_dir")
        self.signal_number = signal_number
        self.step = step


def training_loop(
    config,                         # resolved config dict (configs.get_config + --set overrides)
    output_dir,                     # run folder: checkpoints/, snapshots/, stats.jsonl, tensorboard/
    device,                         # torch.device of this rank (utils.distributed.init)
    data_dir            = None,     # dataset folder; None: config['dataset']['kwargs']['dataset_path']
    load_dir            = None,     # resume from the newest complete checkpoint in this folder
    set_step            = None,     # override the step counter after loading (released --set_step)
    patch_split         = None,     # render fakes as this many bands (power of 2); None: whole images
    n_epochs            = 3000,     # stop after this many passes over the data
    max_steps           = None,     # stop once this many iterations are done in total; None: no limit
    sample_interval     = 500,      # snapshot grids + rolling checkpoint every this many steps
    model_save_interval = 5000,     # permanent checkpoint every this many steps
    log_interval        = 50,       # log line, stats.jsonl and TensorBoard scalars every this many steps
    seed                = 0,        # model init; rank r draws from seed * world_size + r
    precision           = 'fp32',   # fp32 | bf16 | fp16 autocast (fp16 also enables loss scaling)
    num_workers         = None,     # DataLoader workers; None: the datasets module's default
    max_nonfinite       = 10,       # stop after this many iterations in a row with a non-finite loss
    run_options         = None,     # the resolved command-line options, saved as args.json (rank 0)
):
    """Train GRAM; returns the final step. Raises TrainingError, DatasetError, CheckpointError, and
    TrainingInterrupted after saving a checkpoint when SIGINT or SIGTERM arrives (a second signal
    stops at once)."""
    rank, world_size = distributed.get_rank(), distributed.get_world_size()
    is_main = rank == 0

    # Load dataset (each rank reads its own share).
    dataset = build_dataset(config, data_dir)
    batch_size = config['global']['batch_size']
    loader, _ = build_dataloader(dataset, batch_size, rank=rank, world_size=world_size, shuffle=True,
                                       seed=seed, num_workers=num_workers)

    # Construct networks: identical init on every rank (then copied from rank 0 to be sure) and EMAs.
    torch.manual_seed(seed)
    generator = build_generator(config).to(device)
    discriminator = build_discriminator(config).to(device)
    distributed.broadcast_module(generator)
    distributed.broadcast_module(discriminator)
    ema, ema2 = EMA(generator, EMA_DECAY), EMA(generator, EMA2_DECAY)

    # Optimisers, mixed precision and the loss phases.
    opt = config['optimizer']
    grad_clip = opt['grad_clip']
    optimizer_G, optimizer_D = build_optimizers(generator, discriminator, opt)
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # identity unless fp16

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    loss = GramLoss(generator, discriminator, config, scaler, autocast, patch_split)

    # From here on every rank draws its own random numbers (z, poses, flips).
    torch.manual_seed(seed * world_size + rank)

    # Resume: weights, optimisers, EMAs, step, epoch, data position and RNG state.
    step, epoch, batch_in_epoch, rng_state = 0, 0, 0, None
    if load_dir is not None:
        path, state = checkpoint.find_latest_checkpoint(load_dir, map_location=device, log=distributed.print0)
        other_settings = checkpoint.check_same_model(state['config'], config, path)
        generator.load_state_dict(state['generator'])
        discriminator.load_state_dict(state['discriminator'])
        ema.load_state_dict(state['ema'])
        ema2.load_state_dict(state['ema2'])
        load_optimizer_state(optimizer_G, state['optimizer_G'])
        load_optimizer_state(optimizer_D, state['optimizer_D'])
        if state['scaler'] and scaler.is_enabled():  # a disabled scaler saves {}
            scaler.load_state_dict(state['scaler'])
        step, epoch, batch_in_epoch = state['step'], state['epoch'], state['rng']['batch_in_epoch']
        distributed.print0(f"resumed from {path} at step {step} (epoch {epoch})")
        if other_settings:
            distributed.print0(f"note: settings changed since the checkpoint: {'; '.join(other_settings)}")
        rng_state = state['rng']
        if rng_state['world_size'] != world_size:
            distributed.print0(f"note: checkpoint used {rng_state['world_size']} ranks, now {world_size}; "
                               f"random draws are reseeded, so the run will not repeat bit for bit")
            torch.manual_seed((seed + step) * world_size + rank)
            rng_state = None
        if batch_in_epoch > len(loader):  # fewer images than when the checkpoint was written
            distributed.print0(f"note: the checkpoint was {batch_in_epoch} batches into epoch {epoch}, but the data "
                               f"now makes {len(loader)} per epoch; continuing with epoch {epoch + 1}")
            epoch, batch_in_epoch = epoch + 1, 0
        if set_step is not None:
            step = set_step

    # Every check passed: only now is the run folder written to (rank 0).
    if is_main:
        write_run_files(output_dir, config, run_options)

    # Fixed snapshot latents, from their own RNG so every (resumed) run renders the same ones.
    snapshot_rng = torch.Generator().manual_seed(seed + SNAPSHOT_SEED_OFFSET)
    snapshot_z = torch.randn(SNAPSHOT_COUNT, generator.z_dim, generator=snapshot_rng).to(device)

    # Outputs (rank 0 only): logs, stats.jsonl, TensorBoard.
    total_steps = max_steps if max_steps is not None else n_epochs * len(loader)
    progress = ProgressLog(output_dir, is_main, log_interval, batch_size * world_size, step, total_steps)

    def snapshot(step):
        """Render the fixed latents (rank 0 only) and save the grids."""
        if is_main:
            progress.save_snapshots(step, render_snapshots(generator, snapshot_z, loss.render_kwargs, batch_size,
                                                           autocast))

    def save(step, epoch, batch_in_epoch):
        """Checkpoint + generator_ema.pth (collective: every rank contributes its RNG state);
        returns whether it was written.

        Never during a streak of non-finite losses (all ranks agree on it): the last checkpoint
        written before the streak stays the newest, so a resume goes back to healthy weights.
        """
        if nonfinite_in_a_row:
            progress.write(f"step {step}: checkpoint skipped (non-finite losses in the last {nonfinite_in_a_row} "
                           f"iterations); the newest checkpoint is still the last healthy one")
            return False
        diverged = distributed.modules_out_of_sync(generator, discriminator)
        if diverged:
            raise TrainingError(f"step {step}: the ranks' weights differ ({diverged}); "
                                f"resume from the last checkpoint with --load_dir")
        rng = collect_rng_state(device, batch_in_epoch)
        if is_main:
            path = checkpoint.save_checkpoint(output_dir, {
                'step': step, 'epoch': epoch, 'config': checkpoint.config_to_json(config),
                'generator': generator.state_dict(), 'discriminator': discriminator.state_dict(),
                'ema': ema.state_dict(), 'ema2': ema2.state_dict(),
                'optimizer_G': optimizer_G.state_dict(), 'optimizer_D': optimizer_D.state_dict(),
                'scaler': scaler.state_dict(), 'rng': rng})
            checkpoint.write_generator_ema(output_dir, ema.state_dict()['shadow'])
            checkpoint.prune_checkpoints(output_dir, model_save_interval, keep_step=step)
            progress.write(f"step {step}: saved {path}")
        return True

    # Train. A stop signal (any rank) ends the iteration in progress, then saves and stops.
    nonfinite_in_a_row = 0
    done = step >= total_steps or epoch >= n_epochs
    stop_signal, saved = 0, False  # the stop signal all ranks agreed on (0: none)
    batches = None  # the loader's iterator: its worker processes live as long as it does
    try:
        with StopRequest() as stop_request:
            while not done:
                begin_epoch(loader, epoch)
                batches = iter(loader)
                for _ in range(batch_in_epoch):  # after a resume: skip what the checkpoint had used of this epoch
                    next(batches)
                if rng_state is not None:
                    restore_rng_state(rng_state, rank, device)  # after the skip, whose loading drew flips
                    rng_state = None
                for real_img, real_pos in batches:
                    real_img, real_pos = real_img.to(device), real_pos.to(device)
                    if scaler.get_scale() < 1:  # a collapsed loss scale restarts at 1 (released rule)
                        scaler.update(1.0)

                    # Discriminator step: 'D main' + 'D R1' when due.
                    d_losses = loss.accumulate_discriminator(real_img, real_pos, apply_r1=loss.r1_due(step))
                    d_ok = take_optimizer_step(optimizer_D, list(discriminator.parameters()), d_losses['D'],
                                               scaler, grad_clip)

                    # Generator step: 'G main', summed over chunks; then the EMAs.
                    g_losses = loss.accumulate_generator(batch_size, device)
                    g_ok = take_optimizer_step(optimizer_G, list(generator.parameters()), g_losses['G'],
                                               scaler, grad_clip)
                    scaler.update()  # once per iteration, after the G step
                    if g_ok:
                        ema.update(generator)
                        ema2.update(generator)

                    # Non-finite losses: the update was skipped; stop after too many in a row.
                    step += 1
                    nonfinite_in_a_row = 0 if d_ok and g_ok else nonfinite_in_a_row + 1
                    if nonfinite_in_a_row:
                        bad = ' and '.join(name for name, ok in (('D', d_ok), ('G', g_ok)) if not ok)
                        progress.write(f"step {step}: non-finite {bad} loss, update skipped "
                                       f"({nonfinite_in_a_row} in a row)")
                    if nonfinite_in_a_row >= max_nonfinite:
                        raise TrainingError(
                            f"stopped at step {step}: {nonfinite_in_a_row} iterations in a row had a non-finite "
                            f"loss; lower the learning rates (or use --precision fp32), then resume with --load_dir")

                    # Logs, snapshots, checkpoints.
                    batch_in_epoch += 1
                    progress.record(step, {**d_losses, **g_losses})
                    done = step >= total_steps
                    if not done:
                        stop_signal = distributed.max_over_ranks(stop_request.signal_number or 0)
                    if step % sample_interval == 0 or done:
                        snapshot(step)
                    if step % sample_interval == 0 or step % model_save_interval == 0 or done or stop_signal:
                        saved = save(step, epoch, batch_in_epoch)
                    if done or stop_signal:
                        break
                else:  # the epoch ran out
                    epoch += 1
                    batch_in_epoch = 0
                    if epoch >= n_epochs:
                        snapshot(step)
                        save(step, epoch, batch_in_epoch)
                        done = True
                done = done or bool(stop_signal)
    except BaseException as error:
        # An error of a loader worker is re-raised from frames that hold the iterator (and the
        # error itself: a cycle). Clear them so the workers stop now; left to the exit, they would
        # wait forever, since workers ignore the SIGTERM an exiting process sends its helpers.
        traceback.clear_frames(error.__traceback__)
        raise
    finally:
        batches = None
        progress.close()

    if stop_signal:
        distributed.barrier()  # rank 0 has written the checkpoint
        raise TrainingInterrupted(stop_signal, step, saved)
    # Done.
    distributed.barrier()  # nobody leaves before rank 0 has written its last files
    distributed.print0(f"training finished at step {step}")
    return step


# ---------------------------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------------------------
def write_run_files(output_dir, config, run_options):
    """config.json and args.json in the run folder; stale temporaries of a killed run removed."""
    for folder in (output_dir, os.path.join(output_dir, checkpoint.CHECKPOINT_FOLDER)):
        remove_stale_temporaries(folder)
    atomic_write_text(json.dumps(checkpoint.config_to_json(config), indent=2) + '\n',
                      os.path.join(output_dir, 'config.json'))
    if run_options is not None:
        atomic_write_text(json.dumps(run_options, indent=2) + '\n', os.path.join(output_dir, 'args.json'))


def build_optimizers(generator, discriminator, optimizer_config):
    """Adam for G (the generator's parameter groups) and for D, from the config's optimizer section."""
    betas = tuple(optimizer_config['betas'])
    optimizer_G = torch.optim.Adam(generator.optimizer_param_groups(optimizer_config), lr=optimizer_config['gen_lr'],
                                   betas=betas)
    optimizer_D = torch.optim.Adam(discriminator.parameters(), lr=optimizer_config['disc_lr'], betas=betas)
    return optimizer_G, optimizer_D


def load_optimizer_state(optimizer, state):
    """Load an optimiser's moments but keep this run's hyperparameters (lr, betas from the config)."""
    settings = [{key: value for key, value in group.items() if key != 'params'} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, setting in zip(optimizer.param_groups, settings):
        group.update(setting)


def take_optimizer_step(optimizer, parameters, loss, scaler, grad_clip):
    """Average gradients over ranks, unscale, clip and step; skip the step if anything is non-finite.

    With fp16 loss scaling an overflowing gradient is the scaler's job (it skips the step and
    lowers the scale), so only a non-finite loss counts as a failure there.
    Returns True if the loss (mean over ranks) and gradient norm were finite.
    """
    mean_loss = distributed.average_gradients(parameters, loss)
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    finite = bool(torch.isfinite(mean_loss)) and (bool(torch.isfinite(grad_norm)) or scaler.is_enabled())
    if finite:
        scaler.step(optimizer)
    optimizer.zero_grad(set_to_none=True)
    return finite


@torch.no_grad()
def render_snapshots(generator, z, render_kwargs, batch_size, autocast):
    """Render the fixed latents z [25, z_dim] with the raw generator, psi 0.7.

    Returns {'front': [25, 3, N, N], 'tilted': [25, 3, N, N]} on the CPU, in [-1, 1].
    """
    generator.get_avg_w()  # the truncation average goes stale with every optimiser step
    origins = {'front': (0.0, 0.0, 1.0), 'tilted': (-math.sin(SNAPSHOT_TILT), 0.0, math.cos(SNAPSHOT_TILT))}
    images = {}
    for view, origin in origins.items():
        parts = []
        for z_chunk in z.split(batch_size):
            with autocast():
                img, _ = generator(z_chunk, camera_origin=origin, truncation_psi=SNAPSHOT_PSI, **render_kwargs)
            parts.append(img.float().cpu())
        images[view] = torch.cat(parts)
    return images


def collect_rng_state(device, batch_in_epoch):
    """RNG state of every rank (collective): {'torch_cpu' [world, n] uint8, 'torch_cuda' (CUDA only),
    'world_size', 'batch_in_epoch'}."""
    state = {'torch_cpu': distributed.all_gather_tensor(torch.get_rng_state()),
             'world_size': distributed.get_world_size(), 'batch_in_epoch': batch_in_epoch}
    if device.type == 'cuda':
        state['torch_cuda'] = distributed.all_gather_tensor(torch.cuda.get_rng_state(device))
    return state


def restore_rng_state(state, rank, device):
    """Put back this rank's CPU (and CUDA) RNG state from collect_rng_state's output."""
    # Copies: a row of the stacked states is a view with a storage offset, which set_rng_state
    # cannot take (it crashed every rank >= 1).
    torch.set_rng_state(state['torch_cpu'][rank].cpu().clone())
    if device.type == 'cuda' and 'torch_cuda' in state:
        torch.cuda.set_rng_state(state['torch_cuda'][rank].cpu().clone(), device)


class ProgressLog:
    """tqdm bar, periodic log lines, stats.jsonl and TensorBoard; silent on ranks other than 0.

    Losses are averaged over the log interval (and over ranks: `record` is collective at log steps).
    """

    def __init__(self, output_dir, is_main, log_interval, images_per_step, start_step, total_steps):
        self.output_dir = output_dir
        self.is_main = is_main
        self.log_interval = log_interval
        self.images_per_step = images_per_step
        self.sums, self.count = {}, 0
        self.last_time, self.last_step = time.time(), start_step
        self.bar = tqdm(total=total_steps, initial=start_step, desc='train', dynamic_ncols=True,
                        disable=not is_main)
        self.writer = SummaryWriter(os.path.join(output_dir, 'tensorboard')) if is_main else None
        self.stats_path = os.path.join(output_dir, 'stats.jsonl')

    def write(self, line):
        if self.is_main:
            tqdm.write(line)

    def record(self, step, losses):
        """Accumulate this step's losses; every log_interval steps emit them."""
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float().cpu()
        self.count += 1
        self.bar.update(1)
        if step % self.log_interval != 0:
            return
        names = sorted(self.sums)
        means = distributed.all_reduce_mean(torch.stack([self.sums[n] for n in names]) / self.count)
        elapsed = time.time() - self.last_time
        steps = step - self.last_step
        stats = {'step': step, **{f'loss/{n}': float(v) for n, v in zip(names, means)},
                 'img_per_s': steps * self.images_per_step / elapsed, 'sec_per_iter': elapsed / steps}
        self.sums, self.count = {}, 0
        self.last_time, self.last_step = time.time(), step
        if not self.is_main:
            return
        self.bar.set_postfix(D=f"{stats['loss/D']:.3f}", G=f"{stats['loss/G']:.3f}")
        self.write(f"step {step:7d} | " + ' | '.join(f"{n} {float(v):.4g}" for n, v in zip(names, means))
                   + f" | {stats['img_per_s']:.1f} img/s | {stats['sec_per_iter']:.2f} s/it")
        with open(self.stats_path, 'a') as handle:
            handle.write(json.dumps(stats) + '\n')
        for name, value in stats.items():
            if name != 'step':
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def save_snapshots(self, step, images):
        """5x5 grids of the snapshot renders -> snapshots/{step}_{view}.png and TensorBoard, plus
        each view's latent and hue spreads and the hue change between the views (log line and
        TensorBoard scalars) as mode- and colour-collapse gauges."""
        spreads, hues = {}, {}
        for view, batch in images.items():
            grid = make_grid(batch * 0.5 + 0.5, nrow=SNAPSHOT_ROWS).clamp(0, 1)  # [3, H, W] in [0, 1]
            with atomic_path(os.path.join(self.output_dir, 'snapshots', f'{step:07d}_{view}.png')) as tmp_path:
                save_image(grid, tmp_path)
            self.writer.add_image(f'snapshot/{view}', grid, step)
            spreads[view] = latent_spread(batch)
            hues[view] = hue_spread(batch)
            self.writer.add_scalar(f'snapshot/{view}_latent_spread', spreads[view], step)
            self.writer.add_scalar(f'snapshot/{view}_hue_spread', hues[view], step)
        _, hue_over_views = hue_over_objects_and_views(torch.stack(list(images.values()), dim=1))  # [25, views, ...]
        self.writer.add_scalar('snapshot/hue_over_views', hue_over_views, step)
        self.writer.flush()
        self.write(f"snapshot {step:7d} | latent spread " + ' | '.join(f'{view} {value:.4f}' for view, value in spreads.items())
                   + ' (pixel std over the snapshot latents; near 0 = every latent gives the same image)'
                   + ' | hue spread ' + ' | '.join(f'{view} {value:.3f}' for view, value in hues.items())
                   + ' (near 0 = one colour for every latent)'
                   + f' | hue over views {hue_over_views:.3f} (near or above the hue spread = colour follows the camera; '
                   'read its trend)')

    def close(self):
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
