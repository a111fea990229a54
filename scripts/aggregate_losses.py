"""All runs' loss CSVs as one long table (ddpm.workflow.aggregate_losses)."""

from ddpm.workflow import aggregate_losses, logged_to, run_of

with logged_to(snakemake.log[0]):
    runs = snakemake.params.runs  # run name -> (experiment, seed)
    aggregate_losses({tuple(runs[run_of(path)[0]]): path for path in snakemake.input}, snakemake.output[0])
