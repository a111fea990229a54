"""Feature statistics of the dataset for FID, and features for precision and recall, computed once and cached
(ddpm.metrics.reference_statistics)."""

from pathlib import Path

import torch

from ddpm.metrics import reference_statistics
from ddpm.workflow import logged_to, print_environment

with logged_to(snakemake.log[0]):
    print_environment()
    torch.set_num_threads(snakemake.threads)
    reference_statistics(
        Path(snakemake.input.images).parent,
        snakemake.output[0],
        snakemake.params.extractor,
        classifier=snakemake.input.get("classifier"),
        num_reference=snakemake.params.num_reference,
        device=snakemake.params.device,
    )
