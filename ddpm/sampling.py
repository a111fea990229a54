"""Sampling from a training checkpoint, with the EMA weights when the run kept them."""

from pathlib import Path

import torch

from ddpm.checkpoint import load_checkpoint
from ddpm.config import TrainConfig
from ddpm.data import to_uint8
from ddpm.diffusion import DiffusionModel
from ddpm.models import build_model, resolve_device


def load_model(checkpoint_path: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """The DiffusionModel stored at `checkpoint_path`, holding its EMA weights if there are any."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = TrainConfig.from_dict(checkpoint["config"])
    model = build_model(config, checkpoint["channels"], checkpoint["image_size"])
    model.load_state_dict(checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"])
    return model.to(device).eval()


def sampler_arguments(sampling: dict) -> dict:
    """`generate`'s `steps` and `eta` for a config's `sampling` section: DDIM's `ddim_steps` and `ddim_eta`, or
    the ancestral sampler."""
    if sampling["sampler"] == "ddim":
        return {"steps": sampling["ddim_steps"], "eta": sampling["ddim_eta"]}
    return {"steps": None, "eta": 0.0}


def generate(
    model: DiffusionModel,
    num_samples: int,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """`num_samples` uint8 images (N, C, H, W), drawn in batches; the same seed gives the same images.

    `steps=None` runs the ancestral sampler over all timesteps, an integer runs DDIM with that many and noise
    scale `eta`.
    `amp` runs the network under bf16 autocast on the device (None: on CUDA only).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    unet = model.eps_model
    size = (unet.in_channels, unet.image_size, unet.image_size)
    generator = torch.Generator(device=device).manual_seed(seed)
    amp = device.type == "cuda" if amp is None else amp
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    batches = []
    with autocast:
        for start in range(0, num_samples, batch_size):
            count = min(batch_size, num_samples - start)
            batches.append(to_uint8(model.sample(count, size, device, steps=steps, generator=generator, eta=eta)).cpu())
    return torch.cat(batches)


def sample_checkpoint(checkpoint_path: str | Path, num_samples: int, steps: int | None = None, seed: int = 0,
                      batch_size: int = 256, device: str = "auto", amp: bool | None = None,
                      eta: float = 0.0) -> torch.Tensor:
    """Load a checkpoint and draw uint8 samples from it (see `generate`)."""
    device = resolve_device(device)
    return generate(load_model(checkpoint_path, device), num_samples, steps, seed, batch_size, device, amp, eta)
