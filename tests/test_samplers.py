"""The sampler registry (ddpm.samplers), its timestep spacings, and the denoiser DiffusionModel.sample hands the
solvers: classifier-free guidance and autoguidance, class labels and label dropout, each with its errors."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from ddpm import checks, samplers
from ddpm.diffusion import DiffusionModel
from ddpm.unet import UNet
from tests.conftest import ROOT

K = 3  # classes of the conditional test networks


class LabelledNet(nn.Module):
    """A class-conditional network of known output, 0.5 x_t + scale (label + 1) t/T, that records the labels of each
    call; row K of its embedding is the null label, as in the package's networks."""

    def __init__(self, scale: float = 0.1, num_classes: int = K):
        super().__init__()
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes + 1, 1)
        with torch.no_grad():
            self.embedding.weight.copy_(scale * torch.arange(1.0, num_classes + 2)[:, None])
        self.calls = []

    def forward(self, x, t, labels=None):
        labels = torch.full((x.shape[0],), self.num_classes) if labels is None else labels
        self.calls.append(labels.clone())
        return 0.5 * x + self.embedding(labels)[:, :, None, None] * t[:, None, None, None]


class Unconditional(nn.Module):
    """A network without labels (no num_classes): 0.5 x_t."""

    def forward(self, x, t):
        return 0.5 * x


def probe(denoise, x, timesteps, schedule, noise):
    """A sampler that returns x_T and what the denoiser makes of it at the first timestep: (x, eps, x0)."""
    eps, x0 = denoise(x, timesteps[0])
    return torch.stack([x, eps, x0])


@pytest.fixture
def with_probe(monkeypatch):
    """The probe as one more sampler: one registry line, as a new sampler is added."""
    monkeypatch.setitem(samplers.SAMPLERS, "probe", samplers.Sampler(probe, ("steps",), "trailing", "a test probe"))


# --- the registry ---------------------------------------------------------------------------------------------------

def test_the_registry_is_the_one_list_of_samplers():
    assert checks.SAMPLERS == tuple(samplers.SAMPLERS) == ("ancestral", "ddim", "dpm_solver", "dpm_solver_sde")
    assert (checks.TIMESTEP_SPACINGS, checks.GUIDANCES) == (samplers.TIMESTEP_SPACINGS, samplers.GUIDANCES)
    for sampler in samplers.SAMPLERS.values():
        assert callable(sampler.solve) and set(sampler.arguments) <= {"steps", "eta"}
        assert sampler.auto_spacing in samplers.TIMESTEP_SPACINGS[1:] and sampler.description
    assert {name: s.arguments for name, s in samplers.SAMPLERS.items()} == {
        "ancestral": (), "ddim": ("steps", "eta"), "dpm_solver": ("steps",), "dpm_solver_sde": ("steps",)}


def test_the_schema_allows_what_the_registry_holds():
    with open(ROOT / "config" / "schema.yaml") as f:
        sampling = yaml.safe_load(f)["properties"]["sampling"]["properties"]
    assert sampling["sampler"]["enum"] == list(samplers.SAMPLERS)
    assert sampling["timestep_spacing"]["enum"] == list(samplers.TIMESTEP_SPACINGS)
    assert sampling["guidance"]["enum"] == list(samplers.GUIDANCES)


# --- timestep spacings ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spacing, expected", [
    ("linspace", [10, 7, 4, 1, 0]),  # 10 - 3i
    ("leading", [7, 5, 3, 1, 0]),  # 2i + 1
    ("trailing", [10, 8, 5, 2, 0]),  # 10 - 2.5i, halves to even
])
def test_each_spacing_on_a_small_case(spacing, expected):
    assert samplers.timesteps(spacing, 10, 4, "ddim") == expected


def test_spacings_stay_in_1_to_T_descending_and_distinct():
    for T in range(1, 41):
        for steps in range(1, T + 1):
            for spacing in samplers.TIMESTEP_SPACINGS[1:]:
                chosen = samplers.timesteps(spacing, T, steps, "ddim")
                assert len(chosen) == steps + 1 and chosen[-1] == 0, (spacing, T, steps)
                assert all(T >= a > b for a, b in zip(chosen, chosen[1:-1])) and chosen[-2] >= 1, (spacing, T, steps)
    assert samplers.timesteps("auto", 50, 50, "ancestral") == list(range(50, -1, -1))


