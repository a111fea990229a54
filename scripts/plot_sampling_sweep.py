"""The ranking metric, precision and recall against each swept sampling field at each experiment's last epoch
(ddpm.plots.plot_sampling_sweep), from the metric table."""

import pandas as pd

from ddpm.plots import plot_sampling_sweep
from ddpm.summary import ranking_metric
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    metrics = pd.read_csv(snakemake.input[0])
    plot_sampling_sweep(metrics, snakemake.params.sampling_sweep, snakemake.params.columns, snakemake.params.labels,
                        ranking_metric(metrics), snakemake.output[0])
