"""Train one DDPM per experiment, sample at chosen epochs, evaluate with FID, plot and report.

    snakemake --cores 1                                  # config/config.yaml: digits on the CPU
    snakemake --configfile config/cifar10.yaml --cores 8 --resources gpu=1
    snakemake --profile profiles/slurm --configfile config/cifar10.yaml
    snakemake --report results/report.html
"""

import os
import re
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# The scripts import the `ddpm` package that sits beside this Snakefile, also inside conda
# envs and cluster jobs, which receive PYTHONPATH through `envvars:`.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))
sys.path.insert(0, workflow.basedir)
from ddpm.config import check_dataset, check_evaluation, experiment_configs, experiment_labels


if not config:

    configfile: "config/config.yaml"


envvars:
    "PYTHONPATH",


validate(config, "config/schema.yaml")
EXPERIMENTS = experiment_configs(config)
check_evaluation(config["dataset"], config["evaluation"])
check_dataset(**config["dataset"])
DATA = f"data/{config['dataset']['name']}"
SAMPLE_EPOCHS = sorted(config["sample_epochs"])
# params in a fixed key order: reordering the YAML must not rerun anything
DATASET = dict(sorted(config["dataset"].items()))
SAMPLING = dict(sorted(config["sampling"].items()))
LABELS = experiment_labels(EXPERIMENTS)
# GPUs a training job asks for: the experiment's `gpus` unless it is pinned to the CPU
GPUS = {name: 0 if c.device == "cpu" else c.gpus for name, c in EXPERIMENTS.items()}


wildcard_constraints:
    exp="|".join(re.escape(name) for name in EXPERIMENTS),
    epoch=r"\d+",


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
        dataset=DATASET,
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
        dataset=DATASET,
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
        grid=report(
            "results/{exp}/samples/epoch_{epoch}.png",
            caption="report/samples.rst",
            category="Samples",
            subcategory="{exp}",
            labels={"experiment": "{exp}", "epoch": "{epoch}"},
        ),
        array="results/{exp}/samples/epoch_{epoch}.npy",
    params:
        sampling=SAMPLING,
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
