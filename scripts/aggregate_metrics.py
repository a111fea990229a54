"""All runs' metric JSONs as one table (ddpm.workflow.aggregate_metrics)."""

from ddpm.workflow import aggregate_metrics, logged_to

with logged_to(snakemake.log[0]):
    metrics = iter(snakemake.input)  # expand() order: run-major, then epoch
    runs = map(tuple, snakemake.params.runs)  # (experiment, seed) of each run, in order
    aggregate_metrics({run: [next(metrics) for _ in snakemake.params.epochs] for run in runs}, snakemake.output[0])
