"""The workflow's half of the config: checks that need the dataset or the sampling and evaluation sections, and
the expansion of experiments x sweep x seeds into runs, with the labels the plots give them. No torch, so that
the Snakefile loads in a second.
"""

import dataclasses
import itertools
import json
import re
from collections.abc import Collection
from dataclasses import dataclass

import yaml

from ddpm.checks import METRIC_ROW_FIELDS, check_choice, check_ddpm_unet, check_int
from ddpm.config import TrainConfig
from ddpm.dataset_info import DatasetInfo, check_dataset
from ddpm.samplers import SAMPLERS, samplers_taking

EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TEXT_TO_YAML_1_1 = re.compile(r"^[-+]?\d+[eE][-+]?\d+$")  # 1e-3: a number in YAML 1.2, text to PyYAML (YAML 1.1)
RENAMED_FIELDS = {"sampling": {"ddim_steps": "steps", "ddim_eta": "eta"}}  # section -> {old name: new name}
SWITCHABLE_SECTIONS = ("seeds", "sweep", "sampling_sweep")  # null in the config: one run per experiment at its own seed, no sweep
# what the workflow keeps in results/ beside the run folders: no run may take one of these names
RESULTS_ENTRIES = ("benchmarks", "logs", "plots", "reference", "resume", "losses.csv", "metrics.csv", "summary.csv",
                   "summary.html", "report.html")


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


def check_sampling(sampling: dict, runs: dict[str, "Run"], variants: dict[str, "SamplingVariant"]) -> None:
    """Fewer early samples than last ones; then each run's sampling (the section, its experiment's own `sampling`,
    each variant of `sampling_sweep`) as `check_run_sampling` checks it. Raises ValueError naming the experiment and
    the variant."""
    early = sampling.get("num_samples_early")
    if early is not None and early > sampling["num_samples"]:
        raise ValueError(f"sampling.num_samples_early ({early}) is larger than sampling.num_samples "
                         f"({sampling['num_samples']}): it is the smaller count for the epochs before the last")
    for run in runs.values():
        for variant in variants.values():
            try:
                check_run_sampling(variant.applied_to(run.sampling), run, runs)
            except ValueError as error:
                swept = f" with sampling_sweep {_describe(variant.values)}" if variant.values else ""
                raise ValueError(f"experiment {run.experiment!r}{swept}: {error}") from None


def check_run_sampling(sampling: dict, run: "Run", runs: dict[str, "Run"]) -> None:
    """What one run is sampled with: a known sampler given only the fields it takes (ddpm.samplers.SAMPLERS), at
    most the run's T steps (DDIM and DPM-Solver evaluate the network at a subsequence of its timesteps); guidance
    `cfg` only for a class-conditional experiment; guidance `auto` with a guide that can be combined with it.
    Guidance `none` leaves guidance_scale unused, so that a sampling sweep over it keeps unguided experiments
    beside guided ones as their baseline; `guide` is used by guidance `auto` alone."""
    check_choice("sampling.sampler", sampling["sampler"], list(SAMPLERS))
    sampler = SAMPLERS[sampling["sampler"]]
    if "eta" not in sampler.arguments and sampling["eta"]:
        raise ValueError(f"sampling.eta ({sampling['eta']}) applies to the samplers "
                         f"{samplers_taking('eta')} only, not {sampling['sampler']!r}: remove it or set it to 0")
    if "steps" in sampler.arguments and sampling["steps"] > run.config.num_timesteps:
        raise ValueError(f"sampling.steps ({sampling['steps']}) is larger than its num_timesteps "
                         f"({run.config.num_timesteps}): sampler {sampling['sampler']} takes 1..num_timesteps steps")
    if "steps" not in sampler.arguments and sampling["timestep_spacing"] != "auto":
        raise ValueError(f"sampling.timestep_spacing ({sampling['timestep_spacing']}) applies to the samplers "
                         f"{samplers_taking('steps')}; sampler {sampling['sampler']} visits every timestep")
    guidance = sampling["guidance"]
    if guidance == "cfg" and not run.config.class_conditional:
        raise ValueError("sampling.guidance cfg (classifier-free guidance) needs a class-conditional experiment: "
                         "set class_conditional: true, or guidance none or auto")
    if guidance == "auto":
        guide_run(sampling, run, runs)


