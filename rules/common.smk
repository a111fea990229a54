# What every stage uses, derived once from the validated config by ddpm.experiments (which checks what the schema
# cannot: the dataset, the sampling and evaluation sections, the experiments, sweep and seeds):
#   DATASET, DATA          the dataset as it will be prepared (ddpm.dataset_info.DatasetInfo), and its folder
#   RUNS, EXPERIMENT_RUNS  run name -> ddpm.experiments.Run; experiment -> its runs, in the order of `seeds`
#   EXPERIMENTS, LABELS    experiment -> its TrainConfig (at its first seed); -> its label in the plots
#   SWEEP, SAMPLE_EPOCHS   the config's sweep ({} without one); its sample epochs, sorted
#   GPUS                   experiment -> the GPUs its training job asks for
#   RECORDED               run -> the TrainConfig it last trained with, None if it has not finished
#   checkpoint_to_sample   the sample jobs' input: ancient where a run only trains on from where it finished


import re
from pathlib import Path

from ddpm.dataset_info import check_dataset
from ddpm.experiments import (
    check_evaluation,
    check_gpus,
    check_sampling,
    check_tensorboard,
    epoch_changes,
    expand_runs,
    experiment_labels,
    experiment_runs,
    identical_runs,
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
check_sampling(config["sampling"], EXPERIMENTS)
check_tensorboard(config["tensorboard"])
DATA = f"data/{DATASET.name}"
SAMPLE_EPOCHS = sorted(config["sample_epochs"])
LABELS = experiment_labels(EXPERIMENTS)
# GPUs a training job asks for: the experiment's `gpus` unless it is pinned to the CPU
GPUS = {name: 0 if c.device == "cpu" else c.gpus for name, c in EXPERIMENTS.items()}
# the config each run last trained with, where it finished (results/<run>/config.yaml), read once
RECORDED = recorded_configs(RUNS, Path("results"))
# (a cluster job's own snakemake is given --resources for that one job)
if workflow.is_main_process:
    check_gpus(GPUS, workflow.global_resources.get("gpu").value)
    for message in epoch_changes(RUNS, RECORDED) + resume_notes(RUNS, RECORDED, Path("results/resume")):
        logger.info(message)
    for names in identical_runs(RUNS):
        logger.warning(
            f"warning: runs {', '.join(names)} have the same training config and seed: they train the "
            "same model, and the summary will find them tied"
        )


wildcard_constraints:
    run="|".join(re.escape(name) for name in RUNS),
    epoch="|".join(str(epoch) for epoch in SAMPLE_EPOCHS),


def checkpoint_to_sample(wildcards):
    """A run that only goes on from where it finished rewrites its checkpoints so far bit for bit: ancient() keeps
    that from sampling them again. A run trained differently samples them again."""
    path = f"results/{wildcards.run}/checkpoints/epoch_{wildcards.epoch}.pt"
    return ancient(path) if trains_on(RECORDED[wildcards.run], RUNS[wildcards.run].config) else path
