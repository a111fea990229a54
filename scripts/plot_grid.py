"""The first grid_size samples of one run and epoch as a PNG grid (ddpm.plots.save_grid), and in TensorBoard."""

import numpy as np

from ddpm.plots import add_grid_to_tensorboard, save_grid
from ddpm.workflow import logged_to, tensorboard_dir

with logged_to(snakemake.log[0]):
    images = np.load(snakemake.input[0])
    save_grid(images[: snakemake.params.grid_size], snakemake.output[0], upscale=max(1, 32 // images.shape[-1]))
    if tensorboard_dir(snakemake) is not None:
        add_grid_to_tensorboard(images[: snakemake.params.grid_size], tensorboard_dir(snakemake), int(snakemake.wildcards.epoch))