def guide_run(sampling: dict, run: "Run", runs: dict[str, "Run"]) -> "Run":
    """The run whose checkpoint guides `run` under guidance `auto`: `sampling.guide.experiment` (by default the
    run's own) at the run's seed, which must be checkpointed at `guide.epoch` and share the run's diffusion (schedule,
    T, betas, prediction target) and conditioning, so that the two predictions can be combined (Karras et al. 2024,
    eq. 2)."""
    guide = sampling.get("guide")
    if guide is None:
        raise ValueError("sampling.guidance auto needs sampling.guide: {experiment: NAME, epoch: E} (the experiment "
                         "defaults to the one sampled)")
    experiment = guide.get("experiment", run.experiment)
    candidates = [r for r in runs.values() if r.experiment == experiment]
    if not candidates:
        names = sorted({r.experiment for r in runs.values()})
        raise ValueError(f"sampling.guide.experiment {experiment!r} is not an experiment; experiments: "
                         f"{', '.join(names)}")
    same_seed = [r for r in candidates if r.seed == run.seed]
    guiding = same_seed[0] if same_seed else candidates[0] if len(candidates) == 1 else None
    if guiding is None:
        raise ValueError(f"sampling.guide.experiment {experiment!r} has no run at seed {run.seed}")
    if guide["epoch"] not in guiding.config.checkpoint_epochs:
        raise ValueError(f"sampling.guide.epoch ({guide['epoch']}) is not an epoch at which {experiment!r} is "
                         f"checkpointed: use one of {guiding.config.checkpoint_epochs}")
    for field in ("schedule", "num_timesteps", "prediction", "class_conditional",
                  *(("beta1", "beta2") if run.config.schedule == "linear" else ())):
        if getattr(guiding.config, field) != getattr(run.config, field):
            raise ValueError(f"sampling.guide: {experiment!r} has {field} {getattr(guiding.config, field)!r} and "
                             f"{run.experiment!r} {getattr(run.config, field)!r}; a guide must share the diffusion "
                             f"to be combined with it")
    return guiding


def check_renamed_fields(workflow_config: dict) -> None:
    """Refuse a field under its old name, naming the new one (before the schema refuses it as unknown)."""
    for section, renamed in RENAMED_FIELDS.items():
        for old, new in renamed.items():
            if old in (workflow_config.get(section) or {}):
                raise ValueError(f"{section}.{old} is now {section}.{new} (it applies to every sampler that takes it): "
                                 f"rename it")


def sample_settings(sampling: dict, epoch: int, last_epoch: int, draw: int = 0, kept: Collection[int] = ()) -> dict:
    """What changes the samples of one draw at one epoch (not grid_size or the number of draws; the arguments only
    of the sampler that takes them; the timestep spacing and guidance only where they are set), in a fixed key
    order: the sample jobs' params, so that changing anything else reruns none of them. `num_samples` is
    `num_samples_early` before the run's last epoch, when that is set, but at the epochs `kept` (drawn with
    num_samples already: ddpm.reruns.kept_in_full); draw d uses the sampling seed `seed` + d."""
    changes_samples = ["batch_size", "num_samples", "sampler", "seed", *SAMPLERS[sampling["sampler"]].arguments]
    if sampling.get("timestep_spacing", "auto") != "auto":
        changes_samples.append("timestep_spacing")
    if sampling.get("guidance", "none") != "none":
        changes_samples += ["guidance", "guidance_scale", *(["guide"] if sampling["guidance"] == "auto" else [])]
    settings = {key: sampling[key] for key in sorted(changes_samples)}
    settings["seed"] += draw
    if epoch < last_epoch and epoch not in kept and sampling.get("num_samples_early") is not None:
        settings["num_samples"] = sampling["num_samples_early"]
    return settings


def draw_suffixes(sampling: dict) -> list[str]:
    """The endings of the sample files' names of one epoch, one per draw: epoch_<E>.npy holds the first draw (the
    grid's), epoch_<E>_draw<d>.npy draw d."""
    return [""] + [f"_draw{d}" for d in range(1, sampling["draws"])]


def draw_index(suffix: str) -> int:
    """The draw of a sample file's name ending (draw_suffixes' inverse)."""
    return int(suffix.removeprefix("_draw") or 0)


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


def experiment_configs(workflow_config: dict, dataset: DatasetInfo) -> dict[str, TrainConfig]:
    """One TrainConfig per experiment: `defaults`, then the experiment's overrides, checkpointing at every
    `sample_epochs` entry and at its last epoch, checked against the dataset. Raises ValueError naming the experiment
    and the field."""
    sample_epochs = workflow_config["sample_epochs"]
    experiments = {}
    for name, overrides in workflow_config["experiments"].items():
        check_experiment_name(name)
        if "sampling" in workflow_config.get("defaults", {}):
            raise ValueError("defaults.sampling: set the sampling of every experiment in the top-level sampling "
                             "section; an experiment's own `sampling` overrides it")
        values = {**workflow_config.get("defaults", {}), **(overrides or {})}
        values.pop("sampling", None)
        epochs = values.get("epochs", TrainConfig.epochs)
        beyond = [e for e in sample_epochs if isinstance(epochs, int) and e > epochs]
        if beyond:
            raise ValueError(f"experiment {name!r}: sample_epochs {beyond} are beyond its epochs ({epochs})")
        try:
            config = TrainConfig.from_dict({**values, "checkpoint_epochs": [*sample_epochs, epochs]})
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


