"""Precision, recall, memorisation and, for class-conditional experiments, class accuracy against epoch for every
experiment (ddpm.plots.plot_quality)."""

import pandas as pd

from ddpm.plots import plot_quality
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    plot_quality(pd.read_csv(snakemake.input[0]), snakemake.params.labels, snakemake.output[0])
