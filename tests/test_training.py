"""Training losses and loop helpers on TINY_test (16 px, CPU): patch split, batch split, R1,
optimiser groups, non-finite handling, checkpoint files."""
import contextlib
import copy
import math
import os

import pytest
import torch
import torch.nn.functional as F
from helpers import write_tiny_dataset

import configs
from checkpoints import checkpoint
from discriminators import build_discriminator
from generators import build_generator
from training import GramLoss, TrainingError, training_loop
from training.loop import ProgressLog, take_optimizer_step

SEED = 3


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """These tensors are tiny: one thread is faster, and immune to a busy second core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(*overrides):
    return configs.apply_overrides(configs.get_config('TINY_test'), list(overrides))


def make_loss(config, patch_split=None):
    """GramLoss on freshly seeded networks (same weights for the same config); fp32, no scaling."""
    torch.manual_seed(SEED)
    generator, discriminator = build_generator(config), build_discriminator(config)
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    return GramLoss(generator, discriminator, config, scaler, contextlib.nullcontext, patch_split)


def grads(module):
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def generator_grads(config, patch_split=None, batch_size=2):
    loss = make_loss(config, patch_split)
    torch.manual_seed(SEED + 1)
    losses = loss.accumulate_generator(batch_size, torch.device('cpu'))
    return grads(loss.generator), losses['G']


# --------------------------------------------------------------------------------------------- G phase
def test_patch_split_gradients_equal_whole_image_gradients():
    config = tiny_config()
    whole, whole_loss = generator_grads(config, patch_split=None)
    for patch_split in (2, 4):
        patched, patched_loss = generator_grads(config, patch_split=patch_split)
        assert patched_loss.item() == pytest.approx(whole_loss.item(), rel=1e-6)
        assert list(patched) == list(whole)  # every generator parameter
        for name in whole:
            scale = whole[name].abs().max().item()
            assert scale > 0, f'{name} got no gradient'
            assert torch.allclose(patched[name], whole[name], rtol=1e-4, atol=1e-5 * scale), name


def test_patch_split_renders_the_whole_image():
    loss_whole, loss_patch = make_loss(tiny_config()), make_loss(tiny_config(), patch_split=4)
    z = torch.randn(2, loss_whole.generator.z_dim)
    torch.manual_seed(0)
    img, pos = loss_whole.render(z)
    torch.manual_seed(0)
    img_patch, pos_patch = loss_patch.render(z)  # only the first band draws the pose
    assert img_patch.shape == (2, 3, 16, 16)
    assert torch.equal(pos_patch, pos)
    assert torch.allclose(img_patch, img, atol=1e-6)


def test_batch_split_sums_chunk_losses():
    # With a fixed pose there are no pose draws, so both runs see the same z. Each chunk loss is a
    # mean over its samples, and chunk losses are summed (not averaged): batch 2 in 2 chunks of 1
    # gives twice the gradient of batch 2 in one chunk (up to float rounding of the batched render).
    fixed_pose = 'generator.kwargs.sample_dist=fixed'
    one, loss_one = generator_grads(tiny_config(fixed_pose, 'process.batch_split=1'))
    two, loss_two = generator_grads(tiny_config(fixed_pose, 'process.batch_split=2'))
    assert loss_two.item() == pytest.approx(2 * loss_one.item(), rel=1e-5)
    for name in one:
        assert torch.allclose(two[name], 2 * one[name], rtol=1e-4, atol=1e-4 * one[name].abs().max().item()), name


def test_view_consistency_penalty_measures_colour_change_over_views():
    loss = make_loss(tiny_config())
    z = torch.randn(2, loss.generator.z_dim)
    torch.manual_seed(0)
    penalty = loss.view_consistency_penalty(z)
    assert penalty.item() > 0
    penalty.backward()
    color_layer = loss.generator.representation.rf_network.color_layer[0].layer
    assert color_layer.weight.grad[:, :3].abs().max() > 0                  # the direction input
    sample_network = loss.generator.representation.sample_network
    assert all(p.grad is None for p in sample_network.parameters())       # the manifolds are not involved
    with torch.no_grad():
        color_layer.weight[:, :3] = 0                                      # colour no longer sees the view
    torch.manual_seed(0)
    assert loss.view_consistency_penalty(z).item() == 0


def test_view_consistency_penalty_joins_the_generator_loss():
    # Off (the released loss): only 'G'. On: 'G' includes the weighted penalty, logged as 'G_view',
    # and the render's random draws come first, so the image loss is unchanged.
    _, loss_off = generator_grads(tiny_config())
    loss = make_loss(tiny_config('process.view_consistency_lambda=100'))
    torch.manual_seed(SEED + 1)
    losses = loss.accumulate_generator(2, torch.device('cpu'))
    assert losses['G_view'].item() > 0
    assert losses['G'].item() == pytest.approx(loss_off.item() + losses['G_view'].item(), rel=1e-6)
    with pytest.raises(ValueError, match='view_consistency_lambda'):
        configs.validate(tiny_config('process.view_consistency_lambda=-1'))


def test_batch_split_must_divide_the_batch():
    loss = make_loss(tiny_config('process.batch_split=2'))
    with pytest.raises(ValueError, match='not divisible'):
        loss.accumulate_generator(3, torch.device('cpu'))


def test_patch_split_must_be_power_of_two():
    with pytest.raises(ValueError, match='power of 2'):
        make_loss(tiny_config(), patch_split=3)


# --------------------------------------------------------------------------------------------- D phase
def test_r1_penalty_matches_per_sample_autograd():
    loss = make_loss(tiny_config())
    real = torch.randn(3, 3, 16, 16, requires_grad=True)
    logits, _ = loss.discriminator(real)
    penalty = loss.r1_penalty(logits, real)
    # Independent: one image at a time, ||d D(x_b) / d x_b||^2, averaged over the batch.
    norms = []
    for b in range(3):
        x = real[b:b + 1].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss.discriminator(x)[0].sum(), x)
        norms.append(grad.pow(2).sum())
    expected = torch.stack(norms).mean()
    assert expected > 0
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-5)


def test_discriminator_phase_equals_the_spec_formula():
    config = tiny_config('process.r1_lambda=3.0', 'process.r1_interval=2', 'process.batch_split=2')
    loss = make_loss(config)
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    real_pos = torch.tensor([[1.2, 1.4], [0.8, 2.0]])
    torch.manual_seed(7)
    terms = loss.accumulate_discriminator(real, real_pos, apply_r1=True)
    ours = grads(loss.discriminator)

    # Independent computation of docs/design.md §6's d_loss with the same draws: z for the whole batch, then
    # each chunk's poses inside its generator call.
    reference = make_loss(config)
    generator, discriminator = reference.generator, reference.discriminator
    camera = config['camera']
    torch.manual_seed(7)
    z = torch.randn(2, generator.z_dim)
    with torch.no_grad():
        chunks = [generator(z[i:i + 1], camera['fov'], camera['ray_start'], camera['ray_end'], img_size=16)
                  for i in range(2)]
    fake, fake_pos = torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])
    x = real.clone().requires_grad_(True)
    real_logits, real_pos_pred = discriminator(x)
    fake_logits, fake_pos_pred = discriminator(fake)
    (grad_x,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)
    r1 = grad_x.pow(2).sum(dim=(1, 2, 3)).mean()
    d_loss = (F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
              + 0.5 * 3.0 * 2 * r1                                   # lazy R1: scaled by the interval
              + 15.0 * F.mse_loss(fake_pos_pred, fake_pos)           # pos_lambda
              + 15.0 * F.mse_loss(real_pos_pred, real_pos))          # real_pos_lambda
    d_loss.backward()
    assert terms['D'].item() == pytest.approx(d_loss.item(), rel=1e-5)
    assert terms['D_r1'].item() == pytest.approx(3.0 * r1.item(), rel=1e-5)
    for name, param in discriminator.named_parameters():
        assert torch.allclose(ours[name], param.grad, rtol=1e-4, atol=1e-7), name
    assert all(p.grad is None for p in loss.generator.parameters())  # fakes had no gradients


def test_discriminator_phase_with_patch_split_matches_whole_images():
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    real_pos = torch.tensor([[1.2, 1.4], [0.8, 2.0]])
    results = []
    for patch_split in (None, 4):
        loss = make_loss(tiny_config(), patch_split)
        torch.manual_seed(11)
        terms = loss.accumulate_discriminator(real, real_pos, apply_r1=False)
        results.append((terms, grads(loss.discriminator)))
    (terms_a, grads_a), (terms_b, grads_b) = results
    assert 'D_r1' not in terms_a
    assert terms_b['D'].item() == pytest.approx(terms_a['D'].item(), rel=1e-5)
    for name in grads_a:
        assert torch.allclose(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6), name


def test_r1_schedule():
    loss = make_loss(tiny_config('process.r1_interval=4'))
    assert [loss.r1_due(step) for step in range(6)] == [True, False, False, False, True, False]
    assert not make_loss(tiny_config('process.r1_lambda=0.0')).r1_due(0)


# --------------------------------------------------------------------------------------------- loop helpers
def test_generator_param_groups_in_released_order():
    config = configs.get_config('TINY_test')  # CARLA-based: sampling_network_lr is set
    generator = build_generator(config)
    groups = generator.optimizer_param_groups(config['optimizer'])
    assert [g['name'] for g in groups] == ['sampling_network', 'generator']
    assert groups[0]['lr'] == config['optimizer']['sampling_network_lr']
    assert 'lr' not in groups[1]  # takes gen_lr from the optimiser
    assert [id(p) for p in groups[0]['params']] == [id(p) for p in generator.representation.sample_network.parameters()]

    optimizer_config = {**config['optimizer'], 'mapping_network_lr': 1e-6}
    groups = generator.optimizer_param_groups(optimizer_config)
    assert [g['name'] for g in groups] == ['sampling_network', 'generator', 'mapping_network']
    ids = [id(p) for g in groups for p in g['params']]
    assert sorted(ids) == sorted(id(p) for p in generator.parameters()) and len(set(ids)) == len(ids)

    ffhq_groups = generator.optimizer_param_groups({'gen_lr': 2e-5})
    assert [g['name'] for g in ffhq_groups] == ['generator']


def test_take_optimizer_step_skips_non_finite():
    module = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1, betas=(0.0, 0.9))
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    before = [p.detach().clone() for p in module.parameters()]

    out = module(torch.ones(1, 2)).sum() * float('nan')
    out.backward()
    assert not take_optimizer_step(optimizer, list(module.parameters()), out, scaler, grad_clip=1.0)
    assert all(torch.equal(p, b) for p, b in zip(module.parameters(), before))
    assert all(p.grad is None for p in module.parameters())

    out = module(torch.ones(1, 2)).sum()
    out.backward()
    assert take_optimizer_step(optimizer, list(module.parameters()), out, scaler, grad_clip=1.0)
    assert not torch.equal(module.weight, before[0])


def test_fp16_loss_scaling_on_cpu_skips_overflows_and_lowers_the_scale():
    # The default CUDA path (fp16 autocast + GradScaler) runs on a CPU too.
    module = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1, betas=(0.0, 0.9))
    scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 16)
    before = [p.detach().clone() for p in module.parameters()]
    with torch.autocast('cpu', dtype=torch.float16):
        out = module(torch.full((1, 2), 1e4)).float().sum() * 1e4  # finite loss, gradient overflows fp16 * scale
    scaler.scale(out).backward()
    assert take_optimizer_step(optimizer, list(module.parameters()), out, scaler, grad_clip=1.0)  # not a failure
    scaler.update()
    assert all(torch.equal(p, b) for p, b in zip(module.parameters(), before))  # the step was skipped
    assert scaler.get_scale() == 2.0 ** 15                                         # and the scale halved
    with torch.autocast('cpu', dtype=torch.float16):
        out = module(torch.ones(1, 2)).float().sum()
    scaler.scale(out).backward()
    assert take_optimizer_step(optimizer, list(module.parameters()), out, scaler, grad_clip=1.0)
    scaler.update()
    assert not torch.equal(module.weight, before[0])                              # training goes on


def test_fp16_training_on_cpu_resumes_its_loss_scale(tmp_path):
    data = write_tiny_dataset(str(tmp_path / 'data'))
    settings = dict(data_dir=data, log_interval=100, num_workers=0, sample_interval=2, model_save_interval=2,
                    precision='fp16')
    training_loop(tiny_config(), str(tmp_path / 'whole'), torch.device('cpu'), max_steps=4, **settings)
    training_loop(tiny_config(), str(tmp_path / 'resumed'), torch.device('cpu'), max_steps=2, **settings)
    training_loop(tiny_config(), str(tmp_path / 'resumed'), torch.device('cpu'), max_steps=4,
                  load_dir=str(tmp_path / 'resumed'), **settings)
    whole = torch.load(tmp_path / 'whole' / 'checkpoints' / 'step_0000004.pt', weights_only=True)
    resumed = torch.load(tmp_path / 'resumed' / 'checkpoints' / 'step_0000004.pt', weights_only=True)
    assert whole['scaler']['scale'] > 0 and resumed['scaler'] == whole['scaler']
    for key, value in whole['generator'].items():
        assert torch.equal(resumed['generator'][key], value), key


def test_gradient_clipping_at_grad_clip():
    module = torch.nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    before = module.weight.detach().clone()
    out = (module(torch.full((1, 4), 100.0))).sum()  # gradient 100 per weight, norm 200
    out.backward()
    take_optimizer_step(optimizer, list(module.parameters()), out, scaler, grad_clip=0.3)
    step = before - module.weight.detach()
    assert step.norm().item() == pytest.approx(0.3, rel=1e-4)  # SGD lr 1: the update is the clipped grad


def test_training_stops_after_repeated_non_finite_losses(tmp_path, capsys):
    config = tiny_config('optimizer.disc_lr=1e30')  # D weights explode after one step
    with pytest.raises(TrainingError, match=r'3 iterations in a row had a non-finite loss'):
        training_loop(config, str(tmp_path / 'run'), torch.device('cpu'),
                      data_dir=write_tiny_dataset(str(tmp_path / 'data')), max_steps=8, log_interval=100,
                      num_workers=0, max_nonfinite=3)
    assert not os.path.exists(tmp_path / 'run' / 'checkpoints')  # nothing NaN was saved
    out = capsys.readouterr().out
    # Step 1: D's update (finite loss) blew it up, so G's loss is already non-finite; then both.
    assert 'step 1: non-finite G loss, update skipped (1 in a row)' in out
    assert 'step 3: non-finite D and G loss, update skipped (3 in a row)' in out


def test_a_non_finite_streak_never_replaces_the_last_healthy_checkpoint(tmp_path, capsys):
    run, data = str(tmp_path / 'run'), write_tiny_dataset(str(tmp_path / 'data'))
    settings = dict(data_dir=data, log_interval=100, num_workers=0, model_save_interval=100)
    training_loop(tiny_config(), run, torch.device('cpu'), max_steps=2, sample_interval=2, **settings)
    exploding = tiny_config('optimizer.disc_lr=1e30')
    with pytest.raises(TrainingError, match='3 iterations in a row had a non-finite loss'):
        training_loop(exploding, run, torch.device('cpu'), load_dir=run, max_steps=8, sample_interval=1,
                      max_nonfinite=3, **settings)
    assert [step for step, _ in checkpoint.list_checkpoints(os.path.join(run, 'checkpoints'))] == [2]
    _, state = checkpoint.find_latest_checkpoint(run)
    assert all(torch.isfinite(value).all() for value in state['generator'].values())
    assert 'step 3: checkpoint skipped (non-finite losses' in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- checkpoints
def _fake_state(step, config):
    return {'step': step, 'epoch': 0, 'config': checkpoint.config_to_json(config), 'generator': {},
            'discriminator': {}, 'ema': {}, 'ema2': {}, 'optimizer_G': {}, 'optimizer_D': {}, 'scaler': {},
            'rng': {'torch_cpu': torch.get_rng_state()[None], 'world_size': 1, 'batch_in_epoch': 0}}


def test_newest_complete_checkpoint_is_found(tmp_path):
    config = configs.get_config('TINY_test')
    checkpoint.save_checkpoint(str(tmp_path), _fake_state(10, config))
    checkpoint.save_checkpoint(str(tmp_path), _fake_state(20, config))
    truncated = checkpoint.checkpoint_path(str(tmp_path), 30)
    with open(checkpoint.checkpoint_path(str(tmp_path), 20), 'rb') as handle:
        data = handle.read()
    with open(truncated, 'wb') as handle:
        handle.write(data[:len(data) // 2])  # an interrupted copy
    warnings = []
    path, state = checkpoint.find_latest_checkpoint(str(tmp_path), log=warnings.append)
    assert path.endswith('step_0000020.pt') and state['step'] == 20
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: skipping cannot read checkpoint '{truncated}'")
    checkpoint.prune_checkpoints(str(tmp_path), keep_every=100, keep_step=21)  # the next save after resuming
    assert os.path.exists(truncated)  # newer than the resumed one: kept for the user to inspect
    assert isinstance(state['config']['camera']['fov'], float)
    assert state['config']['generator']['representation']['kwargs']['center'] == [0, 0, 0]  # tuples -> lists


def test_no_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match='no complete checkpoint'):
        checkpoint.find_latest_checkpoint(str(tmp_path))


def test_prune_keeps_permanent_and_newest(tmp_path):
    config = configs.get_config('TINY_test')
    for step in (2, 4, 5, 6):
        checkpoint.save_checkpoint(str(tmp_path), _fake_state(step, config))
    checkpoint.prune_checkpoints(str(tmp_path), keep_every=4, keep_step=6)
    steps = [step for step, _ in checkpoint.list_checkpoints(str(tmp_path / 'checkpoints'))]
    assert steps == [4, 6]


def test_model_config_mismatch_and_other_differences():
    config = configs.get_config('TINY_test')
    changed_lr = configs.apply_overrides(config, ['optimizer.gen_lr=1e-3'])
    assert checkpoint.check_same_model(config, changed_lr, 'ckpt.pt') == ['optimizer.gen_lr: 2e-05 -> 0.001']
    with pytest.raises(checkpoint.CheckpointError, match=r'another config \(generator\.kwargs\.z_dim: 16 -> 8\)'):
        checkpoint.check_same_model(config, configs.apply_overrides(config, ['generator.kwargs.z_dim=8']), 'ckpt.pt')
    assert math.isclose(configs.get_config('CARLA_default')['optimizer']['sampling_network_lr'], 2e-6)


def test_spelled_out_defaults_match_a_checkpoint_that_lacks_them():
    # A checkpoint from before an optional key existed resumes with that key at its default.
    config = configs.get_config('CARLA_default')
    assert 'minibatch_std_group' not in config['discriminator']['kwargs']
    spelled_out = configs.apply_overrides(config, ['discriminator.kwargs.minibatch_std_group=0',
                                                   'discriminator.kwargs.max_channels=400'])
    assert checkpoint.check_same_model(config, spelled_out, 'ckpt.pt') == []
    with pytest.raises(checkpoint.CheckpointError, match=r'minibatch_std_group: 0 -> 4'):
        checkpoint.check_same_model(
            config, configs.apply_overrides(config, ['discriminator.kwargs.minibatch_std_group=4']), 'ckpt.pt')
    assert 'minibatch_std_group' not in config['discriminator']['kwargs']  # the input is not changed


def test_checkpoint_configs_of_the_released_layout_are_normalized():
    # Earlier checkpoints repeat img_size per section and spell out retired options at the value
    # the code implements; they resume. Anything else describes another model and is refused.
    config = configs.get_config('TINY_test')
    stored = copy.deepcopy(config)
    for section in configs.IMG_SIZE_SECTIONS:
        stored[section]['kwargs']['img_size'] = config['global']['img_size']
    stored['generator']['renderer']['kwargs']['view_dependence'] = True
    stored['discriminator']['kwargs']['minibatch_colour_std'] = False
    assert configs.normalize(stored) == config
    assert checkpoint.check_same_model(stored, config, 'ckpt.pt') == []
    stored['discriminator']['kwargs']['img_size'] = 32
    with pytest.raises(ValueError, match=r'global.img_size=16 but discriminator.kwargs.img_size=32'):
        configs.normalize(stored)
    stored['discriminator']['kwargs']['img_size'] = 16
    stored['generator']['renderer']['kwargs']['view_dependence'] = False
    with pytest.raises(checkpoint.CheckpointError, match='retired option generator.renderer.kwargs.view_dependence'):
        checkpoint.check_same_model(stored, config, 'ckpt.pt')


def test_snapshots_log_their_latent_spread(tmp_path, capsys):
    log = ProgressLog(str(tmp_path), True, log_interval=1, images_per_step=2, start_step=0, total_steps=1)
    images = {'front': torch.zeros(4, 3, 8, 8), 'tilted': torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8),
                                                                       torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])}
    log.save_snapshots(250, images)
    log.close()
    line = [text for text in capsys.readouterr().out.splitlines() if text.startswith('snapshot')][0]
    assert 'front 0.0000' in line and f'tilted {math.sqrt(1 / 3):.4f}' in line
    assert 'hue spread front 0.000 | tilted 0.000' in line  # grey images: no hue at all
    assert 'hue over views 0.000' in line
    assert sorted(os.listdir(tmp_path / 'snapshots')) == ['0000250_front.png', '0000250_tilted.png']

    # Every latent red from the front and blue when tilted: no hue spread, but the colour follows the view.
    red, blue = torch.tensor([1.0, -1, -1]), torch.tensor([-1.0, -1, 1])
    log = ProgressLog(str(tmp_path), True, log_interval=1, images_per_step=2, start_step=0, total_steps=1)
    log.save_snapshots(500, {'front': red.view(1, 3, 1, 1).expand(4, 3, 8, 8),
                             'tilted': blue.view(1, 3, 1, 1).expand(4, 3, 8, 8)})
    log.close()
    line = [text for text in capsys.readouterr().out.splitlines() if text.startswith('snapshot')][0]
    assert 'hue spread front 0.000 | tilted 0.000' in line
    assert float(line.split('hue over views ')[1].split()[0]) > 0.3
