"""GramDiscriminator: released layout, reference outputs, shapes, CoordConv channel order."""
import math
import os

import pytest
import torch
from helpers import REFERENCE_DIR

from configs import get_config
from discriminators import GramDiscriminator, build_discriminator
from discriminators.discriminators import (
    CoordConv,
    add_coords,
    append_minibatch_std,
)


@pytest.fixture(scope='module')
def d32_ref():
    refs = torch.load(os.path.join(REFERENCE_DIR, 'small_refs.pt'), weights_only=True)
    return refs['D32']


def init_by_recipe(discriminator, seed):
    """Re-draw PyTorch's default conv init in state_dict order under one seed.

    weight -> kaiming_uniform_(a=sqrt(5)); bias -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the
    fan_in of the weight just before it (the reference's recipe).
    """
    torch.manual_seed(seed)
    fan_in = None
    with torch.no_grad():
        for name, tensor in discriminator.state_dict().items():  # entries share storage with params
            if name.endswith('weight'):
                torch.nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
                fan_in = tensor[0].numel()  # in_channels * kH * kW
            else:
                bound = 1 / math.sqrt(fan_in)
                tensor.uniform_(-bound, bound)


def test_released_key_list_and_shapes(d32_ref):
    state = GramDiscriminator(32).state_dict()
    assert list(state) == d32_ref['param_names']
    assert {k: list(v.shape) for k, v in state.items()} == d32_ref['param_shapes']


def test_reference_outputs_d32(d32_ref):
    discriminator = GramDiscriminator(32)
    init_by_recipe(discriminator, seed=5)
    with torch.no_grad():
        prediction, position = discriminator(d32_ref['input'])
    assert prediction.shape == (2, 1) and position.shape == (2, 2)
    torch.testing.assert_close(prediction, d32_ref['prediction'], atol=1e-5, rtol=0)
    torch.testing.assert_close(position, d32_ref['position'], atol=1e-5, rtol=0)


def test_construction_order_equals_recipe():
    # Default init drawn in construction order gives the same weights as the state_dict-order
    # recipe, as it does for the released module.
    torch.manual_seed(5)
    constructed = GramDiscriminator(16, max_channels=32)
    recipe = GramDiscriminator(16, max_channels=32)
    init_by_recipe(recipe, seed=5)
    for name, tensor in recipe.state_dict().items():
        assert torch.equal(constructed.state_dict()[name], tensor), name


def test_released_keys_at_64():
    names = list(GramDiscriminator(64).state_dict())
    # 64 px: levels 7..12 -> widths 128, 256, 400 (cap of 512), 400, 400, 400; the first two
    # blocks change width and so have a projection.
    expected = []
    for i, has_proj in enumerate([True, True, False, False, False]):
        expected += [f'layers.{i}.network.0.conv.weight', f'layers.{i}.network.0.conv.bias',
                     f'layers.{i}.network.2.conv.weight', f'layers.{i}.network.2.conv.bias']
        if has_proj:
            expected += [f'layers.{i}.proj.weight', f'layers.{i}.proj.bias']
    expected += ['fromRGB.model.0.weight', 'fromRGB.model.0.bias', 'final_layer.weight', 'final_layer.bias']
    assert names == expected


@pytest.mark.parametrize('img_size, num_blocks', [(16, 3), (32, 4), (64, 5), (128, 6), (256, 7), (512, 8)])
def test_block_counts(img_size, num_blocks):
    assert len(GramDiscriminator(img_size).layers) == num_blocks


@pytest.mark.parametrize('img_size, batch', [(32, 2), (64, 2), (128, 1), (256, 1)])
def test_output_shapes(img_size, batch):
    torch.manual_seed(0)
    discriminator = GramDiscriminator(img_size)
    with torch.no_grad():
        prediction, position = discriminator(torch.randn(batch, 3, img_size, img_size))
    assert prediction.shape == (batch, 1)
    assert position.shape == (batch, 2)
    assert torch.isfinite(prediction).all() and torch.isfinite(position).all()


def test_outputs_are_columns_of_final_conv():
    torch.manual_seed(1)
    discriminator = GramDiscriminator(16, max_channels=16)
    with torch.no_grad():
        discriminator.final_layer.bias.copy_(torch.tensor([10.0, 20.0, 30.0]))
        discriminator.final_layer.weight.zero_()
        prediction, position = discriminator(torch.randn(2, 3, 16, 16))
    assert torch.equal(prediction, torch.full((2, 1), 10.0))
    assert torch.equal(position, torch.tensor([[20.0, 30.0], [20.0, 30.0]]))


def test_add_coords_values():
    x = torch.zeros(1, 1, 3, 5)
    out = add_coords(x)
    assert out.shape == (1, 3, 3, 5)
    # channel 1 varies along height: rows -1, 0, 1; channel 2 along width: -1, -0.5, 0, 0.5, 1
    assert torch.equal(out[0, 1], torch.tensor([-1.0, 0.0, 1.0]).view(3, 1).expand(3, 5))
    assert torch.equal(out[0, 2], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]).view(1, 5).expand(3, 5))
    assert torch.equal(out[:, :1], x)


