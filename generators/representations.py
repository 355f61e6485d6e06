"""The two networks of GRAM's representation (docs/design.md §2–3).

- ``ManifoldPredictor`` (released name: ``sample_network``): a small ReLU MLP mapping a world point
  to a scalar s; the radiance manifolds are level sets of s.
- ``RadianceNetwork`` (released name: ``rf_network``): a SIREN with FiLM conditioning on z, giving
  (r, g, b, sigma) at a point seen from a ray direction.
``Gram`` holds both, with the module names of the released state_dict.

FiLM layers fold the per-sample frequency and phase into per-sample weights and biases:
sin(f * (W x + b) + phase) = sin((f W) x + (f b + phase)), one batched matmul per layer.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

PREDICTOR_SCALE = 2 / 0.24    # predictor input scale: points in the 0.24 box map to [-2, 2]
FREQUENCY_SCALE = 15.0        # FiLM frequencies = mapping output * 15 + 30
FREQUENCY_OFFSET = 30.0
WIDEN_SIGMOID_EPS = 1e-3      # rgb = sigmoid * (1 + 2 eps) - eps, slightly past [0, 1]
SIREN_INIT_DIVISOR = 25.0     # SIREN hidden init: U(+-sqrt(6 / fan_in) / 25)
NUM_FILM_LAYERS = 8           # FiLM layers of the density trunk
NUM_FILM_SLICES = NUM_FILM_LAYERS + 1  # + the colour layer: the mapping network outputs 9 slices


class ManifoldPredictor(nn.Module):
    """Scalar field s(p) whose level sets are the radiance manifolds.

    Args:
        hidden_dim: width Hs. layer_num: number of hidden Linear+ReLU layers.
        center: offset subtracted after scaling. init_radius: output bias is -init_radius.
    """

    def __init__(self, hidden_dim=64, layer_num=3, center=(0, 0, 0), init_radius=0):
        super().__init__()
        layers = [nn.Linear(3, hidden_dim), nn.ReLU(inplace=True)]
        for _ in range(layer_num - 1):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True)]
        self.network = nn.Sequential(*layers)
        self.output_layer = nn.Linear(hidden_dim, 1)
        self.register_buffer('center', torch.tensor(center, dtype=torch.float32), persistent=False)
        self._init_weights(init_radius)

    def _init_weights(self, init_radius):
        with torch.no_grad():
            for module in self.network:
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, math.sqrt(2 / module.out_features))
                    module.bias.zero_()
            in_features = self.output_layer.in_features
            self.output_layer.weight.fill_(10 * math.sqrt(math.pi / in_features))
            self.output_layer.bias.fill_(-init_radius)

    def forward(self, points):
        """points [..., 3] (world) -> s [..., 1]."""
        x = (points * PREDICTOR_SCALE - self.center).reshape(-1, 3)  # [M, 3]
        for module in self.network:
            x = linear(x, module.weight, module.bias) if isinstance(module, nn.Linear) else x.relu_()
        return linear(x, self.output_layer.weight, self.output_layer.bias).reshape(*points.shape[:-1], 1)


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> (frequencies, phase_shifts), each [B, 9 H] (before the *15 + 30)."""

    def __init__(self, z_dim, map_hidden_dim, map_output_dim):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(z_dim, map_hidden_dim), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(map_hidden_dim, map_hidden_dim), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(map_hidden_dim, map_hidden_dim), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(map_hidden_dim, map_output_dim),
        )
        with torch.no_grad():
            for module in self.network:
                if isinstance(module, nn.Linear):
                    nn.init.kaiming_normal_(module.weight, a=0.2, mode='fan_in', nonlinearity='leaky_relu')
            self.network[-1].weight.mul_(0.25)

    def forward(self, z):
        out = self.network(z)
        half = out.shape[-1] // 2
        return out[..., :half], out[..., half:]


def linear(x, weight, bias):
    """x [M, in] @ weight.T + bias -> [M, out].

    The bias is added in place after the matmul: cheaper on CPU than addmm, which first copies
    the broadcast bias into the whole output.
    """
    return torch.mm(x, weight.T).add_(bias)


def _sin(x):
    """sin, in place when no gradient is recorded (saves a full-size temporary)."""
    return torch.sin(x) if torch.is_grad_enabled() else x.sin_()


class FiLMLayer(nn.Module):
    """y = sin(f * (W x + b) + phase) with per-sample f and phase."""

    def __init__(self, input_dim, hidden_dim):
        super().__init__()
        self.layer = nn.Linear(input_dim, hidden_dim)

    def forward(self, x, freq, phase_shift):
        """x [B, N, in]; freq, phase_shift [B, H] -> [B, N, H]."""
        weight = freq.unsqueeze(-1) * self.layer.weight          # [B, H, in]
        bias = (freq * self.layer.bias + phase_shift).unsqueeze(1)  # [B, 1, H]
        return _sin(torch.bmm(x, weight.transpose(1, 2)).add_(bias))


def _siren_init_(linear, bound):
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)


def _accumulate_head(raw, feature, weight):
    """raw [B, N, 4] + feature [B, N, H] @ weight.T ([4, H]) -> [B, N, 4]."""
    return torch.baddbmm(raw, feature, weight.T.expand(feature.shape[0], -1, -1))


