"""All metric JSONs as one table (ddpm.workflow.aggregate_metrics)."""

from ddpm.workflow import aggregate_metrics, logged_to

with logged_to(snakemake.log[0]):
    aggregate_metrics(snakemake.input, snakemake.output[0])
