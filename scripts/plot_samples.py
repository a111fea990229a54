"""Each experiment's sample grids across the sample epochs (ddpm.plots.plot_sample_montage)."""

from ddpm.plots import plot_sample_montage
from ddpm.workflow import logged_to, run_of

with logged_to(snakemake.log[0]):
    experiments = snakemake.params.runs  # the run shown -> its experiment
    montage = {}
    for path in snakemake.input.grids:
        run, epoch = run_of(path)
        montage.setdefault(experiments[run], {})[epoch] = path
    plot_sample_montage(montage, snakemake.params.labels, snakemake.output[0])
