"""Sample from one checkpoint (guided by another under guidance auto): all samples as one uint8 array, and a
class-conditional run's labels beside them (ddpm.sampling); the rule plot_grid draws the PNG."""

import torch

from ddpm.models import resolve_device
from ddpm.sampling import draw_labels, generate, load_model, sampler_arguments
from ddpm.workflow import logged_to, print_environment, save_array

with logged_to(snakemake.log[0]):
    print_environment()
    torch.set_num_threads(snakemake.threads)
    sampling = snakemake.params.sampling
    device = resolve_device(snakemake.params.device)
    model = load_model(snakemake.input.checkpoint, device)
    guide = load_model(snakemake.input.guide, device) if "guide" in snakemake.input.keys() else None
    labels = draw_labels(model, sampling["num_samples"])
    images = generate(model, sampling["num_samples"], seed=sampling["seed"], batch_size=sampling["batch_size"],
                      device=device, guide=guide, labels=labels, **sampler_arguments(sampling))
    save_array(images.numpy(), snakemake.output.array)
    if labels is not None:
        save_array(labels.numpy(), snakemake.output.labels)
