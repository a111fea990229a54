"""The summary over seeds, ranked by FID, as CSV and as an HTML table for the report (ddpm.summary.write_summary)."""

from ddpm.summary import write_summary
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    write_summary(snakemake.input.losses, snakemake.input.metrics, snakemake.params.swept,
                  snakemake.params.objectives, snakemake.output.csv, snakemake.output.html)
