"""Sampling from a training checkpoint, with the EMA weights when the run kept them: in Python, and on the
command line (the workflow's sample job draws the same images from the same arguments):

    python -m ddpm.sampling results/ddpm/checkpoints/epoch_40.pt --num-samples 100 --out grid.png --sampler dpm_solver
    ddpm-sample CHECKPOINT --num-samples 1000 --out samples.npy       (the same, once the package is installed)
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ddpm.checkpoint import CheckpointError, load_checkpoint
from ddpm.checks import DEVICES, SAMPLERS
from ddpm.config import TrainConfig
from ddpm.data import to_uint8
from ddpm.diffusion import DEFAULT_STEPS, DiffusionModel
from ddpm.files import atomic_write
from ddpm.models import build_model, resolve_device
from ddpm.plots import save_grid

def load_model(checkpoint_path: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """The DiffusionModel stored at `checkpoint_path`, holding its EMA weights if there are any."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = TrainConfig.from_dict(checkpoint["config"])
    model = build_model(config, checkpoint["channels"], checkpoint["image_size"])
    model.load_state_dict(checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"])
    return model.to(device).eval()


def sampler_arguments(sampling: dict) -> dict:
    """`generate`'s `sampler`, `steps` and `eta` for a config's `sampling` section (steps and eta only where the
    sampler takes them)."""
    sampler = sampling["sampler"]
    return {"sampler": sampler, "steps": None if sampler == "ancestral" else sampling["steps"],
            "eta": sampling["eta"] if sampler == "ddim" else 0.0}


def generate(
    model: DiffusionModel,
    num_samples: int,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    eta: float = 0.0,
    sampler: str | None = None,
) -> torch.Tensor:
    """`num_samples` uint8 images (N, C, H, W), drawn in batches; the same seed gives the same images.

    `sampler`, `steps` and `eta` are DiffusionModel.sample's: by default DDIM when `steps` is given, else the
    ancestral sampler over all timesteps.
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
            batches.append(to_uint8(model.sample(count, size, device, steps, generator, eta, sampler)).cpu())
    return torch.cat(batches)


def sample_checkpoint(checkpoint_path: str | Path, num_samples: int, steps: int | None = None, seed: int = 0,
                      batch_size: int = 256, device: str = "auto", amp: bool | None = None,
                      eta: float = 0.0, sampler: str | None = None) -> torch.Tensor:
    """Load a checkpoint and draw uint8 samples from it (see `generate`)."""
    device = resolve_device(device)
    return generate(load_model(checkpoint_path, device), num_samples, steps, seed, batch_size, device, amp, eta,
                    sampler)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line that names the argument."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _count(minimum: int):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return int(text)

    return parse


def main(argv: list[str] | None = None) -> None:
    """Draw samples from a checkpoint into a PNG grid or a uint8 .npy array (N, C, H, W), chosen by --out's suffix."""
    prog = "python -m ddpm.sampling" if Path(sys.argv[0]).name == "sampling.py" else "ddpm-sample"
    parser = _Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint of a run: results/<run>/checkpoints/epoch_<E>.pt")
    parser.add_argument("--num-samples", type=_count(1), required=True)
    parser.add_argument("--out", type=Path, required=True, help="FILE.png: a grid of them all; FILE.npy: the uint8 array")
    parser.add_argument("--sampler", choices=SAMPLERS, default="ancestral",
                        help="ancestral: Algorithm 2 over all T steps; ddim: Song et al. 2021, dpm_solver and "
                             "dpm_solver_sde: DPM-Solver++(2M), Lu et al. 2022, over --steps steps")
    parser.add_argument("--steps", type=_count(1),
                        help=f"network evaluations of ddim and dpm_solver, at most T (default {DEFAULT_STEPS})")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM's noise scale in [0, 1] (default 0)")
    parser.add_argument("--seed", type=_count(0), default=0)
    parser.add_argument("--batch-size", type=_count(1), default=256)
    parser.add_argument("--device", choices=DEVICES, default="auto")
    args = parser.parse_args(argv)
    if args.out.suffix not in (".png", ".npy"):
        parser.error(f"argument --out: must end in .png or .npy, got {str(args.out)!r}")
    if args.sampler == "ancestral" and args.steps is not None:
        parser.error("argument --steps: applies to the samplers ddim, dpm_solver and dpm_solver_sde only")
    if args.sampler != "ddim" and args.eta:
        parser.error("argument --eta: applies to --sampler ddim only")
    if not 0 <= args.eta <= 1:
        parser.error(f"argument --eta: must be in [0, 1], got {args.eta}")
    try:  # without --steps, DiffusionModel.sample's default for the samplers that take steps
        images = sample_checkpoint(args.checkpoint, args.num_samples, args.steps, args.seed, args.batch_size, args.device,
                                   eta=args.eta, sampler=args.sampler)
    except CheckpointError as error:
        parser.error(f"argument checkpoint: {error}")
    except ValueError as error:  # steps beyond the checkpoint's T
        parser.error(f"argument --steps: {error}")
    if args.out.suffix == ".npy":
        atomic_write(args.out, lambda f: np.save(f, images.numpy()))
    else:
        save_grid(images, args.out)
    print(f"wrote {args.out}: {len(images)} samples of {tuple(images.shape[1:])} from {args.checkpoint}")


if __name__ == "__main__":
    main()
