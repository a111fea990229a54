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
from tqdm import tqdm

from ddpm.checkpoint import CheckpointError, load_checkpoint
from ddpm.checks import DEVICES, check_int
from ddpm.config import TrainConfig
from ddpm.data import to_uint8
from ddpm.diffusion import DiffusionModel
from ddpm.files import atomic_write
from ddpm.images import save_grid
from ddpm.models import build_model, resolve_device
from ddpm.samplers import GUIDANCES, SAMPLERS, TIMESTEP_SPACINGS, samplers_taking

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
    model = build_model(config, checkpoint["channels"], checkpoint["image_size"], checkpoint.get("num_classes", 0))
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
    """`generate`'s sampler, its arguments (ddpm.samplers.SAMPLERS: steps and eta only where the sampler takes
    them), timestep spacing and guidance for a config's `sampling` section (guidance_scale only with guidance)."""
    sampler = SAMPLERS[sampling["sampler"]]
    guidance = sampling.get("guidance", "none")
    return {"sampler": sampling["sampler"],
            "steps": sampling["steps"] if "steps" in sampler.arguments else None,
            "eta": sampling["eta"] if "eta" in sampler.arguments else 0.0,
            "timestep_spacing": sampling.get("timestep_spacing", "auto"),
            "guidance": guidance,
            "guidance_scale": sampling.get("guidance_scale", 1.0) if guidance != "none" else 1.0}


