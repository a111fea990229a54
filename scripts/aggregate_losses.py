"""All experiments' loss CSVs as one long table (ddpm.workflow.aggregate_losses)."""

from ddpm.workflow import aggregate_losses, logged_to

with logged_to(snakemake.log[0]):
    aggregate_losses(dict(zip(snakemake.params.experiments, snakemake.input)), snakemake.output[0])
