"""All runs' loss CSVs as one long table (ddpm.workflow.aggregate_losses)."""

from ddpm.workflow import aggregate_losses, logged_to

with logged_to(snakemake.log[0]):
    runs = map(tuple, snakemake.params.runs)  # (experiment, seed) of each input, in order
    aggregate_losses(dict(zip(runs, snakemake.input)), snakemake.output[0])
