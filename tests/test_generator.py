"""Generator tests: cameras, intersections, compositing, the whole renderer vs released outputs."""
import math
import os

import pytest
import torch
from helpers import REFERENCE_DIR

import configs
from generators import build_generator, cameras, compositing, intersections
from generators.generators import patch_pixel_range

CATS_REF = os.path.join(REFERENCE_DIR, 'cats_generator_ref.pt')

RELEASED_KEYS = (
    [f'representation.sample_network.network.{i}.{p}' for i in (0, 2, 4) for p in ('weight', 'bias')]
    + [f'representation.sample_network.output_layer.{p}' for p in ('weight', 'bias')]
    + [f'representation.rf_network.network.{i}.layer.{p}' for i in range(8) for p in ('weight', 'bias')]
    + [f'representation.rf_network.color_layer.0.layer.{p}' for p in ('weight', 'bias')]
    + [f'representation.rf_network.output_sigma.{i}.{p}' for i in range(7) for p in ('weight', 'bias')]
    + [f'representation.rf_network.output_color.{i}.{p}' for i in range(7) for p in ('weight', 'bias')]
    + [f'representation.rf_network.mapping_network.network.{i}.{p}' for i in (0, 2, 4, 6) for p in ('weight', 'bias')]
)


def tiny_generator(seed=0, **renderer_overrides):
    config = configs.get_config('TINY_test')
    config['generator']['renderer']['kwargs'].update(renderer_overrides)
    torch.manual_seed(seed)
    return build_generator(config), config


# ----------------------------------------------------------------------------------- cameras
def test_frontal_camera_and_orthonormal_frame():
    origin = cameras.camera_origin_from_pos(torch.tensor([[math.pi / 2, math.pi / 2]]))
    assert torch.allclose(origin, torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-7)
    cam2world = cameras.look_at_cam2world(origin)[0]
    rotation = cam2world[:3, :3]
    assert torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-6)
    # frontal camera: camera axes coincide with world axes, translated to (0, 0, 1)
    assert torch.allclose(cam2world, torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]]), atol=1e-6)
    # a tilted camera still looks at the origin: -z axis of the camera = -origin
    tilted = torch.tensor([[-math.sin(0.5), 0.3, math.cos(0.5)]])
    frame = cameras.look_at_cam2world(tilted)[0]
    assert torch.allclose(-frame[:3, 2], -tilted[0] / tilted.norm(), atol=1e-6)
    assert torch.allclose(frame[:3, :3] @ frame[:3, :3].T, torch.eye(3), atol=1e-6)


def test_camera_pos_round_trip():
    pos = torch.tensor([[1.2, 0.3], [0.4, 2.5]])
    assert torch.allclose(cameras.camera_pos_from_origin(cameras.camera_origin_from_pos(pos)), pos, atol=1e-6)


def test_pixel_grid_orientation():
    # 3x3 image, fov 90: image-plane z = -1; top-left pixel is (-1, +1), bottom-right (1, -1)
    dirs = cameras.camera_ray_directions(3, 90, 0, 9, 'cpu')
    expected_top_left = torch.tensor([-1.0, 1.0, -1.0]) / math.sqrt(3)
    assert torch.allclose(dirs[0], expected_top_left, atol=1e-6)
    assert torch.allclose(dirs[2], torch.tensor([1.0, 1.0, -1.0]) / math.sqrt(3), atol=1e-6)   # top-right
    assert torch.allclose(dirs[4], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)                  # centre
    assert torch.allclose(dirs[8], torch.tensor([1.0, -1.0, -1.0]) / math.sqrt(3), atol=1e-6)  # bottom-right
    # a sub-range gives the same rays as the full grid
    assert torch.equal(cameras.camera_ray_directions(3, 90, 3, 6, 'cpu'), dirs[3:6])