class RadianceNetwork(nn.Module):
    """FiLM-SIREN radiance field: (points, z or FiLM params, ray directions) -> [..., 4] rgb+sigma."""

    def __init__(self, z_dim=256, hidden_dim=256, normalize=0.24,
                 sigma_clamp_mode='softplus', rgb_clamp_mode='widen_sigmoid'):
        super().__init__()
        if sigma_clamp_mode not in ('softplus', 'relu'):
            raise ValueError(f"sigma_clamp_mode must be 'softplus' or 'relu', got '{sigma_clamp_mode}'")
        if rgb_clamp_mode not in ('widen_sigmoid', 'sigmoid'):
            raise ValueError(f"rgb_clamp_mode must be 'widen_sigmoid' or 'sigmoid', got '{rgb_clamp_mode}'")
        self.hidden_dim = hidden_dim
        self.input_scale = 2 / normalize
        self.sigma_clamp_mode = sigma_clamp_mode
        self.rgb_clamp_mode = rgb_clamp_mode
        self.network = nn.ModuleList(
            [FiLMLayer(3, hidden_dim)] + [FiLMLayer(hidden_dim, hidden_dim) for _ in range(NUM_FILM_LAYERS - 1)])
        self.color_layer = nn.ModuleList([FiLMLayer(hidden_dim + 3, hidden_dim)])
        self.output_sigma = nn.ModuleList([nn.Linear(hidden_dim, 1) for _ in range(NUM_FILM_LAYERS - 1)])
        self.output_color = nn.ModuleList([nn.Linear(hidden_dim, 3) for _ in range(NUM_FILM_LAYERS - 1)])
        self.mapping_network = MappingNetwork(z_dim, 256, NUM_FILM_SLICES * hidden_dim * 2)
        self._init_weights()

    def _init_weights(self):
        films = list(self.network) + list(self.color_layer)
        for linear in [f.layer for f in films] + list(self.output_sigma) + list(self.output_color):
            _siren_init_(linear, math.sqrt(6 / linear.in_features) / SIREN_INIT_DIVISOR)
        first = self.network[0].layer
        _siren_init_(first, 1 / first.in_features)

    def forward(self, points, z, ray_directions):
        """points [B, N, 3], z [B, z_dim], ray_directions [B, N, 3] -> [B, N, 4]."""
        frequencies, phase_shifts = self.mapping_network(z)
        return self.forward_with_frequencies_phase_shifts(points, frequencies, phase_shifts, ray_directions)

    def forward_with_frequencies_phase_shifts(self, points, frequencies, phase_shifts, ray_directions):
        """points [B, N, 3], frequencies / phase_shifts [B, 9 H], ray_directions [B, N, 3] -> [B, N, 4]."""
        frequencies = frequencies * FREQUENCY_SCALE + FREQUENCY_OFFSET
        H = self.hidden_dim
        batch_size, num_points, _ = points.shape
        x = points * self.input_scale
        # The 14 output heads are linear, so their sum is accumulated as [B, N, 4] = (rgb, sigma):
        # layers 1-6 feed one fused (colour, sigma) head; layer 7 feeds sigma, the colour layer rgb.
        head_bias = torch.cat([sum(head.bias for head in self.output_color),
                               sum(head.bias for head in self.output_sigma)])
        raw = head_bias.expand(batch_size, num_points, 4)
        for index, layer in enumerate(self.network):
            x = layer(x, frequencies[..., index * H:(index + 1) * H], phase_shifts[..., index * H:(index + 1) * H])
            if index == 0:
                continue
            color_weight = self.output_color[index - 1].weight  # [3, H]
            sigma_weight = self.output_sigma[index - 1].weight  # [1, H]
            if index < NUM_FILM_LAYERS - 1:
                raw = _accumulate_head(raw, x, torch.cat([color_weight, sigma_weight]))
            else:
                color_feature = self.color_layer[0](
                    torch.cat([ray_directions, x], dim=-1), frequencies[..., -H:], phase_shifts[..., -H:])
                raw = _accumulate_head(raw, x, torch.cat([torch.zeros_like(color_weight), sigma_weight]))
                raw = _accumulate_head(raw, color_feature, torch.cat([color_weight, torch.zeros_like(sigma_weight)]))
        rgb, sigma = raw[..., :3], raw[..., 3:]
        if self.rgb_clamp_mode == 'widen_sigmoid':
            rgb = torch.sigmoid(rgb) * (1 + 2 * WIDEN_SIGMOID_EPS) - WIDEN_SIGMOID_EPS
        else:
            rgb = torch.sigmoid(rgb)
        sigma = F.softplus(sigma) if self.sigma_clamp_mode == 'softplus' else F.relu(sigma)
        return torch.cat([rgb, sigma], dim=-1)


class Gram(nn.Module):
    """The GRAM representation: manifold predictor + radiance network (released module names)."""

    def __init__(self, z_dim=256, hidden_dim=256, normalize=0.24, sigma_clamp_mode='softplus',
                 rgb_clamp_mode='widen_sigmoid', hidden_dim_sample=64, layer_num_sample=3,
                 center=(0, 0, 0), init_radius=0):
        super().__init__()
        self.sample_network = ManifoldPredictor(hidden_dim_sample, layer_num_sample, center, init_radius)
        self.rf_network = RadianceNetwork(z_dim, hidden_dim, normalize, sigma_clamp_mode, rgb_clamp_mode)
