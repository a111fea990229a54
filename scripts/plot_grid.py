"""The first grid_size samples of one experiment and epoch as a PNG grid (ddpm.plots.save_grid)."""

import numpy as np

from ddpm.plots import save_grid
from ddpm.workflow import logged_to

with logged_to(snakemake.log[0]):
    images = np.load(snakemake.input[0])
    save_grid(images[: snakemake.params.grid_size], snakemake.output[0], upscale=max(1, 32 // images.shape[-1]))