def test_coord_conv_channel_order():
    # A 1x1 CoordConv on 2 input channels: weight picks input ch 0 (x1), the height coordinate
    # (x10) and the width coordinate (x100).
    conv = CoordConv(2, 1, kernel_size=1)
    with torch.no_grad():
        conv.conv.weight.copy_(torch.tensor([1.0, 0.0, 10.0, 100.0]).view(1, 4, 1, 1))
        conv.conv.bias.zero_()
        x = torch.zeros(1, 2, 2, 3)
        x[0, 0] = 7.0
        out = conv(x)
    # height coord: top row -1, bottom row 1; width coord: -1, 0, 1
    expected = torch.tensor([[7 - 10 - 100, 7 - 10 + 0, 7 - 10 + 100],
                             [7 + 10 - 100, 7 + 10 + 0, 7 + 10 + 100]], dtype=torch.float32)
    assert torch.equal(out[0, 0], expected)


def test_coords_follow_input_dtype():
    out = add_coords(torch.zeros(1, 1, 4, 4, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert out[0, 1, -1, 0].item() == 1.0


def test_max_channels_cap():
    discriminator = GramDiscriminator(64, max_channels=128)
    state = discriminator.state_dict()
    # 64 px: widths min(128, 2^i) for i = 7..12 -> 128 everywhere; no projection convs.
    assert state['fromRGB.model.0.weight'].shape == (128, 3, 1, 1)
    assert state['layers.0.network.0.conv.weight'].shape == (128, 130, 3, 3)
    assert state['final_layer.weight'].shape == (3, 128, 2, 2)
    assert not any('proj' in name for name in state)
    slim = GramDiscriminator(32, max_channels=128)
    # 32 px: fromRGB has min(128, 2^8) = 128 channels
    assert slim.state_dict()['fromRGB.model.0.weight'].shape == (128, 3, 1, 1)
    with torch.no_grad():
        prediction, position = slim(torch.randn(2, 3, 32, 32))
    assert prediction.shape == (2, 1) and position.shape == (2, 2)


@pytest.mark.parametrize('img_size', [8, 48, 1024, 100])
def test_bad_img_size(img_size):
    with pytest.raises(ValueError, match='img_size'):
        GramDiscriminator(img_size)


def test_wrong_input_size():
    with pytest.raises(ValueError, match='32px'):
        GramDiscriminator(32, max_channels=8)(torch.zeros(1, 3, 16, 16))


def test_build_from_config():
    config = get_config('TINY_test')
    discriminator = build_discriminator(config)
    assert isinstance(discriminator, GramDiscriminator)
    assert discriminator.img_size == 16 and discriminator.max_channels == 32
    assert config == get_config('TINY_test')  # config untouched
    with pytest.raises(KeyError, match='unknown discriminator'):
        build_discriminator({'discriminator': {'class': 'Nope', 'kwargs': {}}})


def test_backward_reaches_input():
    discriminator = GramDiscriminator(16, max_channels=16)
    img = torch.randn(2, 3, 16, 16, requires_grad=True)
    prediction, position = discriminator(img)
    (prediction.sum() + position.sum()).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_runs_under_autocast():
    discriminator = GramDiscriminator(16, max_channels=16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        prediction, position = discriminator(torch.randn(2, 3, 16, 16))
    assert prediction.dtype == torch.bfloat16 and position.shape == (2, 2)


def test_minibatch_std_by_hand():
    # Two groups of two images, 2 channels, 1x1 pixels.
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 2.0], [5.0, 4.0]]).view(4, 2, 1, 1)
    out = append_minibatch_std(x, 2)
    assert out.shape == (4, 3, 1, 1)
    assert torch.equal(out[:, :2], x)
    # group 0: stds (1, 0) -> mean 0.5; group 1: stds (0, 1) -> mean 0.5 (plus the 1e-8 epsilon)
    expected = torch.tensor([math.sqrt(1 + 1e-8) / 2 + 1e-4 / 2] * 4)
    assert torch.allclose(out[:, 2, 0, 0], expected, atol=1e-6)
    same = append_minibatch_std(torch.ones(4, 2, 1, 1), 4)
    assert same[:, 2].max().item() < 1e-3  # identical images: no spread
    with pytest.raises(ValueError, match='multiple of the group size'):
        append_minibatch_std(torch.zeros(6, 2, 1, 1), 4)


def test_minibatch_std_option():
    released = GramDiscriminator(32, max_channels=16)
    assert released.state_dict()['final_layer.weight'].shape == (3, 16, 2, 2)
    torch.manual_seed(0)
    with_std = GramDiscriminator(32, max_channels=16, minibatch_std_group=2)
    assert with_std.state_dict()['final_layer.weight'].shape == (3, 17, 2, 2)
    imgs = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        prediction, _ = with_std(imgs)
        # The realism of image 0 depends on its group partner (image 1), not on the other group.
        changed_partner = with_std(torch.cat([imgs[:1], imgs[1:2] * 3, imgs[2:]]))[0]
        changed_other = with_std(torch.cat([imgs[:2], imgs[2:3] * 3, imgs[3:]]))[0]
    assert (changed_partner[0] - prediction[0]).abs().item() > 1e-6
    assert torch.equal(changed_other[0], prediction[0])
    with pytest.raises(ValueError, match='minibatch_std_group'):
        GramDiscriminator(32, minibatch_std_group=-1)
