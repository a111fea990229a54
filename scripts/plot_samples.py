"""Each experiment's sample grids across the sample epochs (ddpm.plots.plot_sample_montage)."""

from ddpm.plots import plot_sample_montage
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    epochs = snakemake.params.epochs
    grids = iter(snakemake.input)  # expand() order: experiment-major, then epoch
    montage = {name: {epoch: next(grids) for epoch in epochs} for name in snakemake.params.experiments}
    plot_sample_montage(montage, snakemake.params.labels, snakemake.output[0])