@pytest.mark.parametrize("T", [*range(1, 41), 100, 999, 1000, 2000])
def test_auto_is_each_samplers_timesteps_of_before(T):
    """"auto" keeps the timesteps the samplers had, for every number of steps: DDIM's torch.linspace(T, 1, steps)
    in float32 (whose rounding decides ties such as T = 1000, steps = 43), DPM-Solver's T - i T / steps in float64."""
    for steps in range(1, T + 1):
        ddim = torch.linspace(T, 1, steps).round().long().tolist() + [0]
        dpm_solver = (T - torch.arange(steps, dtype=torch.float64) * (T / steps)).round().long().tolist() + [0]
        assert samplers.timesteps("auto", T, steps, "ddim") == ddim, steps
        assert samplers.timesteps("linspace", T, steps, "dpm_solver") == ddim, steps
        assert samplers.timesteps("auto", T, steps, "dpm_solver") == dpm_solver, steps
        assert samplers.timesteps("trailing", T, steps, "ddim") == dpm_solver, steps


def test_linspace_rounds_ties_as_torch_linspace_did():
    """At T = 1000, 43 steps, T - 21 * 999 / 42 = 500.5 exactly: float32 puts it just above, to 501, where exact
    halving to even would give 500."""
    assert samplers.timesteps("linspace", 1000, 43, "ddim")[21] == 501


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("T, steps", [(10, 4), (100, 7), (1000, 3), (1000, 50), (1000, 333)])
def test_leading_and_trailing_are_diffusers_shifted_to_1_to_T(spacing, T, steps):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    assert samplers.timesteps(spacing, T, steps, "ddim") == [int(t) + 1 for t in scheduler.timesteps] + [0]


def reference_sample(model: DiffusionModel, sampler: str, steps: int, eta: float, seed: int) -> torch.Tensor:
    """The samplers as DiffusionModel held them before the registry, written out step by step (float32 schedule
    tensors, DDIM's coefficients in float64 Python floats), from x_T ~ N(0, I) of 3 images 1x8x8."""
    generator = torch.Generator().manual_seed(seed)
    T, alpha, sigma = model.num_timesteps, model.sqrt_alphas_cumprod, model.sqrt_one_minus_alpha_prod

    def predict(x, t):
        output = model.eps_model(x, torch.full((x.shape[0],), t / T)).float()
        x0 = {"eps": lambda: (x - sigma[t] * output) / alpha[t], "v": lambda: alpha[t] * x - sigma[t] * output,
              "x0": lambda: output}[model.prediction]().clamp(-1, 1)
        return (x - alpha[t] * x0) / sigma[t], x0

    x = torch.randn(3, 1, 8, 8, generator=generator)
    if sampler == "ancestral":
        for t in range(T, 0, -1):
            x = model.inv_sqrt_alphas[t] * (x - predict(x, t)[0] * model.one_minus_alpha_over_prod[t])
            if t > 1:
                x = x + model.sqrt_betas[t] * torch.randn(x.shape, generator=generator)
        return x
    if sampler == "ddim":
        chosen = torch.linspace(T, 1, steps).round().long().tolist() + [0]
        for t, t_prev in zip(chosen, chosen[1:]):
            eps, x0 = predict(x, t)
            a, a_prev = model.alphas_cumprod_float64[t], model.alphas_cumprod_float64[t_prev]
            s = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - s**2, 0.0)) * eps
            if eta > 0 and t_prev > 0:
                x = x + s * torch.randn(x.shape, generator=generator)
        return x
    chosen = (T - torch.arange(steps, dtype=torch.float64) * (T / steps)).round().long().tolist() + [0]
    previous_x0 = previous_h = None
    for s, t in zip(chosen, chosen[1:]):
        _, x0 = predict(x, s)
        if t == 0:
            return x0
        h = (alpha[t] / sigma[t]).log() - (alpha[s] / sigma[s]).log()
        d = x0 if previous_x0 is None else x0 + (x0 - previous_x0) * (h / (2 * previous_h))
        if sampler == "dpm_solver_sde":
            x = (sigma[t] / sigma[s] * (-h).exp() * x + alpha[t] * (-torch.expm1(-2 * h)) * d
                 + sigma[t] * (-torch.expm1(-2 * h)).sqrt() * torch.randn(x.shape, generator=generator))
        else:
            x = sigma[t] / sigma[s] * x - alpha[t] * torch.expm1(-h) * d
        previous_x0, previous_h = x0, h


