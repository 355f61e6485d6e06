"""Alpha compositing of the per-ray manifold samples (docs/design.md §4).

All tensors are per ray with L slots on dim -2: [B, R, L, C].
alpha_k = (1 - exp(-delta_k sigma_k)) * valid_k,  T_k = prod_{j<k} (1 - alpha_j + 1e-10),
weight_k = alpha_k T_k. Example: alphas (0.5, 0.5, 1) give T = (1, 0.5, 0.25) and
weights (0.5, 0.25, 0.25).
"""
import torch

DELTA_FINAL = 1e10            # interval length of the background and last slot: fully opaque
TRANSMITTANCE_EPS = 1e-10     # added to 1 - alpha in the transmittance product


def sort_by_depth(z_vals, *per_slot):
    """Sort slots by z (ascending) and reorder every other [B, R, L, C] tensor the same way.

    Returns (sorted z, the sorted tensors..., order [B, R, L, 1] of original slot indices).
    """
    z_sorted, order = torch.sort(z_vals, dim=-2, stable=True)
    reordered = [torch.gather(t, -2, order.expand(-1, -1, -1, t.shape[-1])) for t in per_slot]
    return (z_sorted, *reordered, order)


def composite(rgb_sigma, z_vals, validity, background_slot, delta_alpha, background,
              white_back=False, last_back=False):
    """Composite depth-sorted slots into a colour and a depth per ray.

    Args:
        rgb_sigma: [B, R, L, 4] radiance (r, g, b, sigma), sorted by depth.
        z_vals: [B, R, L, 1] distances from the ray origin, sorted.
        validity: [B, R, L, 1] 1 for a real intersection, 0 otherwise.
        background_slot: [B, R, 1, 1] sorted position of the background slot.
        delta_alpha: interval length for all slots; with `background` the last slot and the
            background slot get DELTA_FINAL.
    Returns:
        colour [B, R, 3] in ~[0, 1], depth [B, R, 1], weights [B, R, L, 1].
    """
    rgbs, sigmas = rgb_sigma[..., :3], rgb_sigma[..., 3:]
    deltas = torch.full_like(z_vals, delta_alpha)
    if background:
        deltas[:, :, -1] = DELTA_FINAL
        deltas.scatter_(-2, background_slot, DELTA_FINAL)
    alphas = (1 - torch.exp(-deltas * sigmas)) * validity
    shifted = torch.cat([torch.ones_like(alphas[:, :, :1]), 1 - alphas + TRANSMITTANCE_EPS], dim=-2)
    weights = alphas * torch.cumprod(shifted, dim=-2)[:, :, :-1]
    weights_sum = weights.sum(dim=-2)
    if last_back:
        last = weights[:, :, -1:] + (1 - weights_sum).unsqueeze(-2)
        weights = torch.cat([weights[:, :, :-1], last], dim=-2)
    colour = torch.sum(weights * rgbs, dim=-2)
    depth = torch.sum(weights * z_vals, dim=-2) / weights_sum
    if white_back:
        colour = colour + 1 - weights_sum
    return colour, depth, weights
