"""The prediction target (eps, v, x0) and the loss weighting (uniform, Min-SNR-gamma) of DiffusionModel."""

import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from ddpm.config import TrainConfig
from ddpm.diffusion import DiffusionModel
from tests.test_diffusion import Recorder, reference_alphas_cumprod

T = 1000
SAMPLERS = [("ancestral", None), ("ddim", 2), ("ddim", 50), ("dpm_solver", 2), ("dpm_solver", 20),
            ("dpm_solver_sde", 20)]


class TargetOracle(nn.Module):
    """The exact prediction when the data is one point x0*: eps = (x_t - sqrt(a) x0*) / sqrt(1 - a),
    v = sqrt(a) eps - sqrt(1 - a) x0* (Salimans & Ho 2022), or x0* itself, with a = alpha_bar_t in float64."""

    def __init__(self, point, alphas_cumprod, prediction):
        super().__init__()
        self.prediction = prediction
        self.register_buffer("point", point.double())
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float64))

    def forward(self, x, t):
        a = self.alphas_cumprod[(t * (len(self.alphas_cumprod) - 1)).round().long()][:, None, None, None]
        eps = (x.double() - a.sqrt() * self.point) / (1 - a).sqrt()
        target = {"eps": eps, "v": a.sqrt() * eps - (1 - a).sqrt() * self.point, "x0": self.point.expand_as(eps)}
        return target[self.prediction].float()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("sampler, steps", SAMPLERS)
def test_every_sampler_lands_on_a_single_data_point_for_every_target(schedule, prediction, sampler, steps):
    """A perfect predictor of a single data point, whatever it predicts, brings every sampler onto that point."""
    point = torch.linspace(-0.9, 0.9, 4).reshape(1, 2, 2)
    oracle = TargetOracle(point, reference_alphas_cumprod(schedule, T), prediction)
    model = DiffusionModel(oracle, num_timesteps=T, schedule=schedule, prediction=prediction)
    x = model.sample(64, (1, 2, 2), "cpu", steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, point.expand_as(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_the_oracle_of_another_target_misses_the_point(prediction):
    """The landing test can fail: a model told it predicts `prediction` but given eps's oracle lands elsewhere."""
    point = torch.linspace(-0.9, 0.9, 4).reshape(1, 2, 2)
    wrong = {"eps": "v", "v": "x0", "x0": "eps"}[prediction]
    model = DiffusionModel(TargetOracle(point, reference_alphas_cumprod("linear", T), wrong), num_timesteps=T,
                           prediction=prediction)
    x = model.sample(64, (1, 2, 2), "cpu", steps=20, sampler="dpm_solver", generator=torch.Generator().manual_seed(0))
    assert (x - point).abs().max() > 1e-2  # 100 times the landing tolerance


def test_v_target_is_diffusers_velocity():
    """The training target for v is sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0, as diffusers' get_velocity."""
    diffusers = pytest.importorskip("diffusers")
    recorder = Recorder()  # predicts zeros: the loss is the mean squared target
    model = DiffusionModel(recorder, num_timesteps=T, schedule="cosine", prediction="v")
    x0, noise, t = torch.rand(3, 1, 4, 4) * 2 - 1, torch.randn(3, 1, 4, 4), torch.tensor([1, 400, 1000])
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=T, trained_betas=(1 - model.alphas[1:]).double().numpy())
    scheduler.alphas_cumprod = model.alphas_cumprod[1:]  # the project's alpha_bar_1..T
    velocity = scheduler.get_velocity(x0, noise, t - 1)  # diffusers' timestep t - 1 is the project's t
    torch.testing.assert_close(model(x0, t=t, noise=noise), (velocity**2).mean())


def min_snr_weight(alpha_bar: np.ndarray, prediction: str, gamma: float) -> np.ndarray:
    """Hang et al. 2023: the weight of each target's squared error that makes it min(SNR, gamma) ||x0 - x0_hat||^2."""
    snr = alpha_bar / (1 - alpha_bar)
    return {"eps": np.minimum(snr, gamma) / snr, "v": np.minimum(snr, gamma) / (snr + 1),
            "x0": np.minimum(snr, gamma)}[prediction]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_loss_is_the_closed_form(schedule, prediction, gamma):
    recorder = Recorder()  # predicts zeros: each sample's squared error is its mean squared target
    model = DiffusionModel(recorder, num_timesteps=T, schedule=schedule, prediction=prediction,
                           loss_weighting="min_snr", min_snr_gamma=gamma)
    x0, noise, t = torch.rand(5, 1, 4, 4) * 2 - 1, torch.randn(5, 1, 4, 4), torch.tensor([1, 10, 300, 700, 1000])
    alpha_bar = reference_alphas_cumprod(schedule, T)[t.numpy()]
    a = torch.tensor(alpha_bar, dtype=torch.float32)[:, None, None, None]
    target = {"eps": noise, "v": a.sqrt() * noise - (1 - a).sqrt() * x0, "x0": x0}[prediction]
    per_sample = (target.double() ** 2).mean(dim=(1, 2, 3)).numpy()
    expected = (min_snr_weight(alpha_bar, prediction, gamma) * per_sample).mean()
    assert model(x0, t=t, noise=noise).item() == pytest.approx(expected, rel=1e-5)
    uniform = DiffusionModel(recorder, num_timesteps=T, schedule=schedule, prediction=prediction)
    assert uniform(x0, t=t, noise=noise).item() == pytest.approx(per_sample.mean(), rel=1e-5)


class ShiftedX0(nn.Module):
    """A network whose x_0 estimate is x0* + 0.1, expressed as the target it is asked for."""

    def __init__(self, point, model, prediction):
        super().__init__()
        self.point, self.model, self.prediction = point, model, prediction

    def forward(self, x, t):
        index = (t * T).round().long()
        a = self.model.alphas_cumprod[index][:, None, None, None]
        x0_hat = self.point + 0.1
        eps_hat = (x - a.sqrt() * x0_hat) / (1 - a).sqrt()
        return {"eps": eps_hat, "v": a.sqrt() * eps_hat - (1 - a).sqrt() * x0_hat, "x0": x0_hat.expand_as(x)}[self.prediction]


def test_min_snr_weighs_the_same_x0_error_alike_whatever_the_target():
    """The point of the three weights (Hang et al. 2023, section 3.4): one x_0 error costs min(SNR, gamma) times
    its square for every target, so the three losses agree."""
    point, noise = torch.full((4, 1, 2, 2), 0.3), torch.randn(4, 1, 2, 2)
    t = torch.tensor([5, 200, 600, 950])
    losses = []
    for prediction in ("eps", "v", "x0"):
        model = DiffusionModel(nn.Identity(), num_timesteps=T, schedule="cosine", prediction=prediction,
                               loss_weighting="min_snr")
        model.eps_model = ShiftedX0(point, model, prediction)
        losses.append(model(point, t=t, noise=noise).item())
    alpha_bar = reference_alphas_cumprod("cosine", T)[t.numpy()]
    expected = (np.minimum(alpha_bar / (1 - alpha_bar), 5.0) * 0.01).mean()
    assert losses == pytest.approx([expected] * 3, rel=1e-3)


@pytest.mark.parametrize("field, value, message", [
    ("prediction", "score", "prediction must be one of ['eps', 'v', 'x0'], got 'score'"),
    ("loss_weighting", "snr", "loss_weighting must be one of ['uniform', 'min_snr'], got 'snr'"),
    ("min_snr_gamma", 0, "min_snr_gamma must be a number > 0, got 0"),
    ("min_snr_gamma", -1.0, "min_snr_gamma must be a number > 0, got -1.0"),
])
def test_bad_targets_and_weightings_are_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}$"):
        TrainConfig(**{field: value})
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}$"):
        DiffusionModel(Recorder(), num_timesteps=10, **{field: value})


