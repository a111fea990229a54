"""The config of one training run: the `TrainConfig` dataclass, the one definition of every field's name, default
and meaning, with the checks that need no dataset. `config/schema.yaml` and the README's field table describe the
same fields; tests/test_config.py fails when they disagree.

Every field has the name it has in `config/config.yaml`, in the loss CSV and in the README.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ddpm.checks import (ARCHITECTURES, AUTO_SWITCH, DEVICES, LOSS_WEIGHTINGS, LR_SCHEDULES, OPTIMIZERS, PREDICTIONS,
                         SCHEDULES, check_betas, check_choice, check_course_unet, check_int, check_positive)

# each field that takes one of a list of values, and that list
CHOICES = {"architecture": ARCHITECTURES, "schedule": SCHEDULES, "prediction": PREDICTIONS,
           "loss_weighting": LOSS_WEIGHTINGS, "optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES,
           "device": DEVICES, "data_on_device": AUTO_SWITCH, "amp": AUTO_SWITCH, "channels_last": AUTO_SWITCH}
# fields that change how a run is saved, never what it computes
SAVING_ONLY = ("state_every", "keep_states", "checkpoint_epochs")
# fields that apply only where another field has a given value: field -> (that field, its value)
APPLIES_ONLY = {**dict.fromkeys(("channel_mult", "num_res_blocks", "attention_resolutions", "dropout"),
                                ("architecture", "ddpm")),
                "beta1": ("schedule", "linear"), "beta2": ("schedule", "linear"), "momentum": ("optimizer", "sgd"),
                "min_snr_gamma": ("loss_weighting", "min_snr"), "label_dropout": ("class_conditional", True)}
# fields added after runs were recorded: left out of the training identity at their defaults, so that those runs keep
# their identity (and their resume states their fingerprint)
OMITTED_AT_DEFAULT = ("class_conditional", "label_dropout", "init_from")
# a diffusers folder's UNet2DModel: its config and its weights, in the folder or in its unet/ (a pipeline's)
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class InitFromError(ValueError):
    """The weights that `init_from` names cannot start this run."""


@dataclass
class TrainConfig:
    # model and diffusion
    architecture: str = "course"  # "course": the course UNet; "ddpm": the UNet of Ho et al. (2020), Appendix B
    hidden_size: int = 128
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 2])  # ddpm: width multiplier per resolution
    num_res_blocks: int = 2  # ddpm: residual blocks per resolution
    attention_resolutions: list[int] = field(default_factory=lambda: [16])  # ddpm: resolutions with self-attention
    dropout: float = 0.1  # ddpm
    num_timesteps: int = 1000
    schedule: str = "linear"  # "linear" (beta1..beta2, Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021)
    beta1: float = 1e-4  # linear only
    beta2: float = 0.02  # linear only
    prediction: str = "eps"  # what the network predicts: "eps" (Ho et al. 2020), "v" (Salimans & Ho 2022) or "x0"
    loss_weighting: str = "uniform"  # "uniform", or "min_snr": Min-SNR-gamma (Hang et al. 2023)
    min_snr_gamma: float = 5.0  # min_snr only: the SNR at which the weight is clipped
    class_conditional: bool = False  # the network takes the dataset's class labels (needs a labelled dataset)
    label_dropout: float = 0.1  # class_conditional only: P(label -> the null label) in training (Ho & Salimans 2022)
    init_from: str | None = None  # start from these weights: an epoch checkpoint, or a diffusers UNet2DModel folder
    # optimisation
    optimizer: str = "adam"
    lr: float = 2e-4
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    batch_size: int = 128
    epochs: int = 100
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # after the warmup: "constant", or "cosine" towards 0 (reached one step after the last)
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    ema_decay: float | None = 0.999  # None: no EMA
    flip: bool = False
    seed: int = 0
    # where and how fast
    device: str = "auto"
    gpus: int = 1  # >1: DistributedDataParallel under torchrun
    data_on_device: str = "auto"  # keep the uint8 dataset on the GPU
    amp: str = "auto"  # bf16 autocast (CUDA)
    channels_last: str = "auto"  # NHWC memory format (CUDA)
    compile: bool = False  # torch.compile the training step (forward and loss; clipping, optimizer and EMA)
    log_every: int = 1  # steps between loss syncs and CSV rows
    # checkpoints and resume
    checkpoint_epochs: list[int] = field(default_factory=list)
    state_every: int = 500  # steps between resume states
    keep_states: int = 2

    def __post_init__(self):
        """Checks that need no dataset; the ddpm architecture's fields are checked against the image size by
        `ddpm.checks.check_ddpm_unet` (see `ddpm.experiments.experiment_configs`)."""
        for name, allowed in CHOICES.items():
            check_choice(name, getattr(self, name), allowed)
        for name in ("hidden_size", "num_timesteps", "batch_size", "epochs", "log_every", "state_every", "keep_states",
                     "gpus"):
            check_int(name, getattr(self, name), minimum=1)
        if self.architecture == "course":
            check_course_unet(self.hidden_size)
        for name in ("warmup_steps", "seed"):
            check_int(name, getattr(self, name), minimum=0)
        for name in ("flip", "compile", "class_conditional"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.batch_size % self.gpus:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by gpus ({self.gpus}): each process "
                             "trains on an equal share of the global batch")
        check_positive("lr", self.lr)
        check_positive("min_snr_gamma", self.min_snr_gamma)
        check_betas(self.beta1, self.beta2)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("momentum", "label_dropout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise ValueError(f"init_from must be the path of a checkpoint or a diffusers folder, or null, got "
                             f"{self.init_from!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or null for no EMA, got {self.ema_decay!r}")
        bad = [e for e in self.checkpoint_epochs if not isinstance(e, int) or not 1 <= e <= self.epochs]
        if bad:
            raise ValueError(f"checkpoint epochs {bad} are outside 1..epochs (epochs = {self.epochs})")
        self.checkpoint_epochs = sorted(set(self.checkpoint_epochs))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; allowed: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def training_identity(self) -> dict:
        """The fields that decide what training computes: all but SAVING_ONLY, with the fields that do not apply to
        this config (the paper UNet's for the course UNet, beta1 and beta2 for the cosine schedule, momentum for
        Adam, label_dropout without class_conditional) at their defaults, and OMITTED_AT_DEFAULT's left out at
        theirs. Two configs with the same identity train the same run."""
        defaults = TrainConfig().to_dict()
        identity = {k: v if self.applies(k) else defaults[k] for k, v in self.to_dict().items() if k not in SAVING_ONLY}
        return {k: v for k, v in identity.items() if k not in OMITTED_AT_DEFAULT or v != defaults[k]}

    def applies(self, name: str) -> bool:
        """Whether field `name` matters to this config (see APPLIES_ONLY)."""
        field_name, value = APPLIES_ONLY.get(name, (None, None))
        return field_name is None or getattr(self, field_name) == value

    def extensible_identity(self) -> dict:
        """The training identity without the number of epochs where the lr schedule does not depend on it (constant
        after the warmup): two configs that share it train the same epochs, up to the fewer of their `epochs`, so
        a finished run goes on from its final state when asked for more."""
        identity = self.training_identity()
        if self.lr_schedule == "constant":
            del identity["epochs"]
        return identity

    def fingerprint(self) -> str:
        """A hash of what a resume state must share with this config: the extensible identity but the number of
        processes (a resume checks that itself)."""
        relevant = {k: v for k, v in self.extensible_identity().items() if k != "gpus"}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def init_from_files(path: str | Path) -> list[Path]:
    """The files that `init_from: path` reads: the checkpoint itself, or a diffusers folder's UNet2DModel config.json
    and weights (in the folder, or in its unet/ as a DDPMPipeline folder holds them); a ValueError names init_from
    when there are none (InitFromError)."""
    path = Path(path)
    if path.is_file():
        return [path]
    folder = path / "unet" if (path / "unet" / "config.json").is_file() else path
    weights = [folder / name for name in DIFFUSERS_WEIGHTS if (folder / name).is_file()]
    if not path.is_dir() or not (folder / "config.json").is_file() or not weights:
        raise InitFromError(f"init_from: {path} is neither a checkpoint file nor a diffusers folder of a UNet2DModel "
                         f"(config.json and {' or '.join(DIFFUSERS_WEIGHTS)}, or unet/ holding them)")
    return [folder / "config.json", weights[0]]


def init_from_digest(path: str | Path) -> str:
    """A hash of the files that `init_from: path` reads, for the resume fingerprint: other weights under the same
    path are another run."""
    digest = hashlib.sha256()
    for file in init_from_files(path):
        with file.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def check_init_from(experiment: str, init_from: str | None) -> None:
    """The workflow's check before any job: an experiment's `init_from` names a checkpoint or a diffusers folder that
    exists (whether its tensors fit the network, the train job checks before its first step)."""
    if init_from is None:
        return
    try:
        init_from_files(init_from)
    except ValueError as error:
        raise ValueError(f"experiment {experiment!r}: {error}") from None
