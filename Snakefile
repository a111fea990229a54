"""Train one DDPM per run (experiment x sweep x seed), sample at chosen epochs, evaluate with FID, summarize over
seeds, plot and report.

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
    check_tensorboard,
    expand_runs,
    experiment_labels,
    experiment_runs,
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
# a run is one experiment (after sweep expansion) at one seed: results/<run>/
RUNS = expand_runs(config, DATASET)
EXPERIMENT_RUNS = experiment_runs(RUNS)
# each experiment's config (at its first seed)
EXPERIMENTS = {name: runs[0].config for name, runs in EXPERIMENT_RUNS.items()}
SWEEP = config.get("sweep") or {}
check_sampling(config["sampling"], EXPERIMENTS)
check_tensorboard(config["tensorboard"])
DATA = f"data/{DATASET.name}"
SAMPLE_EPOCHS = sorted(config["sample_epochs"])
LABELS = experiment_labels(EXPERIMENTS)
# the (experiment, seed) of every run, in the order of RUNS
RUN_KEYS = [(run.experiment, run.seed) for run in RUNS.values()]
# the sample montage shows each experiment's first run: one sampling seed for all, so its rows compare like with like
MONTAGE_RUNS = [runs[0].name for runs in EXPERIMENT_RUNS.values()]
# GPUs a training job asks for: the experiment's `gpus` unless it is pinned to the CPU
GPUS = {name: 0 if c.device == "cpu" else c.gpus for name, c in EXPERIMENTS.items()}
# (a cluster job's own snakemake is given --resources for that one job)
if workflow.is_main_process:
    check_gpus(GPUS, workflow.global_resources.get("gpu").value)


wildcard_constraints:
    run="|".join(re.escape(name) for name in RUNS),
    epoch="|".join(str(epoch) for epoch in SAMPLE_EPOCHS),


report: "report/workflow.rst"


include: "rules/evaluate.smk"


rule all:
    input:
        "results/plots/loss.png",
        "results/plots/samples.png",
        "results/plots/fid.png",
        "results/metrics.csv",
        "results/summary.csv",
        "results/summary.html",
        ["results/plots/sweep.png"] if SWEEP else [],
        expand("results/{run}/config.yaml", run=RUNS),


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
        losses="results/{run}/losses.csv",
        checkpoints=expand("results/{{run}}/checkpoints/epoch_{epoch}.pt", epoch=SAMPLE_EPOCHS),
        config="results/{run}/config.yaml",
    params:
        config=lambda wildcards: RUNS[wildcards.run].config.to_dict(),
        experiment=lambda wildcards: RUNS[wildcards.run].experiment,
        dataset=DATASET.to_dict(),
        state_dir=lambda wildcards: f"results/resume/{wildcards.run}",
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    threads: 2
    resources:
        gpu=lambda wildcards: GPUS[RUNS[wildcards.run].experiment],
        mem_mb=8000,
        runtime=720,
    conda:
        "environment.yml"
    script:
        "scripts/train.py"


rule sample:
    input:
        checkpoint="results/{run}/checkpoints/epoch_{epoch}.pt",
    output:
        array="results/{run}/samples/epoch_{epoch}.npy",
    params:
        sampling=lambda wildcards: sample_settings(config["sampling"], int(wildcards.epoch), SAMPLE_EPOCHS[-1]),
        device=lambda wildcards: RUNS[wildcards.run].config.device,
    log:
        "results/logs/sample/{run}/epoch_{epoch}.log",
    benchmark:
        "results/benchmarks/sample/{run}/epoch_{epoch}.tsv"
    threads: 2
    resources:
        gpu=lambda wildcards: min(GPUS[RUNS[wildcards.run].experiment], 1),
        mem_mb=8000,
        runtime=240,
    conda:
        "environment.yml"
    script:
        "scripts/sample.py"


rule plot_grid:
    input:
        "results/{run}/samples/epoch_{epoch}.npy",
    output:
        report(
            "results/{run}/samples/epoch_{epoch}.png",
            caption="report/samples.rst",
            category="Samples",
            subcategory="{run}",
            labels={"run": "{run}", "epoch": "{epoch}"},
        ),
    params:
        grid_size=config["sampling"]["grid_size"],
    log:
        "results/logs/plot_grid/{run}/epoch_{epoch}.log",
    conda:
        "environment.yml"
    script:
        "scripts/plot_grid.py"


rule aggregate_losses:
    input:
        expand("results/{run}/losses.csv", run=RUNS),
    output:
        "results/losses.csv",
    params:
        runs=RUN_KEYS,
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
        expand("results/{run}/samples/epoch_{epoch}.png", run=MONTAGE_RUNS, epoch=SAMPLE_EPOCHS),
    output:
        report("results/plots/samples.png", caption="report/montage.rst", category="Samples"),
    params:
        experiments=list(EXPERIMENT_RUNS),
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
        expand("results/{run}/metrics/epoch_{epoch}.json", run=RUNS, epoch=SAMPLE_EPOCHS),
    output:
        "results/metrics.csv",
    params:
        runs=RUN_KEYS,
        epochs=SAMPLE_EPOCHS,
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


rule summarize:
    input:
        losses="results/losses.csv",
        metrics="results/metrics.csv",
    output:
        csv="results/summary.csv",
        html=report("results/summary.html", caption="report/summary.rst", category="Evaluation"),
    params:
        swept={name: runs[0].swept for name, runs in EXPERIMENT_RUNS.items()},
    log:
        "results/logs/summarize.log",
    conda:
        "environment.yml"
    script:
        "scripts/summarize.py"


rule plot_sweep:
    input:
        "results/summary.csv",
    output:
        report("results/plots/sweep.png", caption="report/sweep.rst", category="Evaluation"),
    params:
        sweep=SWEEP,
        experiments={
            name: {"parent": runs[0].parent, "swept": runs[0].swept}
            for name, runs in EXPERIMENT_RUNS.items()
        },
    log:
        "results/logs/plot_sweep.log",
    conda:
        "environment.yml"
    script:
        "scripts/plot_sweep.py"
