# The runs' files combined: the long loss and metric tables, the plots, the summary over seeds.
# Uses RUNS, EXPERIMENT_RUNS, LABELS, SWEEP and RUN_EPOCHS from rules/common.smk; conda:, script: and caption
# paths are relative to this file. The scripts match each input file to its run by the run folder's name.

from ddpm.experiments import loss_objective

# each run's record of its training: the tables of epochs follow a train job that reruns (with more or fewer epochs)
# even where its samples are kept (Snakemake checks nothing else of the jobs below it)
TRAINED = expand("results/{run}/config.yaml", run=RUNS)
# the (experiment, seed) of each run
RUN_KEYS = {name: [run.experiment, run.seed] for name, run in RUNS.items()}
# the sample montage shows each experiment's first run: one sampling seed for all, so its rows compare like with like
MONTAGE_RUNS = {
    runs[0].name: experiment for experiment, runs in EXPERIMENT_RUNS.items()
}
# ... at the first variant of a sampling sweep
MONTAGE_VARIANT = next(iter(VARIANTS))


rule aggregate_losses:
    input:
        expand("results/{run}/losses.csv", run=RUNS),
    output:
        "results/losses.csv",
    log:
        "results/logs/aggregate_losses.log",
    conda:
        "../environment.yml"
    params:
        runs=RUN_KEYS,
    script:
        "../scripts/aggregate_losses.py"


rule plot_losses:
    input:
        "results/losses.csv",
    output:
        report(
            "results/plots/loss.png", caption="../report/loss.rst", category="Training"
        ),
    log:
        "results/logs/plot_losses.log",
    conda:
        "../environment.yml"
    params:
        labels=LABELS,
        objectives={name: loss_objective(c) for name, c in EXPERIMENTS.items()},
    script:
        "../scripts/plot_losses.py"


rule plot_samples:
    input:
        grids=[
            f"results/{run}/samples/epoch_{epoch}{MONTAGE_VARIANT}.png"
            for run in MONTAGE_RUNS
            for epoch in RUN_EPOCHS[run]
        ],
        trained=TRAINED,
    output:
        report(
            "results/plots/samples.png",
            caption="../report/montage.rst",
            category="Samples",
        ),
    log:
        "results/logs/plot_samples.log",
    conda:
        "../environment.yml"
    params:
        runs=MONTAGE_RUNS,
        labels=LABELS,
    script:
        "../scripts/plot_samples.py"


rule aggregate_metrics:
    input:
        metrics=[
            f"results/{run}/metrics/epoch_{epoch}{variant}.json"
            for run in RUNS
            for epoch in RUN_EPOCHS[run]
            for variant in VARIANTS
        ],
        trained=TRAINED,
    output:
        "results/metrics.csv",
    log:
        "results/logs/aggregate_metrics.log",
    conda:
        "../environment.yml"
    params:
        runs=RUN_KEYS,
    script:
        "../scripts/aggregate_metrics.py"


rule plot_fid:
    input:
        "results/metrics.csv",
    output:
        report(
            "results/plots/fid.png", caption="../report/fid.rst", category="Evaluation"
        ),
    log:
        "results/logs/plot_fid.log",
    conda:
        "../environment.yml"
    params:
        labels=LABELS,
    script:
        "../scripts/plot_fid.py"


rule plot_quality:
    input:
        "results/metrics.csv",
    output:
        report(
            "results/plots/quality.png",
            caption="../report/quality.rst",
            category="Evaluation",
        ),
    log:
        "results/logs/plot_quality.log",
    conda:
        "../environment.yml"
    params:
        labels=LABELS,
    script:
        "../scripts/plot_quality.py"


rule summarize:
    input:
        losses="results/losses.csv",
        metrics="results/metrics.csv",
    output:
        csv="results/summary.csv",
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="Evaluation",
        ),
    log:
        "results/logs/summarize.log",
    conda:
        "../environment.yml"
    params:
        swept={name: runs[0].swept for name, runs in EXPERIMENT_RUNS.items()},
        objectives={name: loss_objective(c) for name, c in EXPERIMENTS.items()},
    script:
        "../scripts/summarize.py"


rule plot_sweep:
    input:
        "results/summary.csv",
    output:
        report(
            "results/plots/sweep.png",
            caption="../report/sweep.rst",
            category="Evaluation",
        ),
    log:
        "results/logs/plot_sweep.log",
    conda:
        "../environment.yml"
    params:
        sweep=SWEEP,
        experiments={
            name: {"parent": runs[0].parent, "swept": runs[0].swept}
            for name, runs in EXPERIMENT_RUNS.items()
        },
    script:
        "../scripts/plot_sweep.py"


rule plot_sampling_sweep:
    input:
        "results/metrics.csv",
    output:
        report(
            "results/plots/sampling_sweep.png",
            caption="../report/sampling_sweep.rst",
            category="Evaluation",
        ),
    log:
        "results/logs/plot_sampling_sweep.log",
    conda:
        "../environment.yml"
    params:
        sampling_sweep=SAMPLING_SWEEP,
        columns={
            field: column
            for variant in VARIANTS.values()
            for field, column in zip(variant.values, variant.columns())
        },
        labels=LABELS,
    script:
        "../scripts/plot_sampling_sweep.py"
