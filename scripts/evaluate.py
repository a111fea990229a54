"""FID, precision, recall and memorisation of one run's samples at one epoch and sampling variant (each draw scored,
then their mean and standard error), and the class accuracy where the samples were drawn with labels, as a JSON
metric row (ddpm.metrics.evaluate_samples)."""

from pathlib import Path

import torch

from ddpm.metrics import evaluate_samples
from ddpm.workflow import logged_to, print_environment

with logged_to(snakemake.log[0]):
    print_environment()
    torch.set_num_threads(snakemake.threads)
    evaluate_samples(
        list(snakemake.input.samples),
        snakemake.input.reference,
        Path(snakemake.input.images).parent,
        snakemake.output[0],
        snakemake.params.experiment,
        int(snakemake.wildcards.epoch),
        snakemake.params.extractor,
        classifier=snakemake.input.get("classifier"),
        device=snakemake.params.device,
        labels=snakemake.input.get("labels") or None,  # one file per draw, for class-conditional runs
        variant=snakemake.params.get("variant", {}),
    )
