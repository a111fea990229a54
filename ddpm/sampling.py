"""Sampling from a training checkpoint, with the EMA weights when the run kept them: in Python, and on the
command line, by default as the default workflow config samples (config/config.yaml: DPM-Solver++(2M) SDE, 20 steps):

    python -m ddpm.sampling results/ddpm/checkpoints/epoch_40.pt --num-samples 100 --out grid.png --sampler dpm_solver
    ddpm-sample CHECKPOINT --num-samples 1000 --out samples.npy       (the same, once the package is installed)
"""

import argparse
import pickle
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from ddpm.checkpoint import CheckpointError, load_checkpoint
from ddpm.checks import DEVICES, SAMPLERS
from ddpm.config import TrainConfig
from ddpm.data import to_uint8
from ddpm.diffusion import DiffusionModel
from ddpm.files import atomic_write
from ddpm.images import save_grid
from ddpm.models import build_model, resolve_device

DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, DEFAULT_ETA = "dpm_solver_sde", 20, 0.0  # ddpm-sample's: config/config.yaml's
CHECKPOINT_KEYS = ("config", "channels", "image_size", "model", "ema")  # what training saves at an epoch
EPOCH_CHECKPOINT = "results/<run>/checkpoints/epoch_<E>.pt"


def load_model(checkpoint_path: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """The DiffusionModel stored at `checkpoint_path`, holding its EMA weights if there are any; a CheckpointError
    says in one line why a file is not a checkpoint that training saved at an epoch."""
    checkpoint = _epoch_checkpoint(Path(checkpoint_path))
    try:
        config = TrainConfig.from_dict(checkpoint["config"])
    except ValueError as error:  # a field that this version no longer has or allows
        raise CheckpointError(f"checkpoint {checkpoint_path} holds a training config that this version of ddpm cannot "
                              f"read: {error}") from error
    model = build_model(config, checkpoint["channels"], checkpoint["image_size"])
    model.load_state_dict(checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"])
    return model.to(device).eval()


def _epoch_checkpoint(path: Path) -> dict:
    """The dict that training saved at an epoch (CHECKPOINT_KEYS) at `path`, or a CheckpointError that says what
    the file is instead: another kind of file, a resume state, or another program's torch.save."""
    if path.is_file() and not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint: torch.save writes a zip archive, and "
                              "this file is another kind of file or truncated")
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        if isinstance(error.__cause__, pickle.UnpicklingError):  # what torch.load(weights_only=True) refuses
            raise CheckpointError(f"checkpoint {path} was not saved by training: it holds Python objects other than "
                                  "tensors, numbers, strings and containers") from error
        raise
    if isinstance(checkpoint, dict) and {"fingerprint", "optimizer"} <= checkpoint.keys():
        raise CheckpointError(f"checkpoint {path} is a resume state of training, not an epoch checkpoint: sample "
                              f"{EPOCH_CHECKPOINT}")
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not the dict that training "
                              f"saves at an epoch: sample {EPOCH_CHECKPOINT}")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} was not saved by training: it has no {', '.join(missing)}; sample "
                              f"{EPOCH_CHECKPOINT}")
    return checkpoint


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


def _parser() -> _Parser:
    prog = "python -m ddpm.sampling" if Path(sys.argv[0]).name == "sampling.py" else "ddpm-sample"
    parser = _Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help=f"a checkpoint of a run: {EPOCH_CHECKPOINT}")
    parser.add_argument("--num-samples", type=_count(1), required=True)
    parser.add_argument("--out", type=Path, required=True, help="FILE.png: a grid of them all; FILE.npy: the uint8 array")
    parser.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                        help="ancestral: Algorithm 2 over all T steps; ddim: Song et al. 2021, dpm_solver and "
                             "dpm_solver_sde: DPM-Solver++(2M), Lu et al. 2022, over --steps steps "
                             "(default %(default)s)")
    parser.add_argument("--steps", type=_count(1),
                        help=f"network evaluations of ddim and dpm_solver, at most T (default {DEFAULT_SAMPLER_STEPS}, "
                             "or T when it is smaller)")
    parser.add_argument("--eta", type=float, help=f"DDIM's noise scale in [0, 1] (default {DEFAULT_ETA})")
    parser.add_argument("--seed", type=_count(0), default=0, help="the same seed draws the same images (default 0)")
    parser.add_argument("--batch-size", type=_count(1), default=256, help="images drawn at once (default 256)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto: CUDA when there is a GPU (default %(default)s)")
    return parser


def _check_arguments(parser: _Parser, args: argparse.Namespace) -> None:
    """The checks that need no checkpoint, so that a wrong argument stops the command before any work."""
    if args.sampler == "ancestral" and args.steps is not None:
        parser.error("argument --steps: applies to the samplers ddim, dpm_solver and dpm_solver_sde only")
    if args.sampler != "ddim" and args.eta:
        parser.error("argument --eta: applies to --sampler ddim only")
    if args.eta is not None and not 0 <= args.eta <= 1:
        parser.error(f"argument --eta: must be in [0, 1], got {args.eta}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("argument --device: cuda, but no CUDA GPU is visible: use --device auto or cpu")
    if args.out.suffix not in (".png", ".npy"):
        parser.error(f"argument --out: must end in .png or .npy, got {str(args.out)!r}")
    if args.out.is_dir():
        parser.error(f"argument --out: {str(args.out)!r} is a folder")
    folder = next(parent for parent in args.out.absolute().parents if parent.exists())  # writing makes the rest
    try:  # as the write will: a new file in the folder
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{args.out.name}.", suffix=".tmp"):
            pass
    except OSError as error:
        parser.error(f"argument --out: cannot create a file in {folder}: {error.strerror}")


def main(argv: list[str] | None = None) -> None:
    """Draw samples from a checkpoint into a PNG grid or a uint8 .npy array (N, C, H, W), chosen by --out's suffix."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    try:
        _sample(parser, args)
    except KeyboardInterrupt:
        parser.exit(130, f"{parser.prog}: interrupted, {args.out} not written\n")


def _sample(parser: _Parser, args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    try:
        model = load_model(args.checkpoint, device)
    except CheckpointError as error:
        parser.error(f"argument checkpoint: {error}")
    steps = None
    if args.sampler != "ancestral":
        steps = args.steps or min(DEFAULT_SAMPLER_STEPS, model.num_timesteps)
        if steps > model.num_timesteps:
            parser.error(f"argument --steps: must be at most the checkpoint's num_timesteps ({model.num_timesteps}), "
                         f"got {steps}")
    eta = (DEFAULT_ETA if args.eta is None else args.eta) if args.sampler == "ddim" else 0.0
    images = generate(model, args.num_samples, steps, args.seed, args.batch_size, device, eta=eta, sampler=args.sampler)
    if args.out.suffix == ".npy":
        atomic_write(args.out, lambda f: np.save(f, images.numpy()))
    else:
        save_grid(images, args.out)
    print(f"wrote {args.out}: {len(images)} samples of {tuple(images.shape[1:])} from {args.checkpoint}")


if __name__ == "__main__":
    main()
