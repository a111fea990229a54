"""Train one DDPM per experiment, sample at chosen epochs, evaluate with FID, plot and report.

    snakemake --cores 1                                  # config/config.yaml: digits on the CPU
    snakemake --configfile config/cifar10.yaml --cores 8 --resources gpu=1
    snakemake --profile profiles/slurm --configfile config/cifar10.yaml
    snakemake --report results/report.html
"""

import os
import re
import sys

from snakemake.utils import min_version, update_config, validate

min_version("9.0")

# The scripts import the `ddpm` package that sits beside this Snakefile, also inside conda
# envs and cluster jobs, which receive PYTHONPATH through `envvars:`.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))
sys.path.insert(0, workflow.basedir)
from ddpm.config import (
    check_dataset,
    check_evaluation,
    check_gpus,
    check_sampling,
    experiment_configs,
    experiment_labels,
    sample_settings,
    yaml_config_overrides,
)


# the default config, unless --configfile names another; --config applies on top of either
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


update_config(config, yaml_config_overrides(workflow.config_settings.config_args))


envvars:
    "PYTHONPATH",


validate(config, "config/schema.yaml")
DATASET = check_dataset(**config["dataset"])
check_evaluation(DATASET, config["evaluation"])
EXPERIMENTS = experiment_configs(config, DATASET)
check_sampling(config["sampling"], EXPERIMENTS)
DATA = f"data/{DATASET.name}"
SAMPLE_EPOCHS = sorted(config["sample_epochs"])
LABELS = experiment_labels(EXPERIMENTS)
# GPUs a training job asks for: the experiment's `gpus` unless it is pinned to the CPU
GPUS = {name: 0 if c.device == "cpu" else c.gpus for name, c in EXPERIMENTS.items()}
# (a cluster job's own snakemake is given --resources for that one job)
if workflow.is_main_process:
    check_gpus(GPUS, workflow.global_resources.get("gpu").value)


wildcard_constraints:
    exp="|".join(re.escape(name) for name in EXPERIMENTS),
    epoch="|".join(str(epoch) for epoch in SAMPLE_EPOCHS),


report: "report/workflow.rst"


include: "rules/evaluate.smk"


rule all:
    input:
        "results/plots/loss.png",
        "results/plots/samples.png",
        "results/plots/fid.png",
        "results/metrics.csv",
        expand("results/{exp}/config.yaml", exp=EXPERIMENTS),


rule download:
    output:
        images=f"{DATA}/images.npy",
        info=f"{DATA}/info.json",
    params:
        # params in a fixed key order: reordering the YAML must not rerun anything
        dataset=dict(sorted(config["dataset"].items())),
        # a folder's file listing: adding, removing or changing an image prepares the data again
        files=DATASET.files_digest(),
    log:
        "results/logs/download.log",
    benchmark:
        "results/benchmarks/download.tsv"
    conda:
        "environment.yml"
    script:
        "scripts/download.py"


rule train:
    input:
        images=f"{DATA}/images.npy",
    output:
        losses="results/{exp}/losses.csv",
        checkpoints=expand("results/{{exp}}/checkpoints/epoch_{epoch}.pt", epoch=SAMPLE_EPOCHS),
        config="results/{exp}/config.yaml",
    params:
        config=lambda wildcards: EXPERIMENTS[wildcards.exp].to_dict(),
        dataset=DATASET.to_dict(),
        state_dir=lambda wildcards: f"results/resume/{wildcards.exp}",
    log:
        "results/logs/train/{exp}.log",
    benchmark:
        "results/benchmarks/train/{exp}.tsv"
    threads: 2
    resources:
        gpu=lambda wildcards: GPUS[wildcards.exp],
        mem_mb=8000,
        runtime=720,
    conda:
        "environment.yml"
    script:
        "scripts/train.py"


rule sample:
    input:
        checkpoint="results/{exp}/checkpoints/epoch_{epoch}.pt",
    output:
        array="results/{exp}/samples/epoch_{epoch}.npy",
    params:
        sampling=sample_settings(config["sampling"]),
        device=lambda wildcards: EXPERIMENTS[wildcards.exp].device,
    log:
        "results/logs/sample/{exp}/epoch_{epoch}.log",
    benchmark:
        "results/benchmarks/sample/{exp}/epoch_{epoch}.tsv"
    threads: 2
    resources:
        gpu=lambda wildcards: min(GPUS[wildcards.exp], 1),
        mem_mb=8000,
        runtime=240,
    conda:
        "environment.yml"
    script:
        "scripts/sample.py"


rule plot_grid:
    input:
        "results/{exp}/samples/epoch_{epoch}.npy",
    output:
        report(
            "results/{exp}/samples/epoch_{epoch}.png",
            caption="report/samples.rst",
            category="Samples",
            subcategory="{exp}",
            labels={"experiment": "{exp}", "epoch": "{epoch}"},
        ),
    params:
        grid_size=config["sampling"]["grid_size"],
    log:
        "results/logs/plot_grid/{exp}/epoch_{epoch}.log",
    conda:
        "environment.yml"
    script:
        "scripts/plot_grid.py"


rule aggregate_losses:
    input:
        expand("results/{exp}/losses.csv", exp=EXPERIMENTS),
    output:
        "results/losses.csv",
    params:
        experiments=list(EXPERIMENTS),
    log:
        "results/logs/aggregate_losses.log",
    conda:
        "environment.yml"
    script:
        "scripts/aggregate_losses.py"


rule plot_losses:
    input:
        "results/losses.csv",
    output:
        report("results/plots/loss.png", caption="report/loss.rst", category="Training"),
    params:
        labels=LABELS,
    log:
        "results/logs/plot_losses.log",
    conda:
        "environment.yml"
    script:
        "scripts/plot_losses.py"


rule plot_samples:
    input:
        expand("results/{exp}/samples/epoch_{epoch}.png", exp=EXPERIMENTS, epoch=SAMPLE_EPOCHS),
    output:
        report("results/plots/samples.png", caption="report/montage.rst", category="Samples"),
    params:
        experiments=list(EXPERIMENTS),
        epochs=SAMPLE_EPOCHS,
        labels=LABELS,
    log:
        "results/logs/plot_samples.log",
    conda:
        "environment.yml"
    script:
        "scripts/plot_samples.py"


rule aggregate_metrics:
    input:
        expand("results/{exp}/metrics/epoch_{epoch}.json", exp=EXPERIMENTS, epoch=SAMPLE_EPOCHS),
    output:
        "results/metrics.csv",
    log:
        "results/logs/aggregate_metrics.log",
    conda:
        "environment.yml"
    script:
        "scripts/aggregate_metrics.py"


rule plot_fid:
    input:
        "results/metrics.csv",
    output:
        report("results/plots/fid.png", caption="report/fid.rst", category="Evaluation"),
    params:
        labels=LABELS,
    log:
        "results/logs/plot_fid.log",
    conda:
        "environment.yml"
    script:
        "scripts/plot_fid.py"