@pytest.mark.parametrize("prediction, schedule", [("eps", "linear"), ("v", "cosine"), ("x0", "cosine")])
@pytest.mark.parametrize("sampler, steps, eta", [("ancestral", None, 0.0), ("ddim", 7, 0.5), ("ddim", 3, 1.0),
                                                 ("dpm_solver", 5, 0.0), ("dpm_solver_sde", 5, 0.0)])
def test_the_solvers_are_bit_identical_to_the_samplers_of_before(prediction, schedule, sampler, steps, eta):
    torch.manual_seed(0)
    model = DiffusionModel(UNet(1, 1, 8, image_size=8).eval(), num_timesteps=20, schedule=schedule,
                           prediction=prediction)
    ours = model.sample(3, (1, 8, 8), "cpu", steps=steps, eta=eta, sampler=sampler, timestep_spacing="auto",
                        generator=torch.Generator().manual_seed(1))
    expected = reference_sample(model, sampler, steps, eta, seed=1)
    assert torch.equal(ours, expected)
    assert 0.05 < (ours.abs() < 1).float().mean()  # not all clipped


# --- guidance -------------------------------------------------------------------------------------------------------

def expected_denoised(model: DiffusionModel, x: torch.Tensor, output: torch.Tensor, t: int):
    """eps and the clipped x_0 that `output` implies at x_t (float64, from the formulas)."""
    a = model.alphas_cumprod[t].double()
    x, output = x.double(), output.double()
    x0 = {"eps": (x - (1 - a).sqrt() * output) / a.sqrt(), "v": a.sqrt() * x - (1 - a).sqrt() * output,
          "x0": output}[model.prediction].clamp(-1, 1)
    return (x - a.sqrt() * x0) / (1 - a).sqrt(), x0


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("guidance", ["cfg", "auto"])
@pytest.mark.parametrize("scale", [0.0, 2.5])
def test_guidance_combines_the_outputs_before_the_clip(with_probe, prediction, guidance, scale):
    T = 10
    network = LabelledNet(0.1)
    model = DiffusionModel(network, num_timesteps=T, prediction=prediction)
    guide = DiffusionModel(LabelledNet(0.3), num_timesteps=T, prediction=prediction) if guidance == "auto" else None
    labels = torch.tensor([0, 1, 2, 0])
    x, eps, x0 = model.sample(4, (1, 2, 2), "cpu", steps=1, sampler="probe", labels=labels, guidance=guidance,
                              guidance_scale=scale, guide=guide, generator=torch.Generator().manual_seed(0))

    output = 0.5 * x + 0.1 * (labels + 1.0)[:, None, None, None]  # the network at t/T = 1
    if guidance == "cfg":
        guide_output = 0.5 * x + 0.1 * (K + 1)  # the same network with the null label
        assert [c.tolist() for c in network.calls] == [labels.tolist(), [K] * 4]
    else:
        guide_output = 0.5 * x + 0.3 * (labels + 1.0)[:, None, None, None]
        assert [c.tolist() for c in guide.eps_model.calls] == [labels.tolist()]
    expected_eps, expected_x0 = expected_denoised(model, x, guide_output + scale * (output - guide_output), T)
    torch.testing.assert_close(eps.double(), expected_eps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x0.double(), expected_x0, atol=1e-5, rtol=1e-5)
    assert (expected_x0.abs() < 1).any()


@pytest.mark.parametrize("guidance", ["cfg", "auto"])
def test_guidance_scale_one_skips_the_guide_and_is_no_guidance(guidance):
    model = DiffusionModel(LabelledNet(0.1), num_timesteps=10)
    guide = DiffusionModel(LabelledNet(0.3), num_timesteps=10) if guidance == "auto" else None
    labels = torch.tensor([2, 0, 1])

    def draw(**kwargs):
        return model.sample(3, (1, 2, 2), "cpu", steps=4, labels=labels, sampler="dpm_solver_sde",
                            generator=torch.Generator().manual_seed(0), **kwargs)

    unguided = draw()
    model.eps_model.calls.clear()
    guided = draw(guidance=guidance, guidance_scale=1.0, guide=guide)
    assert torch.equal(guided, unguided)
    assert [c.tolist() for c in model.eps_model.calls] == [labels.tolist()] * 4  # one call a step, with the labels
    assert guide is None or guide.eps_model.calls == []
    assert not torch.equal(draw(guidance=guidance, guidance_scale=2.0, guide=guide), unguided)


