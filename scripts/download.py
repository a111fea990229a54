"""Prepare the configured dataset as uint8 arrays (ddpm.data.prepare_dataset)."""

from pathlib import Path

from ddpm.data import prepare_dataset
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    info = prepare_dataset(out_dir=Path(snakemake.output.images).parent, **snakemake.params.dataset)
    print(info)
