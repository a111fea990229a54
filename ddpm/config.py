"""The experiment config: one dataclass, with the checks a JSON schema cannot express, and the expansion of
experiments x sweep x seeds into runs.

Every field has the name it has in `config/config.yaml`, in the loss CSV and in the README.
"""

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DATASETS = ("digits", "cifar10", "folder")
# the built-in datasets' (number of images, channels, image_size), known before they are downloaded
BUILTIN_DATASETS = {"digits": (1797, 1, 8), "cifar10": (50_000, 3, 32)}
FOLDER_ONLY = ("path", "image_size", "channels")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
AUTO_SWITCH = ("auto", "on", "off")
ARCHITECTURES = ("course", "ddpm")
SCHEDULES = ("linear", "cosine")
LR_SCHEDULES = ("constant", "cosine")
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# fields that change how a run is executed or saved, never what it computes
DDPM_UNET_FIELDS = ("channel_mult", "num_res_blocks", "attention_resolutions", "dropout")  # architecture ddpm only
EXECUTION_ONLY = ("state_every", "keep_states", "gpus")
# what the workflow keeps in results/ beside the run folders: no run may take one of these names
RESULTS_ENTRIES = ("benchmarks", "logs", "plots", "reference", "resume", "losses.csv", "metrics.csv", "summary.csv",
                   "summary.html", "report.html")


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
    # optimisation
    optimizer: str = "adam"
    lr: float = 2e-4
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    batch_size: int = 128
    epochs: int = 100
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # after the warmup: "constant", or "cosine" decay to 0 at the last step
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
    compile: bool = False  # torch.compile the network
    log_every: int = 1  # steps between loss syncs and CSV rows
    # checkpoints and resume
    checkpoint_epochs: list[int] = field(default_factory=list)
    state_every: int = 500  # steps between resume states
    keep_states: int = 2

    def __post_init__(self):
        """Checks that need no dataset; the ddpm architecture's fields are checked against the image size by
        `check_ddpm_unet` (see `experiment_configs`)."""
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_choice("device", self.device, DEVICES)
        for name in ("data_on_device", "amp", "channels_last"):
            _check_choice(name, getattr(self, name), AUTO_SWITCH)
        for name in ("hidden_size", "num_timesteps", "batch_size", "epochs", "log_every", "state_every", "keep_states",
                     "gpus"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.architecture == "course" and self.hidden_size % 8:
            raise ValueError("hidden_size must be a positive multiple of 8 for architecture 'course' (GroupNorm uses 8 "
                             f"groups), got {self.hidden_size!r}")
        for name in ("warmup_steps", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("flip", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.batch_size % self.gpus:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by gpus ({self.gpus}): each process "
                             "trains on an equal share of the global batch")
        _check_positive("lr", self.lr)
        if not (0.0 < self.beta1 < self.beta2 < 1.0):
            raise ValueError(f"beta1 and beta2 must satisfy 0 < beta1 < beta2 < 1, got {self.beta1!r}, {self.beta2!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.grad_clip is not None:
            _check_positive("grad_clip", self.grad_clip)
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

    def fingerprint(self) -> str:
        """A hash of everything that changes what training computes."""
        relevant = {k: v for k, v in self.to_dict().items() if k not in EXECUTION_ONLY}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as `download` will prepare it, known before any job runs: the same names as its info.json."""

    name: str
    num_images: int
    channels: int
    image_size: int
    path: str | None = None  # folder only
    files: tuple[Path, ...] = ()  # folder only: its image files, sorted

    def to_dict(self) -> dict:
        """The dataset section of a resolved config: the real image shape, and the folder's path."""
        values = {"name": self.name, "channels": self.channels, "image_size": self.image_size}
        return values if self.path is None else {**values, "path": self.path}

    def files_digest(self) -> str:
        """A hash of the folder's (relative path, size, mtime_ns) list: it changes when a file is added,
        removed, renamed or rewritten; empty for the built-in datasets."""
        if not self.files:
            return ""
        listing = [(str(f.relative_to(self.path)), f.stat().st_size, f.stat().st_mtime_ns) for f in self.files]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def check_dataset(name: str, path: str | Path | None = None, image_size: int | None = None,
                  channels: int | None = None) -> DatasetInfo:
    """Refuse a dataset config that cannot be prepared, or that gives fields which do not apply to it, before
    any work starts; returns what it will be (reading only the folder images' headers)."""
    from PIL import Image

    if name not in DATASETS:
        raise ValueError(f"dataset.name must be one of {DATASETS}, got {name!r}")
    if name != "folder":
        num_images, real_channels, real_size = BUILTIN_DATASETS[name]
        given = [key for key, value in zip(FOLDER_ONLY, (path, image_size, channels)) if value is not None]
        if given:
            raise ValueError(f"dataset.{given[0]} applies only to dataset 'folder'; {name} is always "
                             f"{num_images} images of {real_channels}x{real_size}x{real_size}: remove {', '.join(given)}")
        return DatasetInfo(name, num_images, real_channels, real_size)
    if path is None or not Path(path).is_dir():
        raise ValueError(f"dataset.path must be an existing folder of images, got {str(path)!r}")
    if image_size is None:
        raise ValueError("dataset.image_size is required for dataset 'folder'")
    channels = 3 if channels is None else channels
    if channels not in (1, 3):
        raise ValueError(f"dataset.channels must be 1 or 3, got {channels!r}")
    files = sorted(p for p in Path(path).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"dataset.path {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    first_size = None
    for file in files:
        with Image.open(file) as image:
            first_size = first_size or (image.size, file)
            if image.size != first_size[0]:
                raise ValueError(
                    f"dataset.path {str(path)!r} mixes image sizes: {first_size[1].name} is "
                    f"{first_size[0][0]}x{first_size[0][1]} but {file.name} is {image.size[0]}x{image.size[1]}"
                )
    return DatasetInfo(name, len(files), channels, image_size, str(path), tuple(files))


def check_evaluation(dataset: DatasetInfo, evaluation: dict) -> None:
    """The classifier extractor learns from labels, which a folder of images does not have; the reference
    statistics cannot use more images than the dataset holds."""
    if evaluation.get("extractor") == "classifier" and dataset.name == "folder":
        raise ValueError("evaluation.extractor 'classifier' needs a labelled dataset (digits, cifar10); "
                         "use 'inception' for dataset 'folder'")
    num_reference = evaluation.get("num_reference")
    if num_reference is not None and num_reference > dataset.num_images:
        raise ValueError(f"evaluation.num_reference ({num_reference}) is larger than the dataset ({dataset.name}, "
                         f"{dataset.num_images} images): use 2..{dataset.num_images}, or null for all of them")


def check_sampling(sampling: dict, experiments: dict[str, TrainConfig]) -> None:
    """DDIM runs on a subsequence of each experiment's timesteps (Song et al. 2021), so at most T of them."""
    if sampling["sampler"] != "ddim":
        return
    for name, config in experiments.items():
        if sampling["ddim_steps"] > config.num_timesteps:
            raise ValueError(
                f"sampling.ddim_steps ({sampling['ddim_steps']}) is larger than the num_timesteps ({config.num_timesteps}) "
                f"of experiment {name!r}: DDIM takes 1..num_timesteps steps, so use at most "
                f"{min(c.num_timesteps for c in experiments.values())}, or sampler: ancestral"
            )


def sample_settings(sampling: dict, epoch: int, last_epoch: int) -> dict:
    """What changes the samples of one epoch (not grid_size; ddim_steps and ddim_eta only for DDIM), in a fixed key
    order: the sample jobs' params, so that changing anything else reruns none of them. `num_samples` is
    `num_samples_early` before the last sample epoch, when that is set."""
    changes_samples = ["batch_size", "num_samples", "sampler", "seed"]  # batches draw in turn from one generator
    if sampling["sampler"] == "ddim":
        changes_samples += ["ddim_steps", "ddim_eta"]
    settings = {key: sampling[key] for key in sorted(changes_samples)}
    if epoch < last_epoch and sampling.get("num_samples_early") is not None:
        settings["num_samples"] = sampling["num_samples_early"]
    return settings


def check_tensorboard(enabled: bool) -> None:
    """`tensorboard: true` needs the tensorboard package, which is an optional extra."""
    import importlib.util

    if enabled and importlib.util.find_spec("tensorboard") is None:
        raise ValueError('tensorboard: true needs the tensorboard package: pip install -e ".[tensorboard]" '
                         "(or set tensorboard: false)")


def check_gpus(gpus: dict[str, int], available: int | None) -> None:
    """Refuse an experiment whose training job asks for more GPUs than the run may use (`--resources gpu=N`):
    Snakemake would shrink the request to N while torchrun still started one process per configured GPU."""
    if available is None:
        return
    for name, count in gpus.items():
        if count > available:
            raise ValueError(f"experiment {name!r} trains on gpus: {count} but --resources gpu={available} lets a "
                             f"job use {available}: give --resources gpu={count} (or more), or set its gpus to "
                             f"at most {available}")


def check_experiment_name(name: str) -> str:
    """Experiment names become paths: letters, digits, '_', '-', '.' only, no leading dot."""
    if not isinstance(name, str) or not EXPERIMENT_NAME.match(name) or ".." in name:
        raise ValueError(
            f"experiment name {name!r} is not allowed: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (no spaces, path separators, '..' or shell characters)"
        )
    return name


def check_ddpm_unet(hidden_size, image_size, channel_mult, num_res_blocks, attention_resolutions, dropout) -> None:
    """Refuse a DDPM UNet (Ho et al. 2020, Appendix B) that cannot be built, naming the field and what is allowed.

    Level i of the network works at resolution image_size / 2**i with hidden_size * channel_mult[i] channels.
    """

    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not is_int(hidden_size) or hidden_size <= 0 or hidden_size % 32:
        raise ValueError("hidden_size must be a positive multiple of 32 (GroupNorm uses 32 groups on every width "
                         f"hidden_size * channel_mult[i]), got {hidden_size!r}")
    _check_int("image_size", image_size, minimum=4)
    if not isinstance(channel_mult, (list, tuple)) or not channel_mult or \
            not all(is_int(m) and m >= 1 for m in channel_mult):
        raise ValueError("channel_mult must be a non-empty list of positive integers (one width multiplier per "
                         f"resolution), got {channel_mult!r}")
    levels = len(channel_mult)
    if image_size / 2 ** (levels - 1) < 4:
        raise ValueError(f"channel_mult has {levels} levels, which would downsample image_size {image_size} "
                         f"below 4x4; image_size {image_size} allows at most {(image_size // 4).bit_length()} levels")
    if image_size % 2 ** (levels - 1):
        raise ValueError(f"image_size must be divisible by 2**(len(channel_mult) - 1) = {2 ** (levels - 1)} so "
                         f"that every downsampling halves it exactly, got {image_size!r}")
    resolutions = [image_size // 2**i for i in range(levels)]
    if not isinstance(attention_resolutions, (list, tuple)) or \
            not all(is_int(r) and r in resolutions for r in attention_resolutions):
        raise ValueError(f"attention_resolutions must be a list of resolutions the network reaches, from "
                         f"{resolutions}, got {attention_resolutions!r}")
    _check_int("num_res_blocks", num_res_blocks, minimum=1)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_int(name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def experiment_configs(workflow_config: dict, dataset: DatasetInfo) -> dict[str, TrainConfig]:
    """One TrainConfig per experiment: `defaults`, then the experiment's overrides, checkpointing
    at every `sample_epochs` entry, checked against the dataset. Raises ValueError naming the experiment and the field."""
    sample_epochs = workflow_config["sample_epochs"]
    experiments = {}
    for name, overrides in workflow_config["experiments"].items():
        check_experiment_name(name)
        values = {**workflow_config.get("defaults", {}), **(overrides or {})}
        epochs = values.get("epochs", TrainConfig.epochs)
        beyond = [e for e in sample_epochs if isinstance(epochs, int) and e > epochs]
        if beyond:
            raise ValueError(f"experiment {name!r}: sample_epochs {beyond} are beyond its epochs ({epochs})")
        try:
            config = TrainConfig.from_dict({**values, "checkpoint_epochs": list(sample_epochs)})
            _check_against_dataset(config, dataset)
        except (TypeError, ValueError) as error:
            raise ValueError(f"experiment {name!r}: {error}") from None
        experiments[name] = config
    return experiments


def _check_against_dataset(config: TrainConfig, dataset: DatasetInfo) -> None:
    if config.batch_size > dataset.num_images:
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the dataset ({dataset.name}, "
                         f"{dataset.num_images} images): use 1..{dataset.num_images}")
    if config.architecture == "ddpm":
        check_ddpm_unet(config.hidden_size, dataset.image_size, config.channel_mult, config.num_res_blocks,
                        config.attention_resolutions, config.dropout)


def yaml_config_overrides(entries: list[str]) -> dict:
    """The `--config KEY=VALUE` entries whose VALUE is a YAML list, mapping or boolean, read with YAML's types
    (Snakemake reads list items as strings, `sample_epochs=[10]` giving ['10'], and `true` as a string)."""
    overrides = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, (list, dict, bool)):
            overrides[key] = parsed
    return overrides


def differing_fields(configs: dict[str, TrainConfig]) -> list[str]:
    """The fields whose values are not the same in every config (what the experiments compare)."""
    dicts = [c.to_dict() for c in configs.values()]
    return [k for k in dicts[0] if any(d[k] != dicts[0][k] for d in dicts[1:])] if dicts else []


def experiment_labels(configs: dict[str, TrainConfig]) -> dict[str, str]:
    """'name (lr=0.002, optimizer=adam)': each experiment's name and the values that set it apart (the paper
    UNet's fields only for experiments that use it)."""
    differing = differing_fields(configs)
    labels = {}
    for name, config in configs.items():
        shown = [k for k in differing if config.architecture == "ddpm" or k not in DDPM_UNET_FIELDS]
        values = ", ".join(f"{k}={getattr(config, k)}" for k in shown)
        labels[name] = f"{name} ({values})" if values else name
    return labels


@dataclass(frozen=True)
class Run:
    """One experiment (after sweep expansion) at one seed: one train job, and its folder results/<name>/."""

    name: str
    experiment: str  # the configured experiment's name and its swept values, e.g. "base.lr-0.0001"
    parent: str  # the name under `experiments:` it was expanded from
    seed: int
    swept: dict  # sweep field -> this run's value; {} without a sweep
    config: TrainConfig


def sweep_fields() -> list[str]:
    """The experiment fields a sweep may vary: every TrainConfig field but the seed (`seeds:` lists those) and the
    checkpoint epochs (`sample_epochs:` sets those)."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("seed", "checkpoint_epochs")]


def check_sweep(sweep: dict) -> None:
    """Each sweep field is an experiment field with a non-empty list of distinct values."""
    allowed = sweep_fields()
    for name, values in sweep.items():
        if name == "seed":
            raise ValueError("sweep.seed: list the seeds under `seeds:` (top level) instead of sweeping `seed`")
        if name not in allowed:
            raise ValueError(f"sweep field {name!r} is not an experiment field; allowed: {allowed}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep.{name} must be a non-empty list of values, got {values!r}")
        parts = [_name_part(value) for value in values]
        repeated = sorted({part for part in parts if parts.count(part) > 1})
        if repeated:
            raise ValueError(f"sweep.{name} lists {', '.join(repeated)} more than once")


def check_seeds(seeds: list) -> None:
    """`seeds` is a non-empty list of distinct integers >= 0."""
    if not isinstance(seeds, list) or not seeds:
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    for seed in seeds:
        _check_int("each of seeds", seed, minimum=0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds lists a seed more than once: {seeds}")


def expand_runs(workflow_config: dict, dataset: DatasetInfo) -> dict[str, Run]:
    """Every experiment crossed with every combination of the `sweep` values, at every seed of `seeds`.

    A run's name is its experiment's, then `.<field>-<value>` for each swept field (in the order of `sweep`), then
    `.seed-<s>` when `seeds` is given. With neither, each run is one experiment, keeps its name and its `seed`:
    the layout of a plain config. Each combination is checked as an experiment of its own (`experiment_configs`,
    against the `dataset`); a name that would stand for two things, or that the workflow uses in results/, is
    refused. Raises ValueError naming the field, value or name.
    """
    sweep = workflow_config.get("sweep") or {}
    seeds = workflow_config.get("seeds")
    check_sweep(sweep)
    if seeds is not None:
        check_seeds(seeds)
    combinations = [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())]
    runs, owners = {}, {}
    for parent, overrides in workflow_config["experiments"].items():
        _claim(owners, check_experiment_name(parent), f"experiment {parent!r}")
        for swept in combinations:
            experiment = parent + "".join(f".{name}-{_name_part(value)}" for name, value in swept.items())
            described = f"experiment {parent!r}" + (f" with {_describe(swept)}" if swept else "")
            config = _swept_config(workflow_config, dataset, parent, {**(overrides or {}), **swept}, swept)
            _claim(owners, experiment, described)
            for seed in [config.seed] if seeds is None else seeds:
                name = experiment if seeds is None else f"{experiment}.seed-{seed}"
                _claim(owners, name, described if seeds is None else f"{described} at seed {seed}")
                if name in RESULTS_ENTRIES:
                    raise ValueError(f"run name {name!r} is taken by the workflow's results/{name}: rename experiment "
                                     f"{parent!r} (names in use: {', '.join(RESULTS_ENTRIES)})")
                runs[name] = Run(name, experiment, parent, seed, swept, dataclasses.replace(config, seed=seed))
    return runs


def experiment_runs(runs: dict[str, Run]) -> dict[str, list[Run]]:
    """Each experiment's runs, in the order of `seeds`."""
    grouped = {}
    for run in runs.values():
        grouped.setdefault(run.experiment, []).append(run)
    return grouped


def _swept_config(workflow_config: dict, dataset: DatasetInfo, parent: str, values: dict, swept: dict) -> TrainConfig:
    """One experiment with its swept values, checked like any configured experiment."""
    try:
        return experiment_configs({**workflow_config, "experiments": {parent: values}}, dataset)[parent]
    except ValueError as error:
        if not swept:
            raise
        raise ValueError(f"sweep {_describe(swept)}: {error}") from None


def _name_part(value) -> str:
    """A swept value as it appears in a run name, safe in a path: YAML's spelling without an exponent's '+'
    (1e-05, 1e20, true, null), a list's items joined by '_'."""
    if isinstance(value, list):
        return "_".join(map(_name_part, value))
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value).replace("+", "")


def _describe(swept: dict) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in swept.items())


def _claim(owners: dict[str, str], name: str, owner: str) -> None:
    """Record that `name` stands for `owner`; refuse a name that would stand for two things."""
    if owners.setdefault(name, owner) != owner:
        raise ValueError(f"the name {name!r} would stand for both {owners[name]} and {owner}: rename an experiment")
