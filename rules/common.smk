# What every stage uses, derived once from the validated config by ddpm.experiments (which checks what the schema
# cannot: the dataset, the sampling and evaluation sections, the experiments, sweep and seeds):
#   DATASET, DATA          the dataset as it will be prepared (ddpm.dataset_info.DatasetInfo), and its folder
#   RUNS, EXPERIMENT_RUNS  run name -> ddpm.experiments.Run; experiment -> its runs, in the order of `seeds`
#   EXPERIMENTS, LABELS    experiment -> its TrainConfig (at its first seed); -> its label in the plots
#   SWEEP, SAMPLE_EPOCHS   the config's sweep ({} without one); its sample epochs, sorted
#   SAMPLING_SWEEP         the config's sampling_sweep ({} without one)
#   VARIANTS               variant name -> ddpm.experiments.SamplingVariant: each combination of sampling_sweep's
#                          values ('' alone without one), sampled and scored on every run's checkpoints
#   CONDITIONAL_RUNS       the runs of class-conditional experiments: their sample jobs also write the labels
#   RUN_EPOCHS             run -> the epochs it is checkpointed, sampled and scored at: the sample epochs, its last
#   DRAWN, KEPT_IN_FULL    run -> epoch -> samples per draw on disk; -> the epochs before its last drawn with
#                          num_samples, which keep that count (ddpm.reruns)
#   GPUS                   experiment -> the GPUs its training job asks for
#   RECORDED               run -> the TrainConfig it last trained with, None if it has not finished
#   UNLISTED_LAST_EPOCHS   the runs' last epochs that are not sample epochs
#   last_checkpoint_of     a run's checkpoints/last.pt, as its last epoch's checkpoint
#   sampling_of            a sample job's settings (its params)
#   same_samples_of        an earlier sampling variant's samples that a sample job draws again, to be copied
#   checkpoint_to_sample   the sample jobs' input: ancient where a run only trains on from where it finished
#   guide_of               a sample job's guiding checkpoint under guidance auto ({} otherwise)
#   one_of                 a wildcard constraint that matches exactly the given names
#   init_from_of           a train job's init_from files ({} without one)
#   evaluation_inputs      an evaluate job's classifier and, for a class-conditional run, its samples' labels
#                          (with EXTRACTOR_INPUTS and EVAL_CLASSIFIER of rules/evaluate.smk)


import re
from pathlib import Path

from ddpm.config import check_init_from, init_from_files
from ddpm.dataset_info import check_class_conditional, check_dataset
from ddpm.experiments import (
    check_evaluation,
    check_gpus,
    check_sampling,
    check_tensorboard,
    draw_index,
    draw_suffixes,
    expand_runs,
    experiment_labels,
    experiment_runs,
    guide_run,
    identical_runs,
    sample_settings,
    sampling_variants,
)
from ddpm.reruns import (
    drawn_counts,
    epoch_changes,
    kept_in_full,
    last_epoch_notes,
    recorded_configs,
    resume_notes,
    trains_on,
)
from snakemake.logging import logger

DATASET = check_dataset(**config["dataset"])
check_evaluation(DATASET, config["evaluation"])
# a run is one experiment (after sweep expansion) at one seed: results/<run>/
RUNS = expand_runs(config, DATASET)
EXPERIMENT_RUNS = experiment_runs(RUNS)
EXPERIMENTS = {name: runs[0].config for name, runs in EXPERIMENT_RUNS.items()}
SWEEP = config.get("sweep") or {}
for experiment, experiment_config in EXPERIMENTS.items():
    check_init_from(experiment, experiment_config.init_from)
    try:
        check_class_conditional(experiment_config, DATASET)
    except ValueError as error:
        raise ValueError(f"experiment {experiment!r}: {error}") from None
SAMPLING_SWEEP = config.get("sampling_sweep") or {}
VARIANTS = sampling_variants(config)
check_sampling(config["sampling"], RUNS, VARIANTS)
CONDITIONAL_RUNS = [name for name, run in RUNS.items() if run.config.class_conditional]
check_tensorboard(config["tensorboard"])
DATA = f"data/{DATASET.name}"
SAMPLE_EPOCHS = sorted(config["sample_epochs"])
RUN_EPOCHS = {name: run.config.checkpoint_epochs for name, run in RUNS.items()}
DRAWN = drawn_counts(RUNS, Path("results"), next(iter(VARIANTS)))
KEPT_IN_FULL = kept_in_full(RUNS, config["sampling"], DRAWN)
UNLISTED_LAST_EPOCHS = sorted(
    {run.config.epochs for run in RUNS.values()} - set(SAMPLE_EPOCHS)
)
LABELS = experiment_labels(EXPERIMENTS)
# GPUs a training job asks for: the experiment's `gpus` unless it is pinned to the CPU
GPUS = {name: 0 if c.device == "cpu" else c.gpus for name, c in EXPERIMENTS.items()}
# the config each run last trained with, where it finished (results/<run>/config.yaml), read once
RECORDED = recorded_configs(RUNS, Path("results"))
# (a cluster job's own snakemake is given --resources for that one job)
if workflow.is_main_process:
    check_gpus(GPUS, workflow.global_resources.get("gpu").value)
    for message in (
        last_epoch_notes(RUNS, SAMPLE_EPOCHS)
        + epoch_changes(RUNS, RECORDED, Path("results/resume"))
        + resume_notes(RUNS, RECORDED, Path("results/resume"))
    ):
        logger.info(message)
    for names in identical_runs(RUNS):
        logger.warning(
            f"warning: runs {', '.join(names)} have the same training config and seed: they train the "
            "same model, and the summary will find them tied"
        )


