"""Read the released GRAM `ema.pth` without running arbitrary pickled code.

The released training script saved its EMA as a pickled `torch_ema.ema.ExponentialMovingAverage`
object (docs/design.md §6: attributes `decay`, `num_updates`, `shadow_params` — a list in
`generator.parameters()` order — and `collected_params`). Unpickling it blindly would execute
whatever the file asks for. Instead we use torch's restricted `weights_only` unpickler, which
only rebuilds tensors and plain containers, and allow exactly one extra global: the name
`torch_ema.ema.ExponentialMovingAverage`, mapped to the plain stand-in class `ReleasedEMA`
below (torch_ema is never imported). Any other global (e.g. `os.system`) is refused with a
one-line error naming it.
"""
import os
import pickle
import re

import torch

RELEASED_EMA_CLASS = 'torch_ema.ema.ExponentialMovingAverage'  # full pickled name we accept
REQUIRED_EMA_ATTRIBUTES = ('decay', 'shadow_params')             # must be present in the pickle


class ReleasedEMA:
    """Plain holder for the attributes of a pickled torch_ema EMA (no methods of its own).

    Attributes: decay (float), num_updates (int or None), shadow_params (list of tensors in
    generator.parameters() order), collected_params (list or None).
    """

    def __init__(self):
        self.decay = None
        self.num_updates = None
        self.shadow_params = []
        self.collected_params = None

    def __setstate__(self, state):
        """Called by the unpickler with the pickled object's __dict__ (already restricted to
        tensors and plain containers by the weights-only unpickler)."""
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f'{RELEASED_EMA_CLASS} state must be a dict, got {type(state).__name__}')
        self.__init__()
        self.__dict__.update(state)


def load_released_ema(path):
    """Load a released `ema.pth` -> ReleasedEMA, refusing anything but that class and tensors.

    Raises FileNotFoundError or ValueError with a one-line message.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EMA file '{path}' not found")
    try:
        with torch.serialization.safe_globals([(ReleasedEMA, RELEASED_EMA_CLASS)]):
            ema = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"refusing to load '{path}': {_unpickling_reason(error)}; only a pickled "
                         f"{RELEASED_EMA_CLASS} with plain tensors is accepted") from None
    except (RuntimeError, EOFError, KeyError, IndexError, TypeError):  # torch.load's errors on damaged files
        raise ValueError(f"EMA file '{path}' is empty or damaged (an interrupted download?); copy it again") from None
    if not isinstance(ema, ReleasedEMA):
        raise ValueError(f"'{path}' holds a {type(ema).__name__}, not a pickled {RELEASED_EMA_CLASS}")
    missing = [name for name in REQUIRED_EMA_ATTRIBUTES if getattr(ema, name) in (None, [])]
    if missing or not all(torch.is_tensor(t) for t in ema.shadow_params):
        raise ValueError(f"'{path}' is not a usable EMA: missing or non-tensor attributes "
                         f"{missing or ['shadow_params']}")
    return ema


def shadow_state_dict(generator, shadow_params, source='the EMA file'):
    """Map shadow tensors (in generator.parameters() order) onto the generator's state_dict keys.

    Returns a copy of generator.state_dict() with every trainable parameter replaced by its
    shadow tensor. Raises ValueError when the count or a shape does not match the generator.
    """
    named = [(name, p) for name, p in generator.named_parameters() if p.requires_grad]
    if len(named) != len(shadow_params):
        raise ValueError(f'{source} has {len(shadow_params)} shadow tensors but the generator has '
                         f'{len(named)} parameters')
    state = {key: value.clone() for key, value in generator.state_dict().items()}
    for (name, param), shadow in zip(named, shadow_params):
        if tuple(shadow.shape) != tuple(param.shape):
            raise ValueError(f'{source}: shadow tensor for {name} has shape {tuple(shadow.shape)}, '
                             f'the generator expects {tuple(param.shape)}')
        state[name] = shadow.detach().to(dtype=param.dtype, device='cpu').clone()
    return state


def _unpickling_reason(error):
    """The useful part of torch's multi-line weights-only error: the refused global, if named."""
    match = re.search(r'GLOBAL (\S+)', str(error))
    if match:
        return f"it contains the pickled global '{match.group(1)}'"
    return 'it contains pickled objects the restricted unpickler does not rebuild'
