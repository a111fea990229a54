"""ddpm: a correct, tested DDPM (Ho et al. 2020) with the course homework's vocabulary.

    from ddpm import DiffusionModel, UNet, DDPMUNet, TrainConfig

The names load lazily (PEP 562), so that the workflow's config checks (`ddpm.experiments`) need no torch.
"""

import importlib

_EXPORTS = {"DiffusionModel": "ddpm.diffusion", "UNet": "ddpm.unet", "DDPMUNet": "ddpm.ddpm_unet", "TrainConfig": "ddpm.config"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ddpm' has no attribute {name!r}")
