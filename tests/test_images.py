"""utils/images.py: the released PNG encodings (truncate for renders, round for FID images)."""
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from utils.images import save_png, to_uint8


def _single_pixel_image(value):
    """[3, 1, 1] image with every channel set to `value`."""
    return torch.full((3, 1, 1), float(value))


@pytest.mark.parametrize('value, truncated, rounded', [
    (-1.0, 0, 0),          # x = 0
    (1.0, 255, 255),       # x = 1
    (0.0, 127, 128),       # x = 0.5 -> 127.5
    (-0.5, 63, 64),        # x = 0.25 -> 63.75
    (0.5, 191, 191),       # x = 0.75 -> 191.25
    (1.002, 255, 255),     # the widened sigmoid overshoots; clipped
    (-1.5, 0, 0),          # clipped at 0
    (float('nan'), 0, 0),  # NaN -> 0
])
def test_hand_computed_levels(value, truncated, rounded):
    img = _single_pixel_image(value)
    assert to_uint8(img, rounding='truncate')[0, 0].tolist() == [truncated] * 3
    assert to_uint8(img, rounding='round')[0, 0].tolist() == [rounded] * 3


def test_layout_is_channels_last_and_keeps_channel_order():
    img = torch.zeros(2, 3, 4, 5)
    img[:, 0] = 1.0   # red full
    img[:, 1] = -1.0  # green off
    img[1, 2] = 1.0   # blue only in the second image
    pixels = to_uint8(img)
    assert pixels.shape == (2, 4, 5, 3) and pixels.dtype == np.uint8
    assert pixels[0, 2, 3].tolist() == [255, 0, 127]
    assert pixels[1, 2, 3].tolist() == [255, 0, 255]
    assert to_uint8(img[0]).shape == (4, 5, 3)


def test_round_matches_torchvision_save_image(tmp_path):
    """The released FID images were written by torchvision's save_image(normalize, range (-1, 1))."""
    generator = torch.Generator().manual_seed(0)
    img = torch.rand(3, 16, 16, generator=generator) * 2.2 - 1.1
    path = str(tmp_path / 'tv.png')
    torchvision.utils.save_image(img, path, normalize=True, value_range=(-1, 1))
    expected = np.array(Image.open(path))
    np.testing.assert_array_equal(to_uint8(img, rounding='round'), expected)
    # Truncation differs from rounding on about half of the pixels.
    differ = (to_uint8(img, rounding='truncate') != expected).mean()
    assert 0.3 < differ < 0.7


def test_save_png_round_trip_and_no_leftovers(tmp_path):
    img = torch.linspace(-1, 1, 3 * 8 * 8).reshape(3, 8, 8)
    path = tmp_path / 'out.png'
    save_png(img, path, rounding='round')
    np.testing.assert_array_equal(np.array(Image.open(path)), to_uint8(img, rounding='round'))
    assert os.listdir(tmp_path) == ['out.png']


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match='rounding'):
        to_uint8(torch.zeros(3, 2, 2), rounding='nearest')
    with pytest.raises(ValueError, match='shape'):
        to_uint8(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match='batch'):
        save_png(torch.zeros(2, 3, 2, 2), tmp_path / 'x.png')