def check_numbers_read_as_text(workflow_config: dict) -> None:
    """Refuse a number that PyYAML read as text (`lr: 1e-3`: YAML 1.1 wants a dot, 1.0e-3), naming where it is,
    before the schema refuses it as a string without saying why."""

    def check(value, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                check(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list):
            for item in value:
                check(item, where)
        elif isinstance(value, str) and TEXT_TO_YAML_1_1.match(value):
            mantissa, exponent = value.lower().split("e")
            raise ValueError(f"{where} is {value!r}, which YAML reads as text, not a number: write {mantissa}.0e{exponent}")

    check({key: value for key, value in workflow_config.items() if key != "dataset"}, "")


def yaml_config_overrides(entries: list[str]) -> dict:
    """The `--config KEY=VALUE` entries whose VALUE is a YAML list, mapping or boolean, read with YAML's types
    (Snakemake reads list items as strings, `sample_epochs=[10]` giving ['10'], and `true` as a string). `seeds`
    and `sweep` given as null, [] or {} are switched off: None, which replaces the config file's section where a
    mapping would be merged into it."""
    overrides = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        parsed = yaml.safe_load(value)
        if key in SWITCHABLE_SECTIONS and parsed in (None, [], {}):
            overrides[key] = None
        elif isinstance(parsed, (list, dict, bool)):
            overrides[key] = parsed
    return overrides


def differing_fields(configs: dict[str, TrainConfig]) -> list[str]:
    """The fields whose values are not the same in every config (what the experiments compare)."""
    dicts = [c.to_dict() for c in configs.values()]
    return [k for k in dicts[0] if any(d[k] != dicts[0][k] for d in dicts[1:])] if dicts else []


def loss_objective(config: TrainConfig) -> str:
    """What a run's training loss measures: the MSE on its prediction target, and its weighting. Losses of
    different objectives are not comparable."""
    target = {"eps": "the noise", "v": "v", "x0": "x_0"}[config.prediction]
    weights = "" if config.loss_weighting == "uniform" else f", Min-SNR-{config.min_snr_gamma:g} weights"
    return f"MSE on {target}{weights}"


def experiment_labels(configs: dict[str, TrainConfig]) -> dict[str, str]:
    """'name (lr=0.002, optimizer=adam)': each experiment's name and the values that set it apart, each where it
    applies (the paper UNet's fields for experiments that use it, beta1 and beta2 for the linear schedule, ...)."""
    differing = differing_fields(configs)
    labels = {}
    for name, config in configs.items():
        shown = [k for k in differing if config.applies(k)]
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
    sampling: dict  # the sampling section with its experiment's own `sampling` over it


@dataclass(frozen=True)
class SamplingVariant:
    """One combination of the `sampling_sweep` values, sampled and scored on every run's checkpoints. Its `name`
    ends the sample and metric files' epoch part (epoch_<E><name>.npy): '' without a sweep, else
    `.<field>-<value>` for each swept field, as a training sweep names its runs."""

    name: str
    values: dict  # sampling field -> its value in this variant

    def applied_to(self, sampling: dict) -> dict:
        return {**sampling, **self.values}

    def columns(self) -> dict:
        """The variant's values as metric-row columns: each field's name, `sampling_<field>` where the row has a
        column of that name already (`sampling_seed` beside the training `seed`)."""
        return {f"sampling_{field}" if field in METRIC_ROW_FIELDS else field: value for field, value in self.values.items()}


def sampling_variants(workflow_config: dict) -> dict[str, SamplingVariant]:
    """Every combination of the `sampling_sweep` values (one variant, '', without it), by name."""
    sweep = workflow_config.get("sampling_sweep") or {}
    variants = [SamplingVariant("".join(f".{field}-{_name_part(value)}" for field, value in zip(sweep, values)),
                                dict(zip(sweep, values))) for values in itertools.product(*sweep.values())]
    return {variant.name: variant for variant in variants}


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
        check_int("each of seeds", seed, minimum=0)
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
                runs[name] = Run(name, experiment, parent, seed, swept, dataclasses.replace(config, seed=seed),
                                 {**workflow_config.get("sampling", {}), **(overrides or {}).get("sampling", {})})
    return runs


def identical_runs(runs: dict[str, Run]) -> list[list[str]]:
    """The groups of runs with the same training identity (seed included): each group trains one model again and
    again, and the summary can only find them tied."""
    groups = {}
    for name, run in runs.items():
        groups.setdefault(json.dumps(run.config.training_identity(), sort_keys=True), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


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


def run_config(workflow_config: dict, run: str) -> TrainConfig:
    """The whole TrainConfig of one run, expanded from the workflow's config as the Snakefile expands it: what a
    train job runs with, where its params hold only the training identity (so that changing a field that cannot
    change the run reruns nothing)."""
    return expand_runs(workflow_config, check_dataset(**workflow_config["dataset"]))[run].config
