"""FID against epoch for every experiment (ddpm.plots.plot_fid)."""

import pandas as pd

from ddpm.plots import plot_fid
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    plot_fid(pd.read_csv(snakemake.input[0]), snakemake.params.labels, snakemake.output[0])
