"""Seeds on the command line ('0-19', '0,5,9', '3', or mixed '0-3,7') and the latent of a seed."""
import re

import torch

_RANGE = re.compile(r'^(\d+)-(\d+)$')  # 'a-b', inclusive, non-negative
_SINGLE = re.compile(r'^\d+$')
MAX_SEEDS = 100_000      # seeds one command accepts (a typo such as 0-999999999 would never end)
MAX_SEED = 2 ** 63 - 1   # largest seed a torch.Generator takes here


def parse_seeds(text):
    """Return the seeds in `text` as a list of ints, in the order written.

    Items are separated by commas; each is a non-negative int or an inclusive range 'a-b'
    with a <= b. Raises ValueError with a one-line message otherwise.
    """
    seeds = []
    for item in str(text).replace(' ', '').split(','):
        single, span = _SINGLE.match(item), _RANGE.match(item)
        if single:
            seeds.append(int(item))
        elif span and int(span.group(1)) <= int(span.group(2)):
            first, last = int(span.group(1)), int(span.group(2))
            if last - first + 1 > MAX_SEEDS:
                raise ValueError(f"seeds '{text}' name more than {MAX_SEEDS} seeds; render fewer per command")
            seeds.extend(range(first, last + 1))
        else:
            raise ValueError(f"invalid seeds '{text}': use non-negative ints like '0-19', '0,5,9' or '3'")
        if len(seeds) > MAX_SEEDS:
            raise ValueError(f"seeds '{text}' name more than {MAX_SEEDS} seeds; render fewer per command")
    if max(seeds) > MAX_SEED:
        raise ValueError(f"seed {max(seeds)} is too large; seeds go up to {MAX_SEED}")
    return seeds


def latent_for_seed(seed, z_dim, device):
    """The latent of `seed`: torch.randn(1, z_dim) from a CPU torch.Generator seeded with `seed`.

    The same draw as the released script's torch.manual_seed(seed); torch.randn(1, z_dim) on a
    CPU, without touching the global RNG; drawn on the CPU so a seed has the same z on every
    device. Returns [1, z_dim] on `device`.
    """
    draw = torch.Generator().manual_seed(seed)
    return torch.randn(1, z_dim, generator=draw).to(device)