def draw_labels(model: DiffusionModel, num_samples: int, label: int | None = None) -> torch.Tensor | None:
    """The labels to draw a class-conditional model's samples with: sample i has label i mod K (class-balanced,
    so that a grid K wide holds one class per column), or `label` for all; None for an unconditional model."""
    num_classes = model.eps_model.num_classes
    if not num_classes:
        return None
    if label is not None:
        check_int("label", label, minimum=0, maximum=num_classes - 1)
        return torch.full((num_samples,), label, dtype=torch.long)
    return torch.arange(num_samples) % num_classes


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
    timestep_spacing: str = "auto",
    guidance: str = "none",
    guidance_scale: float = 1.0,
    guide: DiffusionModel | None = None,
    labels: torch.Tensor | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """`num_samples` uint8 images (N, C, H, W), drawn in batches; the same seed gives the same images.

    `sampler`, `steps`, `eta`, `timestep_spacing`, `guidance`, `guidance_scale` and `guide` are
    DiffusionModel.sample's: by default DDIM when `steps` is given, else the ancestral sampler over all timesteps.
    A class-conditional model draws sample i with `labels[i]` (default: class-balanced, see `draw_labels`).
    `amp` runs the network under bf16 autocast on the device (None: on CUDA only). `progress` shows a tqdm bar of
    the denoising steps on stderr (a job's log).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    unet = model.eps_model
    size = (unet.in_channels, unet.image_size, unet.image_size)
    labels = draw_labels(model, num_samples) if labels is None else labels
    generator = torch.Generator(device=device).manual_seed(seed)
    amp = device.type == "cuda" if amp is None else amp
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    batches, starts = [], range(0, num_samples, batch_size)
    with autocast, tqdm(desc="sampling", unit="step", disable=not progress, dynamic_ncols=True) as bar:

        def advance(step: int, steps_per_batch: int) -> None:
            bar.total = steps_per_batch * len(starts)
            bar.update()

        for start in starts:
            count = min(batch_size, num_samples - start)
            batch_labels = None if labels is None else labels[start:start + count].to(device)
            batches.append(to_uint8(model.sample(count, size, device, steps, generator, eta, sampler, timestep_spacing,
                                                 batch_labels, guidance, guidance_scale, guide, advance)).cpu())
    return torch.cat(batches)


def sample_checkpoint(checkpoint_path: str | Path, num_samples: int, steps: int | None = None, seed: int = 0,
                      batch_size: int = 256, device: str = "auto", amp: bool | None = None, eta: float = 0.0,
                      sampler: str | None = None, timestep_spacing: str = "auto", guidance: str = "none",
                      guidance_scale: float = 1.0, guide_checkpoint: str | Path | None = None,
                      label: int | None = None) -> torch.Tensor:
    """Load a checkpoint (and the guiding checkpoint of guidance "auto") and draw uint8 samples from it (see
    `generate`), with the labels of `draw_labels` for a class-conditional model."""
    device = resolve_device(device)
    model = load_model(checkpoint_path, device)
    guide = None if guide_checkpoint is None else load_model(guide_checkpoint, device)
    return generate(model, num_samples, steps, seed, batch_size, device, amp, eta, sampler, timestep_spacing,
                    guidance, guidance_scale, guide, draw_labels(model, num_samples, label))


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


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


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
    parser.add_argument("--timestep-spacing", choices=TIMESTEP_SPACINGS, default="auto",
                        help="the timesteps ddim and dpm_solver visit (diffusers' names); auto: linspace for ddim, "
                             "trailing for dpm_solver (default %(default)s)")
    parser.add_argument("--guidance", choices=GUIDANCES, default="none",
                        help="cfg: classifier-free guidance by the same class-conditional checkpoint without its "
                             "label (Ho & Salimans 2022); auto: autoguidance by --guide (Karras et al. 2024) "
                             "(default %(default)s)")
    parser.add_argument("--guidance-scale", type=_scale, default=1.0,
                        help="w in guide + w (model - guide): 1 is no guidance (default %(default)s)")
    parser.add_argument("--guide", help="guidance auto: the guiding checkpoint, e.g. an earlier epoch or a smaller "
                                        "network of the same diffusion")
    parser.add_argument("--label", type=_count(0),
                        help="a class-conditional checkpoint: draw every sample of this class (default: sample i "
                             "of class i mod K, and a PNG grid K wide, one class per column)")
    parser.add_argument("--seed", type=_count(0), default=0, help="the same seed draws the same images (default 0)")
    parser.add_argument("--batch-size", type=_count(1), default=256, help="images drawn at once (default 256)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto: CUDA when there is a GPU (default %(default)s)")
    return parser


def _check_arguments(parser: _Parser, args: argparse.Namespace) -> None:
    """The checks that need no checkpoint, so that a wrong argument stops the command before any work."""
    takes = SAMPLERS[args.sampler].arguments
    if "steps" not in takes and args.steps is not None:
        parser.error(f"argument --steps: applies to the samplers {samplers_taking('steps')} only")
    if "steps" not in takes and args.timestep_spacing != "auto":
        parser.error(f"argument --timestep-spacing: applies to the samplers {samplers_taking('steps')} only")
    if "eta" not in takes and args.eta:
        parser.error(f"argument --eta: applies to the samplers {samplers_taking('eta')} only")
    if args.guidance == "auto" and args.guide is None:
        parser.error("argument --guide: guidance auto needs the guiding checkpoint")
    if args.guidance != "auto" and args.guide is not None:
        parser.error("argument --guide: applies to --guidance auto only")
    if args.guidance == "none" and args.guidance_scale != 1.0:
        parser.error("argument --guidance-scale: needs --guidance cfg or auto")
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
    model, guide = _load(parser, "checkpoint", args.checkpoint, device), None
    if args.guide is not None:
        guide = _load(parser, "--guide", args.guide, device)
        try:
            model.check_guide(guide)
        except ValueError as error:
            parser.error(f"argument --guide: {error}")
    num_classes = model.eps_model.num_classes
    if args.guidance == "cfg" and not num_classes:
        parser.error("argument --guidance: cfg needs a class-conditional checkpoint (trained with class_conditional: "
                     "true); use --guidance auto with --guide, or none")
    if args.label is not None and not num_classes:
        parser.error("argument --label: the checkpoint is not class-conditional")
    if args.label is not None and args.label >= num_classes:
        parser.error(f"argument --label: must be in 0..{num_classes - 1} (the checkpoint's classes), got {args.label}")
    steps = None
    if "steps" in SAMPLERS[args.sampler].arguments:
        steps = args.steps or min(DEFAULT_SAMPLER_STEPS, model.num_timesteps)
        if steps > model.num_timesteps:
            parser.error(f"argument --steps: must be at most the checkpoint's num_timesteps ({model.num_timesteps}), "
                         f"got {steps}")
    eta = (DEFAULT_ETA if args.eta is None else args.eta) if "eta" in SAMPLERS[args.sampler].arguments else 0.0
    labels = draw_labels(model, args.num_samples, args.label)
    images = generate(model, args.num_samples, steps, args.seed, args.batch_size, device, eta=eta,
                      sampler=args.sampler, timestep_spacing=args.timestep_spacing, guidance=args.guidance,
                      guidance_scale=args.guidance_scale, guide=guide, labels=labels)
    if args.out.suffix == ".npy":
        atomic_write(args.out, lambda f: np.save(f, images.numpy()))
    else:
        save_grid(images, args.out, nrow=num_classes if num_classes and args.label is None else None)
    print(f"wrote {args.out}: {len(images)} samples of {tuple(images.shape[1:])} from {args.checkpoint}")


def _load(parser: _Parser, argument: str, path: str, device: torch.device) -> DiffusionModel:
    try:
        return load_model(path, device)
    except CheckpointError as error:
        parser.error(f"argument {argument}: {error}")


if __name__ == "__main__":
    main()