def test_pose_sampler_draw_order_and_fixed_mode():
    torch.manual_seed(3)
    _, pos = cameras.sample_camera_positions(4, 'gaussian', 0.3, 0.155, 1.0, 1.5, 'cpu')
    torch.manual_seed(3)
    theta = torch.randn(4, 1) * 0.3 + 1.0   # theta first
    phi = torch.randn(4, 1) * 0.155 + 1.5   # then phi
    assert torch.allclose(pos, torch.cat([phi, theta], -1))
    _, fixed = cameras.sample_camera_positions(2, 'fixed', 0.3, 0.1, 0.7, 1.1, 'cpu')
    assert torch.allclose(fixed, torch.tensor([[1.1, 0.7], [1.1, 0.7]]))
    torch.manual_seed(0)
    _, spherical = cameras.sample_camera_positions(1000, 'spherical_uniform', math.pi, 0.5, 0.0, 0.7, 'cpu')
    assert spherical[:, 0].min() >= 1e-5 and spherical[:, 0].max() <= math.pi - 1e-5


# ----------------------------------------------------------------------------------- intersections
def plane_predictor(points):
    """s(p) = 10 * z: level l is the plane z = l / 10; s decreases along rays going down -z."""
    return points[..., 2:3] * 10


def test_plane_level_sets_give_exact_intersections():
    # one ray from (0, 0, 1) straight down -z, samples z = 1.0, 0.9, ..., 0.0
    depths = torch.linspace(0, 1, 11)
    points = torch.stack([torch.zeros(11), torch.zeros(11), 1 - depths], -1).reshape(1, 1, 11, 3)
    levels = torch.tensor([7.5, 3.0, 20.0])  # 7.5 inside an interval, 3.0 on a sample, 20 missed
    hits, validity, s = intersections.intersect_manifolds(plane_predictor, points, levels)
    assert torch.allclose(hits[0, 0, 0], torch.tensor([0.0, 0.0, 0.75]), atol=1e-6)
    assert torch.allclose(hits[0, 0, 1], torch.tensor([0.0, 0.0, 0.3]), atol=1e-6)
    # no crossing: last interval's far sample point, invalid
    assert torch.allclose(hits[0, 0, 2], torch.tensor([0.0, 0.0, 0.0]))
    assert validity.flatten().tolist() == [1.0, 1.0, 0.0]


def test_first_crossing_is_chosen_and_small_gaps_snap_to_sample():
    # s along a ray: 5, 3, 5, 3  -> level 4 is crossed (downward) in intervals 0 and 2
    s = torch.tensor([[[5.0, 3.0, 5.0, 3.0]]])
    low, crossing = intersections.select_intervals(s, torch.tensor([4.0, 3.0, 6.0]))
    assert low.flatten().tolist() == [0, 0, 2]  # level 3: interval 0 (bound included); 6: fallback S-2
    assert crossing.flatten().tolist() == [True, True, False]
    # |s_h - s_l| <= 0.05 -> x_h even though it crosses
    x_low, x_high = torch.zeros(1, 1, 1, 3), torch.ones(1, 1, 1, 3)
    point = intersections.interpolate(x_low, x_high, torch.tensor([[[1.02]]]), torch.tensor([[[0.99]]]),
                                      torch.tensor([1.0]), torch.tensor([[[True]]]))
    assert torch.equal(point, x_high)


def test_background_plane_point():
    origin = torch.tensor([[0.0, 0.0, 1.0]])
    direction = torch.tensor([[[0.6, 0.0, -0.8]]])
    point = intersections.background_points(origin, direction)
    t = (1 + 0.12) / 0.8
    assert torch.allclose(point, torch.tensor([[[0.6 * t, 0.0, -0.12]]]), atol=1e-6)


# ----------------------------------------------------------------------------------- compositing
def test_compositing_weights_by_hand():
    # alphas (0.5, 0.5, 1): sigma = ln 2 / delta gives alpha 0.5; T = (1, 0.5, 0.25)
    delta = 0.04
    sigma = math.log(2) / delta
    rgb_sigma = torch.tensor([[[[1.0, 0, 0, sigma], [0, 1.0, 0, sigma], [0, 0, 1.0, 5.0]]]])
    z = torch.tensor([[[[1.0], [2.0], [3.0]]]])
    valid = torch.ones(1, 1, 3, 1)
    colour, depth, weights = compositing.composite(rgb_sigma, z, valid, torch.tensor([[[[2]]]]), delta,
                                                   background=True)
    assert torch.allclose(weights.flatten(), torch.tensor([0.5, 0.25, 0.25]), atol=1e-6)
    assert torch.allclose(colour.flatten(), torch.tensor([0.5, 0.25, 0.25]), atol=1e-6)
    assert torch.allclose(depth.flatten(), torch.tensor([0.5 * 1 + 0.25 * 2 + 0.25 * 3]), atol=1e-5)


