"""DPM-Solver++(2M) and its SDE variant against diffusers' DPMSolverMultistepScheduler on the same network,
timesteps and noise, and in distribution on Gaussian data."""

import pytest
import torch
import torch.nn as nn

from ddpm.diffusion import DiffusionModel
from ddpm.unet import UNet
from tests.test_diffusion import GaussianOracle

diffusers = pytest.importorskip("diffusers")

T = 1000
DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
DIFFUSERS_ALGORITHM = {"dpm_solver": "dpmsolver++", "dpm_solver_sde": "sde-dpmsolver++"}


def diffusers_samples(model: DiffusionModel, sampler: str, steps: int, x: torch.Tensor, noises: list[torch.Tensor]):
    """diffusers' DPMSolverMultistepScheduler, order 2, on `model`'s network and betas, from x_T = `x`.

    Its timesteps 0..T-1 are the project's 1..T, and its "trailing" spacing is round(T - i T / steps) - 1;
    thresholding at the 100th percentile with sample_max_value 1 is a clip of x_0 to [-1, 1],
    as the project's samplers do; the SDE variant's noise is given, one draw per step."""
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=model.num_timesteps, trained_betas=(1 - model.alphas[1:]).double().numpy(),
        algorithm_type=DIFFUSERS_ALGORITHM[sampler], solver_order=2, prediction_type=DIFFUSERS_PREDICTION[model.prediction],
        thresholding=True, dynamic_thresholding_ratio=1.0, sample_max_value=1.0, timestep_spacing="trailing")
    scheduler.alphas_cumprod = model.alphas_cumprod[1:].double()  # the project's alpha_bar_1..T, not its float32 cumprod
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for timestep, noise in zip(scheduler.timesteps, noises):
            t_fraction = torch.full((x.shape[0],), (int(timestep) + 1) / model.num_timesteps)
            output = model.eps_model(x, t_fraction)
            x = scheduler.step(output, timestep, x, variance_noise=noise).prev_sample
    return x


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("sampler", ["dpm_solver", "dpm_solver_sde"])
@pytest.mark.parametrize("steps", [10, 20])
def test_dpm_solver_matches_diffusers(schedule, prediction, sampler, steps):
    torch.manual_seed(0)
    model = DiffusionModel(UNet(1, 1, hidden_size=16, image_size=8).eval(), num_timesteps=T, schedule=schedule,
                           prediction=prediction)
    ours = model.sample(4, (1, 8, 8), "cpu", steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(1))

    generator = torch.Generator().manual_seed(1)
    x_T = torch.randn(4, 1, 8, 8, generator=generator)
    noises = [torch.randn(4, 1, 8, 8, generator=generator) if sampler == "dpm_solver_sde" else None
              for _ in range(steps - 1)] + [torch.zeros(4, 1, 8, 8)]  # the last step lands on x_0: its noise unused
    # x0-prediction by a random network is steep in x_t: its float32 rounding (1e-6 a step) grows over the SDE's
    # last steps to some 1e-3, the same in both implementations
    atol = 2e-3 if (sampler, prediction) == ("dpm_solver_sde", "x0") else 1e-4
    torch.testing.assert_close(ours, diffusers_samples(model, sampler, steps, x_T, noises), atol=atol, rtol=0)
    # the comparison can fail: a first-order solver (DDIM, eta 0) on the same start is far from it
    ddim = model.sample(4, (1, 8, 8), "cpu", steps=steps, sampler="ddim", generator=torch.Generator().manual_seed(1))
    assert (ours - ddim).abs().max() > 1e-2


@pytest.mark.parametrize("sampler", ["dpm_solver", "dpm_solver_sde"])
def test_dpm_solver_recovers_the_data_distribution(sampler):
    """With the exact eps of Gaussian data N(0.4, 0.15^2), both variants over every timestep sample that Gaussian.
    (With fewer steps the last lands on E[x_0 | x_t] at t = T / steps, of a smaller variance.)"""
    steps = T
    model = DiffusionModel(nn.Identity(), num_timesteps=T)
    model.eps_model = GaussianOracle(0.4, 0.15, model.alphas_cumprod)
    x = model.sample(4096, (1, 2, 2), "cpu", steps=steps, sampler=sampler,
                     generator=torch.Generator().manual_seed(0)).double()
    assert abs(x.mean().item() - 0.4) < 0.01
    assert abs(x.std().item() - 0.15) < 0.01


@pytest.mark.parametrize("sampler", ["ancestral", "dpm_solver", "dpm_solver_sde"])
def test_eta_is_refused_where_it_does_not_apply(sampler):
    model = DiffusionModel(UNet(1, 1, hidden_size=8, image_size=8), num_timesteps=100)
    with pytest.raises(ValueError, match=f"eta applies to the ddim sampler only, got eta=0.5 with sampler '{sampler}'"):
        model.sample(1, (1, 8, 8), "cpu", eta=0.5, sampler=sampler)


def test_the_ancestral_sampler_takes_every_step():
    model = DiffusionModel(UNet(1, 1, hidden_size=8, image_size=8), num_timesteps=10)
    with pytest.raises(ValueError, match=r"the ancestral sampler takes all num_timesteps \(10\) steps, got steps=5"):
        model.sample(1, (1, 8, 8), "cpu", steps=5, sampler="ancestral")
    with pytest.raises(ValueError, match=r"sampler must be one of \['ancestral', 'ddim', 'dpm_solver', "):
        model.sample(1, (1, 8, 8), "cpu", sampler="euler")
