"""The optimizer of a TrainConfig, reading its lr from a device tensor, and the lr schedule."""

import math

import torch

from ddpm.config import TrainConfig


def make_optimizer(config: TrainConfig, params, lr: torch.Tensor, compiled: bool = False) -> torch.optim.Optimizer:
    """The optimizer, reading its lr from the tensor `lr`, which each step overwrites in place (no host sync, and
    no recompile of a compiled step). Eager on the CPU or CUDA: one fused kernel for all parameters; compiled: the
    multi-tensor (foreach) version, capturable (its step counts on the device), which inductor fuses itself: it
    does not trace into the fused kernels."""
    fused = not compiled and lr.device.type in ("cuda", "cpu")
    how = {"fused": True} if fused else {"foreach": True}
    adam = {**how, "capturable": not fused}
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **adam)
    elif config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **adam)
    else:
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                    **how)
    for group in optimizer.param_groups:
        group["lr"] = lr  # after the constructor, whose checks would read a device tensor on the host
    return optimizer


def lr_factor(warmup_steps: int, lr_schedule: str, total_steps: int):
    """The lr multiplier at each step: a linear warmup over `warmup_steps` steps, then constant, or the cosine
    annealing of Loshchilov & Hutter 2017 (eq. 5, one cycle, eta_min = 0) over the steps after the warmup."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if lr_schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
