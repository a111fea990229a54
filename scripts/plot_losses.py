"""The loss curves of every experiment on one figure (ddpm.plots.plot_losses)."""

import pandas as pd

from ddpm.plots import plot_losses
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    plot_losses(pd.read_csv(snakemake.input[0]), snakemake.params.labels, snakemake.params.objectives,
                snakemake.output[0])
