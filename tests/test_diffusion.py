import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from ddpm import samplers
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


class PointOracle(nn.Module):
    """The exact eps when the data is one point x0*: eps(x_t, t) = (x_t - sqrt(alpha_bar_t) x0*) / sqrt(1 - alpha_bar_t)."""

    def __init__(self, point, alphas_cumprod):
        super().__init__()
        self.register_buffer("point", point)
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float64))

    def forward(self, x, t):
        T = len(self.alphas_cumprod) - 1
        a = self.alphas_cumprod[(t * T).round().long()][:, None, None, None]
        return ((x - a.sqrt() * self.point) / (1 - a).sqrt()).float()


def reference_betas(schedule, T, beta1=1e-4, beta2=0.02):
    """beta_t for t = 0..T in float64, from the papers: beta_0 = 0, then beta_1..beta_T."""
    if schedule == "linear":  # Ho et al. 2020, section 4: beta_1 = beta1 up to beta_T = beta2, linearly
        return np.concatenate([[0.0], np.linspace(beta1, beta2, T)])
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2  # Nichol & Dhariwal 2021, eq. 17
    return np.concatenate([[0.0], np.minimum(1 - f[1:] / f[:-1], 0.999)])


def reference_alphas_cumprod(schedule, T):
    return np.cumprod(1 - reference_betas(schedule, T))  # alpha_bar_0 = 1


@pytest.mark.parametrize("schedule, T", [("linear", 1000), ("linear", 7), ("cosine", 1000), ("cosine", 7)])
def test_schedules_match_the_paper(schedule, T):
    """Every schedule tensor against an independent float64 computation, indexed by t = 0..T as in Ho et al."""
    schedules = get_schedules(1e-4, 0.02, T, schedule=schedule)
    betas = reference_betas(schedule, T)
    alpha_bar = np.cumprod(1 - betas)
    expected = {
        "alphas": 1 - betas,
        "inv_sqrt_alphas": 1 / np.sqrt(1 - betas),
        "sqrt_betas": np.sqrt(betas),
        "alphas_cumprod": alpha_bar,
        "sqrt_alphas_cumprod": np.sqrt(alpha_bar),
        "sqrt_one_minus_alpha_prod": np.sqrt(1 - alpha_bar),
        "one_minus_alpha_over_prod": np.concatenate([[0.0], betas[1:] / np.sqrt(1 - alpha_bar[1:])]),  # unused at 0
    }
    assert set(schedules) == set(expected)
    for name, value in expected.items():
        assert schedules[name].dtype == torch.float32 and schedules[name].shape == (T + 1,), name
        np.testing.assert_allclose(schedules[name], value, rtol=1e-6, atol=0, err_msg=name)
    assert schedules["alphas_cumprod"][0] == 1 and schedules["sqrt_one_minus_alpha_prod"][0] == 0  # x_0 is data


def test_linear_schedule_has_the_papers_endpoints():
    """Ho et al.: beta_1 = 1e-4 and beta_T = 0.02, so alpha_bar_1 = alpha_1 = 1 - beta_1."""
    schedules = get_schedules(1e-4, 0.02, 1000)
    np.testing.assert_allclose(schedules["sqrt_betas"][[0, 1, 1000]], [0.0, 0.01, np.sqrt(0.02)], rtol=1e-6)
    np.testing.assert_allclose(schedules["alphas_cumprod"][1], 1 - 1e-4, rtol=1e-7)


def test_cosine_schedule_is_f_t_over_f_0():
    """Nichol & Dhariwal eq. 17: alpha_bar_t = f(t)/f(0) wherever the 0.999 clip on beta_t does not bite (t < T)."""
    T = 1000
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
    schedules = get_schedules(1e-4, 0.02, T, schedule="cosine")
    np.testing.assert_allclose(schedules["alphas_cumprod"][:T], (f / f[0])[:T], rtol=1e-5)
    np.testing.assert_allclose(schedules["alphas"][T], 1 - 0.999, rtol=1e-5)  # beta_T = 1 - f(T)/f(T-1) ~ 1, clipped


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


@pytest.mark.parametrize("schedule", ["quadratic", "Linear", None])
def test_unknown_schedule_is_refused(schedule):
    with pytest.raises(ValueError, match=r"schedule must be one of \['linear', 'cosine'\], got"):
        DiffusionModel(Recorder(), num_timesteps=10, schedule=schedule)


