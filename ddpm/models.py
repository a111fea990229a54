"""A DiffusionModel from a TrainConfig, around the network the config names, and the device it runs on."""

import os

import torch
import torch.distributed as dist

from ddpm.config import TrainConfig
from ddpm.ddpm_unet import DDPMUNet
from ddpm.diffusion import DiffusionModel
from ddpm.unet import UNet


def build_model(config: TrainConfig, channels: int, image_size: int, num_classes: int = 0) -> DiffusionModel:
    """The DiffusionModel around the network `config.architecture` names: the course UNet or the paper's; with
    `config.class_conditional`, a network conditioned on `num_classes` (>= 2) classes, trained with label_dropout."""
    if config.class_conditional and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                     or num_classes < 2):
        raise ValueError(f"class_conditional: true needs num_classes >= 2 (a labelled dataset), got {num_classes!r}")
    num_classes = num_classes if config.class_conditional else 0
    if config.architecture == "ddpm":
        unet = DDPMUNet(channels, channels, hidden_size=config.hidden_size, image_size=image_size,
                        channel_mult=config.channel_mult, num_res_blocks=config.num_res_blocks,
                        attention_resolutions=config.attention_resolutions, dropout=config.dropout,
                        num_classes=num_classes)
    else:
        unet = UNet(channels, channels, hidden_size=config.hidden_size, image_size=image_size, num_classes=num_classes)
    return DiffusionModel(unet, betas=(config.beta1, config.beta2), num_timesteps=config.num_timesteps,
                          schedule=config.schedule, prediction=config.prediction,
                          loss_weighting=config.loss_weighting, min_snr_gamma=config.min_snr_gamma,
                          label_dropout=config.label_dropout if config.class_conditional else 0.0)


def resolve_device(device: str) -> torch.device:
    """The torch device for a config's `device` ("auto": CUDA when there is a GPU); under torchrun, this process's GPU."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device is 'cuda' but no CUDA GPU is visible; use device: auto or cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(device)