def one_of(names):
    """A wildcard constraint that matches exactly `names` (nothing when there are none; "(?:)" for the empty name
    alone, as Snakemake reads an empty constraint as none)."""
    names = list(names)
    return (
        "|".join(re.escape(str(name)) for name in names) or "(?:)" if names else "(?!)"
    )


wildcard_constraints:
    run=one_of(RUNS),
    epoch=one_of(sorted(set().union(*RUN_EPOCHS.values()))),
    variant=one_of(VARIANTS),
    draw=one_of(draw_suffixes(config["sampling"])),


def last_checkpoint_of(wildcards):
    """A run's checkpoints/last.pt, as the checkpoint of its last epoch (and of no other)."""
    run = RUNS[wildcards.run]
    if int(wildcards.epoch) != run.config.epochs:
        raise ValueError(
            f"run {run.name} keeps no checkpoint of epoch {wildcards.epoch}: its epochs are "
            f"sample_epochs {SAMPLE_EPOCHS} and its last, {run.config.epochs}"
        )
    return f"results/{run.name}/checkpoints/last.pt"


def sampling_of(wildcards):
    """What one sample job draws (ddpm.experiments.sample_settings)."""
    return variant_sampling(wildcards.run, int(wildcards.epoch), wildcards.variant, wildcards.draw)


def variant_sampling(name, epoch, variant, draw):
    """What a run's sample job draws at an epoch, sampling variant and draw (ddpm.experiments.sample_settings)."""
    run = RUNS[name]
    sampling = VARIANTS[variant].applied_to(run.sampling)
    return sample_settings(
        sampling, epoch, run.config.epochs, draw_index(draw), KEPT_IN_FULL[name]
    )


def same_samples_of(wildcards):
    """{"same_as": the samples of the first sampling variant that draws exactly what this one draws for this run
    (it sweeps a field the run does not use, as guidance_scale without guidance), and "same_as_labels": their
    labels for a class-conditional run}: the sample job copies them. {} where this variant is the first."""
    epoch, settings = int(wildcards.epoch), sampling_of(wildcards)
    first = next(
        variant
        for variant in VARIANTS
        if variant_sampling(wildcards.run, epoch, variant, wildcards.draw) == settings
    )
    if first == wildcards.variant:
        return {}
    same_as = f"results/{wildcards.run}/samples/epoch_{epoch}{first}{wildcards.draw}"
    labels = {"same_as_labels": f"{same_as}_labels.npy"} if wildcards.run in CONDITIONAL_RUNS else {}
    return {"same_as": f"{same_as}.npy", **labels}


def checkpoint_of(run, epoch):
    """A run's checkpoint at an epoch, ancient where the run only trains on (see checkpoint_to_sample)."""
    path = f"results/{run}/checkpoints/epoch_{epoch}.pt"
    return ancient(path) if trains_on(RECORDED[run], RUNS[run].config) else path


def guide_of(wildcards):
    """{"guide": the guiding run's checkpoint} under guidance auto (ddpm.experiments.guide_run), else {}."""
    run = RUNS[wildcards.run]
    sampling = VARIANTS[wildcards.variant].applied_to(run.sampling)
    if sampling["guidance"] != "auto":
        return {}
    guiding = guide_run(sampling, run, RUNS)
    return {"guide": checkpoint_of(guiding.name, sampling["guide"]["epoch"])}


def checkpoint_to_sample(wildcards):
    """The epoch's checkpoint. A run that only goes on from where it finished rewrites its checkpoints so far bit for
    bit: ancient() keeps the samples drawn from them from being drawn again. Only those on disk with the count they
    are drawn with now: below a train job that reruns, Snakemake checks a job for nothing else, so the others must
    depend on the checkpoint to be drawn anew. A run trained differently samples them all again.
    """
    epoch = int(wildcards.epoch)
    path = f"results/{wildcards.run}/checkpoints/epoch_{epoch}.pt"
    kept = (
        trains_on(RECORDED[wildcards.run], RUNS[wildcards.run].config)
        and Path(
            f"results/{wildcards.run}/samples/epoch_{epoch}{wildcards.variant}{wildcards.draw}.npy"
        ).exists()
        and DRAWN[wildcards.run].get(epoch) == sampling_of(wildcards)["num_samples"]
    )
    return ancient(path) if kept else path


def init_from_of(wildcards):
    """The files a run's init_from reads (a checkpoint, or a diffusers folder's config and weights): changing them
    trains the run again."""
    init_from = RUNS[wildcards.run].config.init_from
    if init_from is None:
        return {}
    return {"init_from": [str(f) for f in init_from_files(init_from)]}


def evaluation_inputs(wildcards):
    """The extractor's classifier; for a class-conditional run, the classifier (which scores class_accuracy with
    any extractor) and the samples' labels, one file per draw."""
    if wildcards.run not in CONDITIONAL_RUNS:
        return EXTRACTOR_INPUTS
    labels = [
        f"results/{wildcards.run}/samples/epoch_{wildcards.epoch}{wildcards.variant}{draw}_labels.npy"
        for draw in draw_suffixes(config["sampling"])
    ]
    return {"classifier": EVAL_CLASSIFIER, "labels": labels}