def test_min_snr_gamma_applies_only_to_min_snr():
    """A gamma that the uniform weighting ignores does not make another run (see TrainConfig.training_identity)."""
    assert TrainConfig(min_snr_gamma=2.0).training_identity() == TrainConfig().training_identity()
    min_snr = TrainConfig(loss_weighting="min_snr")
    assert TrainConfig(loss_weighting="min_snr", min_snr_gamma=2.0).training_identity() != min_snr.training_identity()


def test_ddim_with_eta_one_moves_along_eps_where_float32_would_cancel_it():
    """At the first of 10 cosine steps (t = 1000 -> 889) with eta = 1, eq. 12's coefficient of eps,
    sqrt(1 - alpha_bar_prev - sigma^2) = 2.78e-4, is the square root of a difference of two terms near 0.97 that
    float32 rounds to 0. Every x the network sees matches a float64 replay of the chain (an x0 predictor of one
    point, so that no division by sqrt(alpha_bar_T) ~ 5e-5 magnifies float32 rounding)."""
    point = torch.linspace(-0.9, 0.9, 4).reshape(1, 2, 2)
    alpha_bar = reference_alphas_cumprod("cosine", T)
    recorder = Recorder()
    oracle = TargetOracle(point, alpha_bar, "x0")
    recorder.forward = lambda x, t: (recorder.calls.append((x.clone(), t.clone())), oracle(x, t))[1]
    model = DiffusionModel(recorder, num_timesteps=T, schedule="cosine", prediction="x0")
    model.sample(64, (1, 2, 2), "cpu", steps=10, eta=1.0, generator=torch.Generator().manual_seed(0))

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 2, 2, generator=generator).double()  # x_T
    timesteps = [1000, 889, 778, 667, 556, 445, 334, 223, 112, 1]
    assert [round(t[0].item() * T) for _, t in recorder.calls] == timesteps
    for (seen, _), t, t_prev in zip(recorder.calls, timesteps, timesteps[1:]):
        torch.testing.assert_close(seen.double(), x, atol=1e-5, rtol=0)
        a, a_prev = alpha_bar[t], alpha_bar[t_prev]
        eps = (x - np.sqrt(a) * point.double()) / np.sqrt(1 - a)
        sigma = np.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))  # eq. 16 with eta = 1
        coefficient = np.sqrt((1 - a_prev) ** 2 * a / (a_prev * (1 - a)))  # 1 - a_prev - sigma^2 in closed form
        if t == T:
            assert coefficient == pytest.approx(2.78e-4, rel=1e-3)
        z = torch.randn(x.shape, generator=generator).double()
        x = np.sqrt(a_prev) * point.double() + coefficient * eps + sigma * z