def test_cosine_schedule_does_not_use_the_betas():
    model = DiffusionModel(Recorder(), betas=(1e-4, 0.02), num_timesteps=10, schedule="cosine")
    other = DiffusionModel(Recorder(), betas=(1e-3, 0.5), num_timesteps=10, schedule="cosine")
    assert model.schedule == "cosine" and DiffusionModel(Recorder(), num_timesteps=10).schedule == "linear"
    torch.testing.assert_close(model.alphas_cumprod, other.alphas_cumprod, rtol=0, atol=0)


def test_schedules_are_buffers_rebuilt_from_the_config_not_saved():
    """They follow .to(device) like the loss weights, and a checkpoint holds only the network's weights."""
    model = DiffusionModel(Recorder(), num_timesteps=10, loss_weighting="min_snr")
    buffers = {name for name, _ in model.named_buffers(recurse=False)}
    assert buffers == set(get_schedules(1e-4, 0.02, 10)) | {"loss_weights"}
    assert set(model.state_dict()) == {"eps_model.anchor"}
    assert model.to("meta").alphas_cumprod.device.type == "meta"


@pytest.mark.parametrize("keep_ema", [False, True])
def test_a_checkpoint_with_saved_schedules_loads_with_the_ones_the_config_computes(tmp_path, keep_ema):
    """A checkpoint written when the schedules were in the state dict, by an older computation of them (here 1 %
    off), loads with the schedules and loss weights of its config as computed now, and its weights."""
    from ddpm.checkpoint import save_checkpoint
    from ddpm.config import TrainConfig
    from ddpm.models import build_model
    from ddpm.sampling import load_model

    config = TrainConfig(hidden_size=8, num_timesteps=20, schedule="cosine", prediction="x0",
                         loss_weighting="min_snr", ema_decay=0.9 if keep_ema else None)
    torch.manual_seed(0)
    trained = build_model(config, 1, 8)
    old = {**trained.state_dict(), **{name: value * 1.01 for name, value in
                                      get_schedules(1e-4, 0.02, 20, schedule="cosine").items()}}
    path = save_checkpoint({"config": config.to_dict(), "channels": 1, "image_size": 8, "epoch": 1, "step": 10,
                            "model": old, "ema": old if keep_ema else None}, tmp_path / "epoch_1.pt")

    model = load_model(path)
    for name, value in get_schedules(1e-4, 0.02, 20, schedule="cosine").items():
        torch.testing.assert_close(getattr(model, name), value, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(model.loss_weights, trained.loss_weights, rtol=0, atol=0)
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    with pytest.raises(RuntimeError, match="Unexpected key"):  # keys that are not schedules are still refused
        build_model(config, 1, 8).load_state_dict({**old, "unknown": torch.zeros(1)})


def test_q_sample_uses_sqrt_one_minus_alpha_bar():
    """Homework bug 2: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    model = DiffusionModel(Recorder(), num_timesteps=1000)
    alpha_bar = torch.tensor(reference_alphas_cumprod("linear", 1000), dtype=torch.float32)
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
    """With the exact eps of Gaussian data, Algorithm 2 and DDIM over all steps return that Gaussian.

    N(0.4, 0.15^2) lies inside the data range [-1, 1] (4 std from its edge), where the samplers' clip of x_0 does
    not act."""
    model = DiffusionModel(nn.Identity(), num_timesteps=1000)
    model.eps_model = GaussianOracle(0.4, 0.15, model.alphas_cumprod)
    model = model.to(device)
    x = model.sample(4096, (1, 2, 2), device=device, steps=steps).flatten().cpu().double()
    assert abs(x.mean().item() - 0.4) < 0.01
    assert abs(x.std().item() - 0.15) < 0.01


@pytest.mark.parametrize("schedule, steps", [
    ("linear", None), ("linear", 1), ("linear", 2), ("linear", 5), ("linear", 50),
    # one cosine DDIM step from t = T would divide eps's float32 rounding by sqrt(alpha_bar_T) ~ 5e-5
    ("cosine", None), ("cosine", 2), ("cosine", 5), ("cosine", 50),
])
def test_samplers_land_on_a_single_data_point(schedule, steps):
    """For data that is one point, eps(x_t, t) is known exactly (with alpha_bar as Ho et al. define it), and the
    last step of Algorithm 2 (t = 1 -> 0) and DDIM in any number of steps must land on that point."""
    point = torch.linspace(-0.9, 0.9, 4).reshape(1, 2, 2)
    oracle = PointOracle(point, reference_alphas_cumprod(schedule, 1000))
    model = DiffusionModel(oracle, num_timesteps=1000, schedule=schedule)
    x = model.sample(64, (1, 2, 2), "cpu", steps=steps)
    torch.testing.assert_close(x, point.expand_as(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_with_eta_one_steps_through_the_posterior_of_ho_et_al(schedule):
    """With eta = 1 over all T steps, eq. 16's sigma_t^2 is the posterior variance beta~_t and each step draws
    x_{t-1} ~ q(x_{t-1} | x_t, x_0) of Ho et al. eq. 6-7 at the predicted x_0, here the oracle's point."""
    T = 4
    point = torch.linspace(-0.5, 0.5, 4).reshape(1, 2, 2)
    alpha_bar = torch.as_tensor(reference_alphas_cumprod(schedule, T))
    recorder = Recorder()
    oracle = PointOracle(point, alpha_bar)
    recorder.forward = lambda x, t: (recorder.calls.append((x.clone(), t.clone())), oracle(x, t))[1]
    model = DiffusionModel(recorder, num_timesteps=T, schedule=schedule)
    model.sample(3, (1, 2, 2), "cpu", steps=T, eta=1.0, generator=torch.Generator().manual_seed(0))

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 2, 2, generator=generator).double()  # x_T
    for t, (seen, _) in zip(range(T, 0, -1), recorder.calls):
        torch.testing.assert_close(seen.double(), x, atol=1e-5, rtol=0)
        beta = 1 - alpha_bar[t] / alpha_bar[t - 1]
        mean = (alpha_bar[t - 1].sqrt() * beta * point + (1 - beta).sqrt() * (1 - alpha_bar[t - 1]) * x) / (1 - alpha_bar[t])
        variance = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta  # beta~_t (eq. 7)
        x = mean + variance.sqrt() * torch.randn(x.shape, generator=generator).double()


