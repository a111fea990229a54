"""Train the FID classifier on the prepared dataset's labels (ddpm.extractors.train_classifier)."""

from pathlib import Path

import torch

from ddpm.extractors import train_classifier
from ddpm.workflow import logged_to, print_environment

with logged_to(snakemake.log[0]):
    print_environment()
    torch.set_num_threads(snakemake.threads)
    train_classifier(Path(snakemake.input.images).parent, snakemake.output[0], device=snakemake.params.device)