def test_cfg_with_a_class_conditional_unet():
    """The package's conditional UNet: at scale 0, the guide alone, the null label's samples (those of labels=None);
    at scale 3, other samples than the labels' own."""
    torch.manual_seed(0)
    model = DiffusionModel(UNet(1, 1, 8, image_size=8, num_classes=K).eval(), num_timesteps=10)
    labels = torch.arange(4) % K

    def draw(**kwargs):
        return model.sample(4, (1, 8, 8), "cpu", steps=3, generator=torch.Generator().manual_seed(0), **kwargs)

    assert torch.equal(draw(labels=labels, guidance="cfg", guidance_scale=0.0), draw())  # scale 0: the null label alone
    guided = draw(labels=labels, guidance="cfg", guidance_scale=3.0)
    assert guided.isfinite().all() and not torch.equal(guided, draw(labels=labels))


# --- labels in training ---------------------------------------------------------------------------------------------

def test_training_without_labels_draws_the_random_numbers_it_drew_before():
    """The loss of Algorithm 1 by hand, from the same seed: t, then the noise, and nothing else."""
    T, network = 100, LabelledNet(0.1)
    model = DiffusionModel(network, num_timesteps=T, label_dropout=0.5)
    x0 = torch.rand(8, 1, 2, 2) * 2 - 1
    torch.manual_seed(0)
    loss, after = model(x0), torch.rand(1)
    torch.manual_seed(0)
    t = torch.randint(1, T + 1, (8,))
    noise = torch.randn_like(x0)
    alpha, sigma = model.sqrt_alphas_cumprod[t], model.sqrt_one_minus_alpha_prod[t]
    x_t = alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * noise
    assert torch.equal(loss, F.mse_loss(network(x_t, t / T), noise))
    assert network.calls[-1].tolist() == [K] * 8  # the network's own null label: it was given none
    assert torch.equal(after, torch.rand(1))


def test_labels_are_dropped_by_a_mask_drawn_after_t_and_noise():
    model = DiffusionModel(LabelledNet(0.1), num_timesteps=100, label_dropout=0.5)
    x0, labels = torch.zeros(64, 1, 2, 2), torch.arange(64) % K
    torch.manual_seed(0)
    model(x0, labels=labels)
    torch.manual_seed(0)
    torch.randint(1, 101, (64,))
    torch.randn_like(x0)
    dropped = torch.rand(64) < 0.5
    assert torch.equal(model.eps_model.calls[-1], labels.masked_fill(dropped, K)) and 0 < dropped.sum() < 64


@pytest.mark.parametrize("label_dropout", [0.0, 0.1, 1.0])
def test_label_dropout_rate(label_dropout):
    model = DiffusionModel(LabelledNet(0.1), num_timesteps=100, label_dropout=label_dropout)
    n = 20_000
    torch.manual_seed(0)
    model(torch.zeros(n, 1, 1, 1), labels=torch.arange(n) % K)
    seen = model.eps_model.calls[-1]
    null = (seen == K).float().mean().item()
    assert abs(null - label_dropout) <= 4 * math.sqrt(label_dropout * (1 - label_dropout) / n)
    assert torch.equal(seen[seen != K], (torch.arange(n) % K)[seen != K])  # the others keep their label


# --- errors ---------------------------------------------------------------------------------------------------------

def conditional(**kwargs) -> DiffusionModel:
    return DiffusionModel(LabelledNet(0.1), num_timesteps=10, **kwargs)


LABELS = torch.tensor([0, 1])


