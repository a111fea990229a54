"""Train one run (ddpm.launch.run_experiment) and record its resolved config. A run stopped by a signal says so in
the log and on the job's stderr, which Snakemake shows."""

import sys
from pathlib import Path

import torch

from ddpm.experiments import run_config
from ddpm.files import publish
from ddpm.launch import exit_when_interrupted, run_experiment
from ddpm.workflow import logged_to, print_environment, tensorboard_dir, write_resolved_config

with logged_to(snakemake.log[0]), exit_when_interrupted(sys.stderr, sys.__stderr__):  # the log, the console
    print_environment()
    torch.set_num_threads(snakemake.threads)
    config = run_config(snakemake.config, snakemake.wildcards.run)
    if config.training_identity() != snakemake.params.identity:
        raise RuntimeError(f"run {snakemake.wildcards.run}: the job's config is not the one the workflow planned")
    run_dir = Path(snakemake.output.losses).parent
    run_experiment(config, Path(snakemake.input.images).parent, run_dir, snakemake.params.state_dir,
                   tensorboard_dir=tensorboard_dir(snakemake))
    publish(run_dir / "checkpoints" / f"epoch_{config.epochs}.pt", snakemake.output.last)  # the final model
    write_resolved_config(snakemake.output.config, snakemake.params.experiment, snakemake.params.dataset, config)
