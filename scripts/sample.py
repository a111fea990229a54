"""Sample from one checkpoint: all samples as one uint8 array (ddpm.sampling); the rule plot_grid draws the PNG."""

import torch

from ddpm.sampling import sample_checkpoint, sampler_arguments
from ddpm.workflow import logged_to, print_environment, save_array

with logged_to(snakemake.log[0]):
    print_environment()
    torch.set_num_threads(snakemake.threads)
    sampling = snakemake.params.sampling
    images = sample_checkpoint(
        snakemake.input.checkpoint,
        num_samples=sampling["num_samples"],
        seed=sampling["seed"],
        batch_size=sampling["batch_size"],
        device=snakemake.params.device,
        **sampler_arguments(sampling),
    )
    save_array(images.numpy(), snakemake.output.array)