@pytest.mark.parametrize("model, kwargs, message", [
    (conditional, {"timestep_spacing": "karras"},
     r"timestep_spacing must be one of \['auto', 'linspace', 'leading', 'trailing'\], got 'karras'"),
    (conditional, {"sampler": "ancestral", "steps": None, "timestep_spacing": "leading"},
     r"timestep_spacing applies to the samplers ddim, dpm_solver, dpm_solver_sde only, "
     r"got 'leading' with sampler 'ancestral'"),
    (conditional, {"guidance": "classifier"}, r"guidance must be one of \['none', 'cfg', 'auto'\], got 'classifier'"),
    (lambda: DiffusionModel(Unconditional(), num_timesteps=10), {"guidance": "cfg", "guidance_scale": 2.0},
     r"guidance 'cfg' needs a class-conditional network \(num_classes > 0\), got an unconditional one"),
    (conditional, {"guidance": "cfg", "guidance_scale": 2.0}, r"guidance 'cfg' needs labels, got labels=None"),
    (conditional, {"labels": LABELS, "guidance": "auto", "guidance_scale": 2.0},
     r"guide is needed by guidance 'auto' and by it only, got guidance 'auto' with guide=None"),
    (conditional, {"guide": conditional()},
     r"guide is needed by guidance 'auto' and by it only, got guidance 'none' with guide=a DiffusionModel"),
    (conditional, {"labels": LABELS, "guidance": "cfg", "guidance_scale": -0.5},
     r"guidance_scale must be a number >= 0, got -0.5"),
    (conditional, {"guidance_scale": 2.0},
     r"guidance_scale applies to guidance 'cfg' or 'auto' only, got guidance_scale=2.0 with guidance 'none'"),
    (lambda: DiffusionModel(Unconditional(), num_timesteps=10), {"labels": LABELS},
     r"labels need a class-conditional network \(num_classes > 0\), got labels for an unconditional one"),
    (conditional, {"labels": torch.tensor([0, 1, 2])},
     r"labels must be a LongTensor of shape \(2,\), got torch.int64 of shape \(3,\)"),
    (conditional, {"labels": torch.tensor([0.0, 1.0])},
     r"labels must be a LongTensor of shape \(2,\), got torch.float32 of shape \(2,\)"),
    (conditional, {"labels": torch.tensor([0, K])}, r"labels must be in \[0, 2\], got labels from 0 to 3"),
    (conditional, {"labels": torch.tensor([-1, 0])}, r"labels must be in \[0, 2\], got labels from -1 to 0"),
    (conditional, {"eta": 0.5, "sampler": "dpm_solver"},
     r"eta applies to the ddim sampler only, got eta=0.5 with sampler 'dpm_solver'"),
])
def test_sampling_arguments_are_checked_by_name(model, kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        model().sample(2, (1, 2, 2), "cpu", **{"steps": 2, **kwargs})


@pytest.mark.parametrize("field, guide, message", [
    ("num_timesteps", lambda: DiffusionModel(LabelledNet(), num_timesteps=20), r"\(10\), got 20"),
    ("schedule", lambda: DiffusionModel(LabelledNet(), num_timesteps=10, schedule="cosine"),
     r"\('linear'\), got 'cosine'"),
    ("betas", lambda: DiffusionModel(LabelledNet(), (1e-4, 0.03), num_timesteps=10),
     r"\(\(0.0001, 0.02\)\), got \(0.0001, 0.03\)"),
    ("prediction", lambda: DiffusionModel(LabelledNet(), num_timesteps=10, prediction="v"), r"\('eps'\), got 'v'"),
    ("num_classes", lambda: DiffusionModel(LabelledNet(num_classes=5), num_timesteps=10), r"\(3\), got 5"),
    ("image_size", lambda: DiffusionModel(UNet(1, 1, 8, image_size=16, num_classes=K), num_timesteps=10),
     r"\(8\), got 16"),
])
def test_the_guide_must_match_the_model(field, guide, message):
    model = DiffusionModel(UNet(1, 1, 8, image_size=8, num_classes=K), num_timesteps=10) if field == "image_size" \
        else conditional()
    with pytest.raises(ValueError, match=f"^guide must have the model's {field} {message}$"):
        model.sample(2, (1, 8, 8), "cpu", steps=2, labels=LABELS, guidance="auto", guidance_scale=2.0, guide=guide())


def test_a_cosine_guide_may_have_other_betas():
    """The cosine schedule does not use the betas."""
    model = DiffusionModel(LabelledNet(), num_timesteps=10, schedule="cosine")
    guide = DiffusionModel(LabelledNet(0.3), (1e-4, 0.03), num_timesteps=10, schedule="cosine")
    model.sample(2, (1, 2, 2), "cpu", steps=2, labels=LABELS, guidance="auto", guidance_scale=2.0, guide=guide)


def test_training_labels_are_checked_by_name():
    with pytest.raises(ValueError, match=r"^labels need a class-conditional network \(num_classes > 0\)"):
        DiffusionModel(Unconditional(), num_timesteps=10)(torch.zeros(2, 1, 2, 2), labels=LABELS)
    with pytest.raises(ValueError, match=r"^labels must be a LongTensor of shape \(2,\), got torch.int64 of shape "
                                         r"\(2, 1\)$"):
        conditional()(torch.zeros(2, 1, 2, 2), labels=LABELS[:, None])


@pytest.mark.parametrize("label_dropout", [-0.1, 1.5, True, "0.1"])
def test_label_dropout_out_of_range(label_dropout):
    with pytest.raises(ValueError, match=f"^label_dropout must be a number in \\[0, 1\\], got {label_dropout!r}$"):
        conditional(label_dropout=label_dropout)

