"""Ray-manifold intersections (docs/design.md §2).

Given the predictor's values s at S samples along each ray, every level l gets one point per ray:
- interval k (between samples k and k+1) *crosses* l when s[k+1] <= l <= s[k] (s decreasing
  through l, bounds included); the first crossing interval along the ray is used, and the last
  interval (k = S-2) when none crosses;
- the point is the linear interpolation ((s_h - l) x_l + (l - s_l) x_h) / (s_h - s_l) when the
  interval crosses and |s_h - s_l| > 0.05, else x_h; validity = 1 exactly when it crosses.
Gradients reach the predictor through s_l and s_h.
"""
import torch

MIN_INTERPOLATION_GAP = 0.05  # below this |s_h - s_l| the sample point x_h is used as is
BACKGROUND_PLANE_Z = -0.12    # world plane z = -0.12 holding the background layer


def levels_for(levels_start, levels_end, num_levels, device):
    """Level values [L'] from levels_start to levels_end inclusive."""
    return torch.linspace(levels_start, levels_end, num_levels, device=device)


def select_intervals(s, levels):
    """Choose one sample interval per ray and level.

    Args:
        s: [B, R, S] predictor values along each ray.
        levels: [L'].
    Returns:
        low [B, R, L'] int64 index k of the chosen interval (samples k and k+1),
        crossing [B, R, L'] bool.
    """
    num_samples = s.shape[-1]
    s_low = s[..., :-1].unsqueeze(-2)   # [B, R, 1, S-1]
    s_high = s[..., 1:].unsqueeze(-2)
    level_column = levels.unsqueeze(-1)  # [L', 1]
    # Intervals on the last axis: a reduction over a strided middle axis is ~4x slower on CPU.
    crosses = (s_high <= level_column) & (s_low >= level_column)  # [B, R, L', S-1]
    crossing = crosses.any(dim=-1)
    first = crosses.to(s.dtype).argmax(dim=-1)        # first True along the ray (float argmax: every backend)
    low = torch.where(crossing, first, torch.full_like(first, num_samples - 2))
    return low, crossing


def interpolate(x_low, x_high, s_low, s_high, levels, crossing):
    """Intersection points [B, R, L', 3] from the chosen intervals.

    x_low, x_high [B, R, L', 3]; s_low, s_high, crossing [B, R, L']; levels [L'].
    """
    gap = s_high - s_low
    use_interpolation = crossing & (gap.abs() > MIN_INTERPOLATION_GAP)
    safe_gap = torch.where(use_interpolation, gap, torch.ones_like(gap)).unsqueeze(-1)
    interpolated = ((s_high - levels).unsqueeze(-1) * x_low + (levels - s_low).unsqueeze(-1) * x_high) / safe_gap
    return torch.where(use_interpolation.unsqueeze(-1), interpolated, x_high)


def intersect_manifolds(predictor, points, levels):
    """Points where each ray meets each level set of the predictor.

    The level search runs without gradients; when gradients are recorded, s is re-evaluated with
    autograd only at the interval ends that are actually interpolated (other points are sample
    points, constant for autograd), which gives the same values and gradients as a dense pass.
    Args:
        predictor: module mapping [..., 3] -> [..., 1].
        points: [B, R, S, 3] world sample points along each ray.
        levels: [L'].
    Returns:
        intersections [B, R, L', 3], validity [B, R, L', 1] (float), s [B, R, S] (no grad).
    """
    B, R, S, _ = points.shape
    with torch.no_grad():
        s = predictor(points).squeeze(-1)  # [B, R, S]
    low, crossing = select_intervals(s, levels)
    index = low.unsqueeze(-1).expand(-1, -1, -1, 3)
    x_low = torch.gather(points, 2, index)         # [B, R, L', 3]
    x_high = torch.gather(points, 2, index + 1)
    s_low = torch.gather(s, 2, low)                # [B, R, L']
    s_high = torch.gather(s, 2, low + 1)
    if torch.is_grad_enabled():
        needs_grad = crossing & ((s_high - s_low).abs() > MIN_INTERPOLATION_GAP)
        s_low = s_low.masked_scatter(needs_grad, predictor(x_low[needs_grad]).squeeze(-1).to(s_low.dtype))
        s_high = s_high.masked_scatter(needs_grad, predictor(x_high[needs_grad]).squeeze(-1).to(s_high.dtype))
    intersections = interpolate(x_low, x_high, s_low, s_high, levels, crossing)
    return intersections, crossing.unsqueeze(-1).to(points.dtype), s


def background_points(ray_origins, ray_directions):
    """Where rays meet the background plane z = BACKGROUND_PLANE_Z.

    ray_origins [B, 3], ray_directions [B, R, 3] -> [B, R, 3].
    """
    origins = ray_origins.unsqueeze(1)  # [B, 1, 3]
    t = (BACKGROUND_PLANE_Z - origins[..., 2:3]) / ray_directions[..., 2:3]
    return origins + t * ray_directions
