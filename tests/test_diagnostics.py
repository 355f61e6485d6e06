"""Training diagnostics: latent spread, hue spread, hue over objects vs views, and the mean hue they rest on."""
import math

import pytest
import torch

from metrics.diagnostics import hue_over_objects_and_views, hue_spread, latent_spread, mean_hue


def test_mean_hue():
    img = torch.ones(4, 3, 8, 8)                                   # white
    img[1, :, :2, :2] = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1)   # small red patch
    img[2, :, :, :] = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1)     # all red
    img[3, :, :4] = torch.tensor([0.5, -1.0, 0.5]).view(3, 1, 1)        # half magenta
    hue = mean_hue(img)
    assert hue[0].abs().max().item() < 1e-3                         # colourless
    red = torch.tensor([2.0, -1.0, -1.0]) / math.sqrt(6)            # unit chroma direction of red
    assert torch.allclose(hue[1], red, atol=1e-3) and torch.allclose(hue[2], red, atol=1e-3)  # coverage-free
    assert torch.allclose(hue[3].norm(), torch.tensor(1.0), atol=1e-3)


def test_latent_spread_is_pixel_std_over_latents():
    same = torch.full((4, 3, 2, 2), 0.3)
    assert latent_spread(same) == 0.0
    # Two latents differing by 2 at every value: std over K=2 (unbiased) = 2 / sqrt(2).
    pair = torch.stack([torch.zeros(3, 2, 2), torch.full((3, 2, 2), 2.0)])
    assert abs(latent_spread(pair) - math.sqrt(2)) < 1e-6


def test_hue_spread_sees_colour_not_size():
    red, blue = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1), torch.tensor([-1.0, -1.0, 1.0]).view(3, 1, 1)
    small_and_large_red = torch.ones(2, 3, 8, 8)
    small_and_large_red[0, :, :2, :2], small_and_large_red[1] = red, red
    assert hue_spread(small_and_large_red) < 1e-3       # the pixels differ a lot, the colour does not
    assert latent_spread(small_and_large_red) > 0.5
    red_and_blue = torch.ones(2, 3, 8, 8)
    red_and_blue[0, :, :2, :2], red_and_blue[1, :, :2, :2] = red, blue
    assert hue_spread(red_and_blue) > 0.5


def test_hue_over_objects_and_views_tells_paint_from_camera():
    paints = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0], [1.0, 1.0, 0.1]])  # 4 colours
    canvas = torch.ones(4, 4, 3, 8, 8)  # [K objects, V views, 3, H, W], white
    by_object, by_view = canvas.clone(), canvas.clone()
    for k in range(4):
        for v in range(4):
            by_object[k, v, :, 2:6, 2:6] = paints[k, :, None, None]
            by_view[k, v, :, 2:6, 2:6] = paints[v, :, None, None]
    over_objects, over_views = hue_over_objects_and_views(by_object)
    assert over_views < 1e-6 and over_objects > 0.3
    assert hue_over_objects_and_views(by_view) == pytest.approx((over_views, over_objects))
