"""The first grid_size samples of one run and epoch as a PNG grid of grid_size cells (ddpm.images.save_grid), and in
TensorBoard: an epoch with fewer samples gets blank cells, so that every epoch's grid has the same layout and size."""

import numpy as np

from ddpm.images import add_grid_to_tensorboard, save_grid
from ddpm.workflow import logged_to, tensorboard_dir

with logged_to(snakemake.log[0]):
    grid_size = snakemake.params.grid_size
    images = np.load(snakemake.input[0])[:grid_size]
    columns = snakemake.params.columns  # a class-conditional run's: one class per column
    save_grid(images, snakemake.output[0], cells=grid_size, nrow=columns)
    board = tensorboard_dir(snakemake)
    if board is not None:
        add_grid_to_tensorboard(images, board, int(snakemake.wildcards.epoch), cells=grid_size, nrow=columns)
