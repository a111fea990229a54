import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from ddpm.diffusion import DiffusionModel, get_schedules
from ddpm.unet import UNet
from tests.conftest import DEVICES


class Recorder(nn.Module):
    """An eps-model that predicts zeros and remembers what it was called with."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return torch.zeros_like(x) + 0 * self.anchor


class GaussianOracle(nn.Module):
    """The exact E[eps | x_t] when every pixel of x_0 is N(mean, std^2): a perfectly trained model."""

    def __init__(self, mean, std, alphas_cumprod):
        super().__init__()
        self.mean, self.var = mean, std**2
        self.register_buffer("alphas_cumprod", alphas_cumprod.double())

    def forward(self, x, t):
        T = len(self.alphas_cumprod) - 1
        a = self.alphas_cumprod[(t * T).round().long()].float()[:, None, None, None]
        return (1 - a).sqrt() * (x - a.sqrt() * self.mean) / (a * self.var + 1 - a)


def reference_alphas_cumprod(beta1, beta2, T):
    betas = np.linspace(beta1, beta2, T + 1)  # float64, indexed by t = 0..T
    return np.cumprod(1 - betas)


def test_schedules_match_the_paper():
    schedules = get_schedules(1e-4, 0.02, 1000)
    alpha_bar = reference_alphas_cumprod(1e-4, 0.02, 1000)
    np.testing.assert_allclose(schedules["alphas_cumprod"], alpha_bar, rtol=1e-6)
    np.testing.assert_allclose(schedules["sqrt_one_minus_alpha_prod"], np.sqrt(1 - alpha_bar), rtol=1e-6)
    betas = np.linspace(1e-4, 0.02, 1001)
    np.testing.assert_allclose(schedules["one_minus_alpha_over_prod"], betas / np.sqrt(1 - alpha_bar), rtol=1e-6)
    np.testing.assert_allclose(schedules["sqrt_betas"][[1, 500, 1000]], [0.01095, 0.1002, 0.1414], rtol=1e-3)
    assert all(len(s) == 1001 and s.dtype == torch.float32 for s in schedules.values())


@pytest.mark.parametrize("betas, steps, message", [
    ((0.02, 1e-4), 10, "0 < beta1 < beta2 < 1"),
    ((0.0, 0.02), 10, "0 < beta1 < beta2 < 1"),
    ((1e-4, 1.5), 10, "0 < beta1 < beta2 < 1"),
    ((1e-4, 0.02), 0, "num_timesteps must be an integer >= 1"),
    ((1e-4, 0.02), 2.5, "num_timesteps must be an integer >= 1"),
])
def test_bad_schedule_is_refused(betas, steps, message):
    with pytest.raises(ValueError, match=message):
        DiffusionModel(Recorder(), betas=betas, num_timesteps=steps)


def test_schedules_are_buffers_in_the_state_dict():
    model = DiffusionModel(Recorder(), num_timesteps=10)
    assert {"sqrt_alphas_cumprod", "sqrt_one_minus_alpha_prod"} <= set(model.state_dict())


def test_q_sample_uses_sqrt_one_minus_alpha_bar():
    """Homework bug 2: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    model = DiffusionModel(Recorder(), num_timesteps=1000)
    alpha_bar = torch.tensor(reference_alphas_cumprod(1e-4, 0.02, 1000), dtype=torch.float32)
    x0, noise = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    t = torch.tensor([1, 10, 500, 1000])
    expected = alpha_bar[t].sqrt()[:, None, None, None] * x0 + (1 - alpha_bar[t]).sqrt()[:, None, None, None] * noise
    torch.testing.assert_close(model.q_sample(x0, t, noise), expected)


def test_forward_is_algorithm_1():
    recorder = Recorder()
    model = DiffusionModel(recorder, num_timesteps=100)
    x0, noise, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.tensor([1, 50, 100])
    loss = model(x0, t=t, noise=noise)
    x_t, t_fraction = recorder.calls[0]
    torch.testing.assert_close(x_t, model.q_sample(x0, t, noise))
    torch.testing.assert_close(t_fraction, t / 100)
    torch.testing.assert_close(loss, (noise**2).mean())  # the eps-model predicted zeros