def test_invalid_slots_and_white_background():
    delta = 0.04
    sigma = math.log(2) / delta
    rgb_sigma = torch.tensor([[[[1.0, 1.0, 1.0, 1e6], [0, 0, 0, sigma]]]])
    z = torch.tensor([[[[1.0], [2.0]]]])
    valid = torch.tensor([[[[0.0], [1.0]]]])  # the opaque first slot is invalid: alpha 0
    colour, _, weights = compositing.composite(rgb_sigma, z, valid, torch.tensor([[[[1]]]]), delta,
                                               background=False, white_back=True)
    assert torch.allclose(weights.flatten(), torch.tensor([0.0, 0.5]), atol=1e-6)
    assert torch.allclose(colour.flatten(), torch.full((3,), 0.5), atol=1e-6)  # black 0.5 + white 0.5


def test_last_back_gives_leftover_weight_to_last_slot():
    rgb_sigma = torch.tensor([[[[1.0, 1.0, 1.0, 0.0], [0.2, 0.2, 0.2, 0.0]]]])
    z = torch.tensor([[[[1.0], [2.0]]]])
    colour, _, weights = compositing.composite(rgb_sigma, z, torch.ones(1, 1, 2, 1), torch.tensor([[[[1]]]]),
                                               0.04, background=False, last_back=True)
    assert torch.allclose(weights.flatten(), torch.tensor([0.0, 1.0]))
    assert torch.allclose(colour.flatten(), torch.full((3,), 0.2))


# ----------------------------------------------------------------------------------- whole generator
def test_state_dict_keys_match_released_layout():
    generator = build_generator(configs.get_config('CATS_default'))
    assert sorted(generator.state_dict()) == sorted(RELEASED_KEYS)


@pytest.fixture(scope='module')
def cats_reference():
    reference = torch.load(CATS_REF, weights_only=True)
    generator = build_generator(configs.get_config('CATS_default'))
    generator.load_state_dict(reference['state_dict'], strict=True)
    return generator.eval(), reference


def test_matches_released_cats_outputs(cats_reference):
    generator, ref = cats_reference
    args = (ref['z'], ref['fov'], ref['ray_start'], ref['ray_end'])
    with torch.no_grad():
        img, _, detail = generator.experiment(*args, img_size=32, camera_origin=ref['camera_origin'].tolist())
        patches = [generator(*args, img_size=32, camera_origin=ref['camera_origin'].tolist(), patch=(k, 2))[0]
                   for k in range(2)]
        img_pos, _ = generator(ref['z'][:1], *args[1:], img_size=32, camera_pos=ref['camera_pos_sample0'])
    assert (img - ref['img_origin']).abs().max() < 1e-5
    assert (detail['depth'] - ref['exp_depth']).abs().max() < 1e-5
    assert (detail['z_vals'] - ref['exp_z_vals']).abs().max() < 1e-5
    # weights: tied depths may come in any order, so compare per-ray sums and sorted values
    assert (detail['weights'].sum(-2) - ref['exp_weights'].sum(-2)).abs().max() < 1e-5
    assert (detail['weights'].sort(-2).values - ref['exp_weights'].sort(-2).values).abs().max() < 1e-5
    assert (torch.cat(patches, -1).reshape(2, 3, 32, 32) - ref['patch2_origin']).abs().max() < 1e-5
    assert (img_pos - ref['img_pos_sample0']).abs().max() < 1e-5


def test_matches_released_per_ray_internals(cats_reference):
    generator, ref = cats_reference
    predictor = generator.representation.sample_network
    assert torch.allclose(predictor(ref['sub_sample_points']), ref['sub_sample_s'], atol=1e-5)
    levels = intersections.levels_for(23, 8, 23, 'cpu')
    assert torch.allclose(levels, ref['levels'])
    with torch.no_grad():
        hits, validity, _ = intersections.intersect_manifolds(predictor, ref['sub_sample_points'], levels)
    assert torch.equal(validity, ref['sub_is_valid'].to(validity.dtype))
    assert (hits - ref['sub_intersections']).abs().max() < 1e-5
    # our rays for those pixels: same origins, directions and sample points
    cam2world = cameras.look_at_cam2world(ref['camera_origin'].float().reshape(1, 3))
    all_dirs = cameras.camera_ray_directions(32, ref['fov'], 0, 32 * 32, 'cpu')
    origin, dirs = cameras.world_rays(cam2world, all_dirs[ref['sub_pixel_flat_index']])
    assert torch.allclose(dirs[0], ref['sub_ray_dirs'][0].float(), atol=1e-6)
    assert torch.allclose(origin[0], ref['sub_ray_origins'][0, 0].float(), atol=1e-6)