def test_ddim_eta_one_over_every_step_has_the_posterior_variance_not_beta():
    """With steps = T and eta = 1, DDIM's sigma_t^2 (eq. 16) is the posterior variance beta~_t =
    (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t of Ho et al. eq. 7, not Algorithm 2's sigma_t^2 = beta_t.

    For data at 0 the oracle's x_0 is 0, so each step is x_{t-1} = a_t x_t + sigma_t z_t: a least-squares fit of
    x_{t-1} on (x_t, z_t), with the z_t replayed from the generator, measures sigma_t."""
    T = 20
    recorder = Recorder()
    model = DiffusionModel(recorder, num_timesteps=T)  # the default linear schedule, 1e-4 .. 0.02
    oracle = PointOracle(torch.zeros(1, 2, 2), model.alphas_cumprod.double())
    recorder.forward = lambda x, t: (recorder.calls.append((x.clone(), t.clone())), oracle(x, t))[1]
    model.sample(64, (1, 2, 2), "cpu", steps=T, eta=1.0, generator=torch.Generator().manual_seed(0))
    assert [round(t[0].item() * T) for _, t in recorder.calls] == list(range(T, 0, -1))  # every step

    generator = torch.Generator().manual_seed(0)
    torch.randn(64, 1, 2, 2, generator=generator)  # x_T
    alpha_bar, beta = model.alphas_cumprod.double(), 1 - model.alphas.double()
    xs = [x.double().flatten() for x, _ in recorder.calls]  # x_T .. x_1
    for t, x_t, x_prev in zip(range(T, 1, -1), xs, xs[1:]):
        z = torch.randn(64, 1, 2, 2, generator=generator).double().flatten()
        _, sigma = torch.linalg.lstsq(torch.stack([x_t, z], 1), x_prev[:, None]).solution.flatten().tolist()
        beta_tilde = ((1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]).item()
        assert sigma**2 == pytest.approx(beta_tilde, rel=1e-3), t
        assert abs(sigma**2 - beta[t].item()) > 0.05 * beta[t].item(), t
    for doc in (DiffusionModel.sample.__doc__, samplers.ddim.__doc__):
        assert "beta~_t" in doc and "ancestral sampling on the shorter chain" not in doc


@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize("steps", [2, 50])
def test_stochastic_ddim_lands_on_a_single_data_point(eta, steps):
    point = torch.linspace(-0.9, 0.9, 4).reshape(1, 2, 2)
    model = DiffusionModel(PointOracle(point, reference_alphas_cumprod("cosine", 1000)), num_timesteps=1000,
                           schedule="cosine")
    x = model.sample(64, (1, 2, 2), "cpu", steps=steps, eta=eta, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, point.expand_as(x), atol=1e-4, rtol=0)


