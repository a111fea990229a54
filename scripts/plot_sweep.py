"""The last sample epoch's FID against each swept field (ddpm.plots.plot_sweep)."""

import pandas as pd

from ddpm.plots import plot_sweep
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    plot_sweep(pd.read_csv(snakemake.input[0]), snakemake.params.sweep, snakemake.params.experiments,
               snakemake.output[0])
