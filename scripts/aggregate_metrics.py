"""All runs' metric JSONs as one table (ddpm.workflow.aggregate_metrics)."""

from ddpm.workflow import aggregate_metrics, logged_to, run_of

with logged_to(snakemake.log[0]):
    runs = snakemake.params.runs  # run name -> (experiment, seed)
    metrics = {}
    for path in snakemake.input.metrics:
        metrics.setdefault(tuple(runs[run_of(path)[0]]), []).append(path)
    aggregate_metrics(metrics, snakemake.output[0])
