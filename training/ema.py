"""Exponential moving average of a module's weights, with the released warm-up rule.

The released code used torch_ema's ExponentialMovingAverage with an update counter: the decay
used at the n-th update (n = 1, 2, ...) is min(decay, (1 + n) / (10 + n)), so early averages
follow the weights closely. The counter is part of the state (docs/design.md §6).

Our shadow is kept in the module's state_dict layout (parameter and persistent-buffer names), so
`EMA.state_dict()['shadow']` loads straight into a fresh generator with load_state_dict.
Parameters are averaged; persistent buffers (GramGenerator has none) are copied.
"""
import torch

WARMUP_OFFSET_NUM = 1.0    # warm-up decay = (1 + n) / (10 + n) at update n
WARMUP_OFFSET_DEN = 10.0


def warmup_decay(decay, num_updates):
    """Decay used at update number `num_updates` (1-based): min(decay, (1 + n) / (10 + n))."""
    return min(decay, (WARMUP_OFFSET_NUM + num_updates) / (WARMUP_OFFSET_DEN + num_updates))


class EMA:
    """Shadow copy of `module`'s weights, updated as shadow <- shadow - (1 - d) (shadow - param).

    Args:
        module: the network whose weights are averaged (its layout is fixed at construction).
        decay: the target decay (0.999 and 0.9999 in GRAM).
    """

    def __init__(self, module, decay):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.param_names = [name for name, _ in module.named_parameters()]  # parameters() order
        self.shadow = {name: value.detach().clone() for name, value in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module):
        """One EMA step towards `module`'s current weights (call after each optimiser step)."""
        self.num_updates += 1
        one_minus_decay = 1.0 - warmup_decay(self.decay, self.num_updates)
        params = dict(module.named_parameters())
        for name in self.param_names:
            shadow = self.shadow[name]
            shadow.sub_((shadow - params[name].detach().to(shadow.dtype)) * one_minus_decay)
        for name, buffer in module.named_buffers():
            if name in self.shadow:  # persistent buffers only
                self.shadow[name].copy_(buffer)

    def state_dict(self):
        """{'decay', 'num_updates', 'shadow': module-layout state_dict}; weights_only-loadable."""
        return {'decay': self.decay, 'num_updates': self.num_updates,
                'shadow': {name: value.clone() for name, value in self.shadow.items()}}

    def load_state_dict(self, state):
        """Restore decay, update count and shadow; the shadow must have this EMA's layout."""
        if set(state['shadow']) != set(self.shadow):
            missing = sorted(set(self.shadow) - set(state['shadow']))
            unexpected = sorted(set(state['shadow']) - set(self.shadow))
            raise KeyError(f"EMA shadow layout differs (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.decay = float(state['decay'])
        self.num_updates = int(state['num_updates'])
        for name, value in state['shadow'].items():
            self.shadow[name].copy_(value)