def test_training_noise_is_standard_gaussian():
    """Homework bug 3: eps ~ N(0, I), not U[0, 1). With x_0 = 0, x_t / sqrt(1 - alpha_bar_t) is eps."""
    recorder = Recorder()
    model = DiffusionModel(recorder, num_timesteps=1000)
    model(torch.zeros(64, 1, 8, 8))
    x_t, t_fraction = recorder.calls[0]
    t = (t_fraction * 1000).round().long()
    assert t.min() >= 1 and t.max() <= 1000
    eps = (x_t / model.sqrt_one_minus_alpha_prod[t][:, None, None, None]).flatten().numpy()
    assert stats.kstest(eps, "norm").pvalue > 1e-3
    assert abs(eps.mean()) < 0.05 and abs(eps.std() - 1) < 0.05


def test_course_loss_window_for_an_untrained_unet():
    """The homework's test: an untrained UNet at T=20 gives a loss in [1.0, 1.2] (now seeded)."""
    model = DiffusionModel(UNet(3, 3, hidden_size=128), betas=(1e-4, 0.02), num_timesteps=20)
    loss = model(torch.randn(4, 3, 32, 32))
    assert loss.ndim == 0
    assert 1.0 <= loss.item() <= 1.2


def test_random_draws_are_made_on_the_model_device():
    """Homework bug 1: timesteps, the starting noise and the per-step noise live on the model's device.

    The meta device stands in for a GPU: mixing it with a CPU tensor raises, so a tensor created
    without device= fails here as it would on CUDA.
    """
    model = DiffusionModel(UNet(1, 1, hidden_size=8, image_size=8), num_timesteps=3).to("meta")
    x0 = torch.empty(2, 1, 8, 8, device="meta")
    assert model(x0).device.type == "meta"
    assert model.sample(2, (1, 8, 8), device="meta").device.type == "meta"
    assert model.sample(2, (1, 8, 8), device="meta", steps=2).device.type == "meta"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("steps", [None, 1000])
def test_samplers_recover_the_data_distribution(device, steps):
    """With the exact eps of Gaussian data, Algorithm 2 and DDIM over all steps return that Gaussian."""
    model = DiffusionModel(nn.Identity(), num_timesteps=1000)
    model.eps_model = GaussianOracle(0.5, 0.2, model.alphas_cumprod)
    model = model.to(device)
    x = model.sample(4096, (1, 2, 2), device=device, steps=steps).flatten().cpu().double()
    assert abs(x.mean().item() - 0.5) < 0.01
    assert abs(x.std().item() - 0.2) < 0.01


@pytest.mark.parametrize("steps", [1, 5, 50])
def test_ddim_is_exact_for_a_single_point(steps):
    """For data that is one point, eps(x_t) is known exactly, and DDIM lands on the point in any number of steps."""
    model = DiffusionModel(nn.Identity(), num_timesteps=1000)
    model.eps_model = GaussianOracle(0.5, 0.0, model.alphas_cumprod)
    x = model.sample(64, (1, 2, 2), "cpu", steps=steps)
    torch.testing.assert_close(x, torch.full_like(x, 0.5), atol=1e-3, rtol=0)


def test_fewer_ddim_steps_trade_accuracy_for_speed():
    """DDIM's discretisation error on Gaussian data shrinks as the steps grow."""
    model = DiffusionModel(nn.Identity(), num_timesteps=1000)
    model.eps_model = GaussianOracle(0.5, 0.2, model.alphas_cumprod)
    errors = []
    for steps in (10, 50, 200):
        torch.manual_seed(0)
        errors.append(abs(model.sample(4096, (1, 2, 2), "cpu", steps=steps).std().item() - 0.2))
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("steps", [None, 4])
def test_sampling_is_reproducible_and_builds_no_graph(device, steps):
    model = DiffusionModel(UNet(1, 1, hidden_size=8, image_size=8), num_timesteps=10).to(device)
    draw = lambda seed: model.sample(3, (1, 8, 8), device, steps=steps,
                                     generator=torch.Generator(device).manual_seed(seed))
    first = draw(1)
    torch.testing.assert_close(first, draw(1), rtol=0, atol=0)
    assert not torch.equal(first, draw(2))
    assert not first.requires_grad
    torch.manual_seed(7)
    again = model.sample(3, (1, 8, 8), device, steps=steps)
    torch.manual_seed(7)
    torch.testing.assert_close(again, model.sample(3, (1, 8, 8), device, steps=steps), rtol=0, atol=0)


@pytest.mark.parametrize("steps", [0, 11, 2.0])
def test_ddim_steps_out_of_range(steps):
    model = DiffusionModel(Recorder(), num_timesteps=10)
    with pytest.raises(ValueError, match=r"DDIM steps must be an integer in \[1, 10\]"):
        model.sample(1, (1, 2, 2), "cpu", steps=steps)