def test_stochastic_ddim_recovers_the_data_distribution():
    """With the exact eps of Gaussian data, DDIM with eta = 1 over all steps samples that Gaussian."""
    model = DiffusionModel(nn.Identity(), num_timesteps=1000)
    model.eps_model = GaussianOracle(0.4, 0.15, model.alphas_cumprod)
    x = model.sample(4096, (1, 2, 2), "cpu", steps=1000, eta=1.0, generator=torch.Generator().manual_seed(0)).double()
    assert abs(x.mean().item() - 0.4) < 0.01
    assert abs(x.std().item() - 0.15) < 0.01


@pytest.mark.parametrize("eta", [-0.1, 1.5])
def test_ddim_eta_out_of_range(eta):
    with pytest.raises(ValueError, match=r"DDIM eta must be in \[0, 1\], got"):
        DiffusionModel(Recorder(), num_timesteps=10).sample(1, (1, 2, 2), "cpu", steps=2, eta=eta)


def test_fewer_ddim_steps_trade_accuracy_for_speed():
    """DDIM's discretisation error on Gaussian data shrinks as the steps grow."""
    model = DiffusionModel(nn.Identity(), num_timesteps=1000)
    model.eps_model = GaussianOracle(0.4, 0.15, model.alphas_cumprod)
    errors = []
    for steps in (10, 50, 200):
        torch.manual_seed(0)
        errors.append(abs(model.sample(4096, (1, 2, 2), "cpu", steps=steps).std().item() - 0.15))
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


@pytest.mark.parametrize("sampler", ["ddim", "dpm_solver", "dpm_solver_sde"])
@pytest.mark.parametrize("steps", [0, 11, 2.0, True, "5", np.float64(3)])
def test_steps_out_of_range(steps, sampler):
    model = DiffusionModel(Recorder(), num_timesteps=10)
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 10\]"):
        model.sample(1, (1, 2, 2), "cpu", steps=steps, sampler=sampler)


def test_ddim_steps_may_be_a_numpy_integer():
    model = DiffusionModel(UNet(1, 1, hidden_size=8, image_size=8), num_timesteps=10)
    draw = lambda steps: model.sample(2, (1, 8, 8), "cpu", steps=steps, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draw(np.int64(5)), draw(5), rtol=0, atol=0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [None, 1, 10])
def test_untrained_unet_samples_are_finite_and_in_range(schedule, steps):
    """An untrained network's eps is far off, and at t = T of the cosine schedule 1/sqrt(alpha_bar_T) ~ 2000
    (T = 100) would magnify that into samples in the thousands: both samplers clip x_0 to the data range."""
    model = DiffusionModel(UNet(1, 1, hidden_size=8, image_size=8), num_timesteps=100, schedule=schedule)
    x = model.sample(4, (1, 8, 8), "cpu", steps=steps, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    assert x.abs().max() <= 1 + 1e-6  # Algorithm 2's last step reproduces the clipped x_0 up to float32 rounding


@pytest.mark.parametrize("shape, dtype, message", [
    ((3, 8, 8), torch.float32, r"got shape \(3, 8, 8\)"),
    ((2, 1, 3, 8, 8), torch.float32, r"got shape \(2, 1, 3, 8, 8\)"),
    ((2, 1, 8, 8), torch.uint8, "got dtype torch.uint8"),
    ((2, 1, 8, 8), torch.int64, "got dtype torch.int64"),
])
def test_forward_refuses_inputs_that_are_not_float_nchw(shape, dtype, message):
    """A single image or raw uint8 pixels must not broadcast into a loss or fail deep inside PyTorch."""
    recorder = Recorder()
    model = DiffusionModel(recorder, num_timesteps=10)
    with pytest.raises(ValueError, match=r"inputs are float \(N, C, H, W\) in \[-1, 1\]; " + message):
        model(torch.zeros(shape, dtype=dtype))
    assert recorder.calls == []  # refused before any work


def test_input_checks_work_under_torch_compile():
    """The checks are on shape and dtype only: torch.compile traces forward as one graph, and still refuses."""
    model = DiffusionModel(Recorder(), num_timesteps=10)
    x0, t, noise = torch.randn(2, 1, 8, 8), torch.tensor([1, 10]), torch.randn(2, 1, 8, 8)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x0, t=t, noise=noise), model(x0, t=t, noise=noise))
    with pytest.raises(ValueError, match=r"inputs are float \(N, C, H, W\) in \[-1, 1\]; got shape \(1, 8, 8\)"):
        torch.compile(model, backend="eager")(x0[0])
