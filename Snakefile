"""Train one DDPM per run (experiment x sweep x seed), sample at chosen epochs, evaluate with FID, summarize over
seeds, plot and report.

    snakemake --cores 1                                  # config/config.yaml: digits on the CPU
    snakemake --configfile config/cifar10.yaml --cores 8 --resources gpu=1
    snakemake --profile profiles/slurm --configfile config/cifar10.yaml
    snakemake --report results/report.html
"""

import os
import sys

from snakemake.utils import min_version, update_config

min_version("9.0")

# The scripts import the `ddpm` package that sits beside this Snakefile, also inside conda
# envs and cluster jobs, which receive PYTHONPATH through `envvars:`.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])
)
sys.path.insert(0, workflow.basedir)
from ddpm.checks import check_workflow_config
from ddpm.experiments import (
    check_numbers_read_as_text,
    check_renamed_fields,
    yaml_config_overrides,
)


envvars:
    "PYTHONPATH",


# the config: the default unless --configfile names another, --config on top of either, then the schema
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


update_config(config, yaml_config_overrides(workflow.config_settings.config_args))
check_numbers_read_as_text(config)
check_renamed_fields(config)
check_workflow_config(config, os.path.join(workflow.basedir, "config", "schema.yaml"))


report: "report/workflow.rst"


# the stages; each file names what it uses from common.smk
include: "rules/common.smk"  # the checks the schema cannot make; runs, labels, GPUs
include: "rules/data.smk"  # download
include: "rules/train.smk"  # train, sample, plot_grid
include: "rules/evaluate.smk"  # train_classifier, reference_stats, evaluate
include: "rules/report.smk"  # aggregate_losses, aggregate_metrics, plots, summarize


rule all:
    default_target: True
    input:
        "results/plots/loss.png",
        "results/plots/samples.png",
        "results/plots/fid.png",
        "results/plots/quality.png",
        "results/metrics.csv",
        "results/summary.csv",
        "results/summary.html",
        ["results/plots/sweep.png"] if SWEEP else [],
        ["results/plots/sampling_sweep.png"] if SAMPLING_SWEEP else [],
        expand("results/{run}/config.yaml", run=RUNS),
        expand("results/{run}/checkpoints/last.pt", run=RUNS),  # each run's final model
        # every run's sample grids, not only those the montage shows
        [
            f"results/{r}/samples/epoch_{e}{v}.png"
            for r in RUNS
            for e in RUN_EPOCHS[r]
            for v in VARIANTS
        ],