def test_patches_concatenate_to_the_full_image():
    generator, config = tiny_generator()
    z = torch.randn(2, generator.z_dim)
    camera = config['camera']
    with torch.no_grad():
        full, pos = generator(z, **camera, camera_pos=torch.tensor([[1.0, 1.4], [0.9, 1.7]]))
        parts = [generator(z, **camera, camera_pos=pos, patch=(k, 4))[0] for k in range(4)]
    assert parts[0].shape == (2, 3, 16 * 16 // 4)
    assert torch.allclose(torch.cat(parts, -1).reshape(full.shape), full, atol=1e-6)
    assert patch_pixel_range(16, (3, 4)) == (192, 256)


def test_ray_chunking_does_not_change_the_image():
    generator, config = tiny_generator()
    z = torch.randn(1, generator.z_dim)
    with torch.no_grad():
        whole, pos = generator(z, **config['camera'])
        chunked, _ = generator(z, **config['camera'], camera_pos=pos, chunk_rays=7)
    assert torch.allclose(whole, chunked, atol=1e-6)


def dense_reference_render(generator, z, camera, camera_pos):
    """The released algorithm without shortcuts: dense s with autograd, every slot evaluated."""
    renderer = generator.renderer
    size = generator.img_size
    origins = cameras.camera_origin_from_pos(camera_pos)
    cam2world = cameras.look_at_cam2world(origins)
    dirs_cam = cameras.camera_ray_directions(size, camera['fov'], 0, size * size, 'cpu')
    origin, dirs = cameras.world_rays(cam2world, dirs_cam)
    depths = cameras.sample_depths(camera['ray_start'], camera['ray_end'], renderer.num_samples, 'cpu')
    points = origin[:, None, None] + dirs.unsqueeze(2) * depths[:, None]
    levels = intersections.levels_for(renderer.levels_start, renderer.levels_end, renderer.num_levels, 'cpu')
    s = generator.representation.sample_network(points).squeeze(-1)  # with autograd everywhere
    low, crossing = intersections.select_intervals(s.detach(), levels)
    index = low.unsqueeze(-1).expand(-1, -1, -1, 3)
    hits = intersections.interpolate(torch.gather(points, 2, index), torch.gather(points, 2, index + 1),
                                     torch.gather(s, 2, low), torch.gather(s, 2, low + 1), levels, crossing)
    validity = crossing.unsqueeze(-1).float()
    if renderer.background:
        hits = torch.cat([hits, intersections.background_points(origin, dirs).unsqueeze(2)], dim=2)
        validity = torch.cat([validity, torch.ones_like(validity[:, :, :1])], dim=2)
    B, R, L, _ = hits.shape
    frequencies, phase_shifts = generator.film_parameters(z)
    outputs = generator.representation.rf_network.forward_with_frequencies_phase_shifts(
        hits.reshape(B, -1, 3), frequencies, phase_shifts,
        dirs.unsqueeze(2).expand(-1, -1, L, -1).reshape(B, -1, 3)).reshape(B, R, L, 4)
    z_vals = torch.linalg.vector_norm(hits - origin[:, None, None], dim=-1, keepdim=True)
    z_vals, outputs, validity, order = compositing.sort_by_depth(z_vals, outputs, validity)
    colour, _, _ = compositing.composite(outputs, z_vals, validity, torch.argmax(order, -2, keepdim=True),
                                         renderer.delta_alpha, renderer.background, renderer.white_back)
    return colour.permute(0, 2, 1).reshape(B, 3, size, size) * 2 - 1


@pytest.mark.parametrize('background', [False, True])
def test_skipping_invalid_slots_matches_dense_evaluation(background):
    generator, config = tiny_generator(seed=1, background=background, white_back=not background)
    z = torch.randn(2, generator.z_dim)
    camera_pos = torch.tensor([[1.0, 1.4], [0.8, 1.9]])
    ours, _ = generator(z, **config['camera'], camera_pos=camera_pos)
    ours_grads = torch.autograd.grad(ours.square().sum(), list(generator.parameters()), allow_unused=True)
    dense = dense_reference_render(generator, z, config['camera'], camera_pos)
    dense_grads = torch.autograd.grad(dense.square().sum(), list(generator.parameters()), allow_unused=True)
    assert torch.allclose(ours, dense, atol=1e-5)
    for (name, _), ours_grad, dense_grad in zip(generator.named_parameters(), ours_grads, dense_grads):
        ours_grad = torch.zeros(1) if ours_grad is None else ours_grad
        dense_grad = torch.zeros(1) if dense_grad is None else dense_grad
        scale = dense_grad.abs().max().clamp_min(1e-6)
        assert ((ours_grad - dense_grad).abs().max() / scale) < 1e-4, name


def test_batch_with_unequal_valid_counts_matches_single_renders():
    """Samples whose valid-slot counts differ render as they do alone; invalid slots stay zero."""
    generator, config = tiny_generator(seed=1, background=False, white_back=True)
    z = torch.randn(2, generator.z_dim)
    camera_pos = torch.tensor([[1.0, 1.4], [0.3, 1.9]])
    with torch.no_grad():
        img, _, detail = generator.experiment(z, **config['camera'], camera_pos=camera_pos)
        singles = [generator.experiment(z[b:b + 1], **config['camera'], camera_pos=camera_pos[b:b + 1])
                   for b in range(2)]
    counts = detail['validity'].sum(dim=(1, 2, 3))
    assert counts[0] != counts[1]
    for b, (single_img, _, single_detail) in enumerate(singles):
        assert torch.allclose(img[b], single_img[0], atol=1e-6)
        invalid_outputs = detail['outputs'][b][detail['validity'][b].squeeze(-1) == 0]
        assert torch.equal(invalid_outputs, torch.zeros_like(invalid_outputs))
        assert torch.allclose(detail['outputs'][b], single_detail['outputs'][0], atol=1e-6)


def test_chunks_without_any_valid_slot_render_and_backpropagate():
    """Corner rays miss every manifold: one-ray chunks there have no valid slot in the whole batch."""
    generator, config = tiny_generator(seed=1, background=False, white_back=True)
    z = torch.randn(2, generator.z_dim)
    camera_pos = torch.tensor([[1.0, 1.4], [0.8, 1.9]])
    with torch.no_grad():
        _, _, detail = generator.experiment(z, **config['camera'], camera_pos=camera_pos)
    assert (detail['validity'].sum(dim=(0, 3, 4)) == 0).any(), 'the setting should have rays without hits'
    whole, _ = generator(z, **config['camera'], camera_pos=camera_pos)
    chunked, _ = generator(z, **config['camera'], camera_pos=camera_pos, chunk_rays=1)
    assert torch.allclose(chunked, whole, atol=1e-6)
    gradients = torch.autograd.grad(chunked.square().sum(), list(generator.parameters()), allow_unused=True)
    assert all(torch.isfinite(g).all() for g in gradients if g is not None)


def test_some_slots_are_skipped_in_the_tiny_setting():
    generator, config = tiny_generator(seed=1)
    with torch.no_grad():
        _, _, detail = generator.experiment(torch.randn(1, generator.z_dim), **config['camera'])
    fraction_valid = detail['validity'].mean().item()
    assert 0.0 < fraction_valid < 1.0


def test_truncation_psi_one_is_identity_and_psi_zero_is_the_average():
    generator, config = tiny_generator()
    z = torch.randn(2, generator.z_dim)
    raw = generator.representation.rf_network.mapping_network(z)
    same = generator.film_parameters(z, truncation_psi=1)
    assert all(torch.equal(a, b) for a, b in zip(raw, same))
    frequencies, _ = generator.film_parameters(z, truncation_psi=0)
    assert torch.allclose(frequencies, generator.avg_frequencies.expand_as(frequencies))
    # the average is reproducible and refreshed after new weights are loaded
    first = generator.avg_frequencies.clone()
    generator.get_avg_w()
    assert torch.equal(first, generator.avg_frequencies)
    state = {k: v + 0.01 for k, v in generator.state_dict().items()}
    generator.load_state_dict(state)
    assert not bool(generator.avg_ready)
    generator.film_parameters(z, truncation_psi=0.5)
    assert not torch.equal(first, generator.avg_frequencies)


def test_lock_view_dependence_uses_a_fixed_direction():
    generator, config = tiny_generator()
    z = torch.randn(1, generator.z_dim)
    with torch.no_grad():
        a, _ = generator(z, **config['camera'], camera_pos=torch.tensor([[1.2, 1.0]]), lock_view_dependence=True)
        b, _ = generator(z, **config['camera'], camera_pos=torch.tensor([[1.2, 1.0]]), lock_view_dependence=False)
    assert not torch.allclose(a, b)


def test_renderer_attribute_locks_view_dependence_as_released():
    # The released render script sets generator.renderer.lock_view_dependence = True; it must
    # give exactly the render of the lock_view_dependence=True argument, for every later call.
    generator, config = tiny_generator()
    z = torch.randn(2, generator.z_dim)
    pos = torch.tensor([[1.2, 1.0], [0.9, 2.1]])
    with torch.no_grad():
        locked_by_argument, _ = generator(z, **config['camera'], camera_pos=pos, lock_view_dependence=True)
        free, _ = generator(z, **config['camera'], camera_pos=pos)
        generator.renderer.lock_view_dependence = True
        locked_by_attribute, _ = generator(z, **config['camera'], camera_pos=pos)
    assert torch.equal(locked_by_attribute, locked_by_argument)
    assert not torch.allclose(free, locked_by_argument)


def test_batch_of_camera_positions_and_camera_origin_list():
    generator, config = tiny_generator()
    z = torch.randn(2, generator.z_dim)
    pos = torch.tensor([[1.0, 1.2], [1.3, 2.0]])
    with torch.no_grad():
        both, returned = generator(z, **config['camera'], camera_pos=pos)
        second, _ = generator(z[1:], **config['camera'], camera_pos=pos[1:])
        from_origin, origin_pos = generator(z[1:], **config['camera'],
                                            camera_origin=cameras.camera_origin_from_pos(pos[1:])[0].tolist())
    assert torch.equal(returned, pos)
    assert torch.allclose(both[1:], second, atol=1e-6)
    assert torch.allclose(from_origin, second, atol=1e-5)
    assert torch.allclose(origin_pos, pos[1:], atol=1e-5)


def test_runs_under_autocast():
    generator, config = tiny_generator()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        img, _ = generator(torch.randn(1, generator.z_dim), **config['camera'])
    assert img.shape == (1, 3, 16, 16) and torch.isfinite(img).all()


def test_configs_round_trip_and_unknown_names_fail():
    config = configs.get_config('CARLA_default')
    config['global']['img_size'] = 3
    assert configs.get_config('CARLA_default')['global']['img_size'] == 128  # copies, not views
    assert configs.CARLA_default['generator']['renderer']['kwargs']['num_manifolds'] == 48
    with pytest.raises(KeyError, match='valid names: FFHQ_default, CATS_default, CARLA_default'):
        configs.get_config('FFHQ')
    updated = configs.apply_overrides(configs.get_config('FFHQ_default'), ['global.batch_size=2', 'optimizer.gen_lr=1'])
    assert updated['global']['batch_size'] == 2 and updated['optimizer']['gen_lr'] == 1.0
    with pytest.raises(KeyError, match='unknown config key'):
        configs.apply_overrides(configs.get_config('FFHQ_default'), ['global.batchsize=2'])
    with pytest.raises(TypeError, match='expects int'):
        configs.apply_overrides(configs.get_config('FFHQ_default'), ['global.batch_size=two'])
    # Optional keys absent from a config can be added, typed like their OPTIONAL_KEYS entry.
    added = configs.apply_overrides(configs.get_config('FFHQ_default'),
                                    ['optimizer.mapping_network_lr=1e-6', 'discriminator.kwargs.minibatch_std_group=4'])
    assert added['optimizer']['mapping_network_lr'] == 1e-6
    assert added['discriminator']['kwargs']['minibatch_std_group'] == 4
    with pytest.raises(TypeError, match='expects int'):
        configs.apply_overrides(configs.get_config('FFHQ_default'), ['discriminator.kwargs.minibatch_std_group=0.5'])
