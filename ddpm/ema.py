"""An exponential moving average of a model's weights, updated on the device without a host sync."""

import copy

import torch


class EMA:
    """An exponential moving average of a model's weights (buffers copied): after update n (from 0),
    ema_n = d_n ema_{n-1} + (1 - d_n) w_n with diffusers' EMAModel warm-up, d_0 = 0 (a copy) and
    d_n = min(decay, (1 + n) / (10 + n)), so that a short run's EMA does not keep its random initial weights (with a
    fixed 0.995, 6 % of them remain after 560 steps).

    n is the training step, which the host knows: `set_step` writes 1 - d_n into a device tensor before the step,
    and `update` reads it there, without a host sync and, compiled, without a recompile. `module` holds the
    averaged model, whose state dict is a plain one of the model.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay, self.weight = decay, torch.ones((), device=next(model.parameters()).device)  # 1 - d_n
        self.averaged, self.weights = list(self.module.parameters()), list(model.parameters())
        self.copies, self.buffers = list(self.module.buffers()), list(model.buffers())

    def decay_at(self, n: int) -> float:
        return 0.0 if n == 0 else min(self.decay, (1 + n) / (10 + n))

    def set_step(self, n: int) -> None:
        self.weight.fill_(1 - self.decay_at(n))

    def update(self) -> None:
        """ema += (1 - d_n) (w - ema), the weight read from the device."""
        deltas = torch._foreach_sub(self.weights, self.averaged)
        torch._foreach_mul_(deltas, self.weight)
        torch._foreach_add_(self.averaged, deltas)
        if self.buffers:
            torch._foreach_copy_(self.copies, self.buffers)
