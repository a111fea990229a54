"""Sample from one checkpoint (guided by another under guidance auto): all samples as one uint8 array, and a
class-conditional run's labels beside them (ddpm.sampling); the rule plot_grid draws the PNG. A sampling variant
that draws what an earlier one drew (it sweeps a field the run does not use) copies that one's files."""

import numpy as np
import torch

from ddpm.models import resolve_device
from ddpm.sampling import draw_labels, generate, load_model, sampler_arguments
from ddpm.workflow import logged_to, print_environment, save_array


def draw_samples() -> None:
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


def copy_samples() -> None:
    print(f"the same samples as {snakemake.input.same_as}: copied")
    save_array(np.load(snakemake.input.same_as), snakemake.output.array)
    if "same_as_labels" in snakemake.input.keys():
        save_array(np.load(snakemake.input.same_as_labels), snakemake.output.labels)


with logged_to(snakemake.log[0]):
    print_environment()
    if "same_as" in snakemake.input.keys():
        copy_samples()
    else:
        draw_samples()
