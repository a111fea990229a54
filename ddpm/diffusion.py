"""DDPM (Ho et al. 2020) with the homework's vocabulary; eps, v or x_0 prediction with uniform or Min-SNR loss
weights; class labels with label dropout; sampling by the solvers of ddpm.samplers (ancestral, DDIM, DPM-Solver++(2M))
over one denoiser, with classifier-free guidance or autoguidance.

Schedules are indexed by t = 0..T as in Ho et al.: index 0 is the data (beta_0 = 0, alpha_bar_0 = 1) and
alpha_bar_t = prod_{s=1..t} alpha_s, so the last reverse step, t = 1 -> 0, lands exactly on x_0.
Training draws t from 1..T and feeds the network t/T.
"""

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddpm.checks import LOSS_WEIGHTINGS, PREDICTIONS, SCHEDULES, check_betas, check_choice, check_int, check_positive
from ddpm.samplers import GUIDANCES, SAMPLERS, samplers_taking, timesteps

COSINE_OFFSET = 0.008  # s of Nichol & Dhariwal 2021, eq. 17
MAX_BETA = 0.999  # their clip on beta_t near t = T, where alpha_bar_t / alpha_bar_{t-1} goes to 0
DEFAULT_STEPS = 50  # network evaluations of the samplers that take a number of steps


def _betas(beta1: float, beta2: float, num_timesteps: int, schedule: str) -> torch.Tensor:
    """beta_t for t = 0..T in float64, with beta_0 = 0."""
    if schedule == "linear":
        betas = torch.linspace(beta1, beta2, num_timesteps, dtype=torch.float64)  # beta_1 = beta1 .. beta_T = beta2
    else:
        t = torch.arange(num_timesteps + 1, dtype=torch.float64)
        f = torch.cos((t / num_timesteps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2  # f(t)
        betas = (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)  # beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, at most 0.999
    return torch.cat([torch.zeros(1, dtype=torch.float64), betas])  # beta_0 = 0: x_0 is the data


def get_schedules(
    beta1: float, beta2: float, num_timesteps: int, schedule: str = "linear"
) -> dict[str, torch.Tensor]:
    """The quantities DDPM needs, as float32 tensors indexed by t = 0..T (index 0: beta_0 = 0, alpha_bar_0 = 1).

    schedule="linear": beta_1..beta_T evenly spaced from beta1 to beta2 (Ho et al. 2020, section 4).
    schedule="cosine": alpha_bar_t = f(t)/f(0), f(t) = cos(((t/T + s)/(1 + s)) pi/2)^2 with s = 0.008 and
    beta_t = 1 - alpha_bar_t/alpha_bar_{t-1} clipped at 0.999 (Nichol & Dhariwal 2021, eq. 17); beta1 and
    beta2 are not used. As in their code, alpha_bar is the product of the clipped alphas, so it differs
    from f(t)/f(0) only at t = T. The sampling coefficient (1 - alpha_t) / sqrt(1 - alpha_bar_t), 0/0 at
    t = 0 and never used there, is set to 0.
    """
    num_timesteps = check_int("num_timesteps", num_timesteps, minimum=1)
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "linear":
        check_betas(beta1, beta2)
    betas = _betas(beta1, beta2, num_timesteps, schedule)
    alphas = 1 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    sqrt_one_minus_alpha_prod = (1 - alphas_cumprod).sqrt()
    schedules = {
        "alphas": alphas,  # alpha_t = 1 - beta_t
        "inv_sqrt_alphas": 1 / alphas.sqrt(),  # 1 / sqrt(alpha_t)
        "sqrt_betas": betas.sqrt(),  # sigma_t = sqrt(beta_t)
        "alphas_cumprod": alphas_cumprod,  # alpha_bar_t = prod_{s=1..t} alpha_s
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),  # sqrt(alpha_bar_t)
        "sqrt_one_minus_alpha_prod": sqrt_one_minus_alpha_prod,  # sqrt(1 - alpha_bar_t)
        "one_minus_alpha_over_prod": (betas / sqrt_one_minus_alpha_prod).nan_to_num(),  # (1 - alpha_t) / sqrt(1 - alpha_bar_t)
    }
    return {name: value.float() for name, value in schedules.items()}


def _per_sample(coefficient: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Pick coefficient[t] for each sample, shaped to broadcast over (C, H, W)."""
    return coefficient[t][:, None, None, None]


def loss_weights(alphas_cumprod: torch.Tensor, prediction: str, loss_weighting: str, min_snr_gamma: float) -> torch.Tensor:
    """The weight of each timestep's squared error, for t = 0..T (float64; index 0 is never drawn).

    "uniform": 1, Ho et al.'s simple loss for each target. "min_snr": Min-SNR-gamma (Hang et al. 2023, eq. 9
    and their Table 1), the x0-loss weight min(SNR_t, gamma) with SNR_t = alpha_bar_t / (1 - alpha_bar_t),
    expressed for the target the network predicts: min(SNR, gamma) / SNR for eps, min(SNR, gamma) / (SNR + 1)
    for v, min(SNR, gamma) for x0.
    """
    if loss_weighting == "uniform":
        return torch.ones_like(alphas_cumprod)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    clipped = snr.clamp(max=min_snr_gamma)
    weights = {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[prediction]
    return weights.nan_to_num(nan=0.0, posinf=0.0)  # t = 0: SNR = inf, never drawn


class DiffusionModel(nn.Module):
    """A DDPM around the network `eps_model(x_t, t/T)`; `schedule` is "linear" (from `betas`) or "cosine".

    The network predicts `prediction`: "eps", the noise (Ho et al. 2020); "v" = sqrt(alpha_bar_t) eps -
    sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022, section 4); or "x0", the data. It keeps the homework's name,
    `eps_model`, whatever it predicts. `loss_weighting` weighs each timestep's squared error (see loss_weights).
    A class-conditional network (`num_classes` K > 0) is called `eps_model(x_t, t/T, labels)`, label K meaning
    "no class"; training replaces each label by K with probability `label_dropout` (see forward).

    The schedule tensors and loss weights are functions of the constructor's arguments: buffers that follow
    .to(device) but stay out of the state dict, rebuilt from the config on load (a checkpoint that holds them,
    from before, loads with them ignored).
    """

    def __init__(
        self,
        eps_model: nn.Module,
        betas: tuple[float, float] = (1e-4, 0.02),
        num_timesteps: int = 1000,
        schedule: str = "linear",
        prediction: str = "eps",
        loss_weighting: str = "uniform",
        min_snr_gamma: float = 5.0,
        label_dropout: float = 0.0,
    ):
        super().__init__()
        check_choice("prediction", prediction, PREDICTIONS)
        check_choice("loss_weighting", loss_weighting, LOSS_WEIGHTINGS)
        check_positive("min_snr_gamma", min_snr_gamma)
        if isinstance(label_dropout, bool) or not isinstance(label_dropout, (int, float)) or \
                not 0 <= label_dropout <= 1:
            raise ValueError(f"label_dropout must be a number in [0, 1], got {label_dropout!r}")
        self.eps_model = eps_model
        self.betas = tuple(betas)
        self.schedule, self.prediction, self.loss_weighting = schedule, prediction, loss_weighting
        self.label_dropout = label_dropout
        for name, value in get_schedules(*self.betas, num_timesteps, schedule=schedule).items():
            self.register_buffer(name, value, persistent=False)
        self.num_timesteps = len(self.alphas) - 1  # T, a plain int even when given as a NumPy integer
        alphas_cumprod = torch.cumprod(1 - _betas(*self.betas, self.num_timesteps, schedule), dim=0)
        self.alphas_cumprod_float64 = alphas_cumprod.tolist()  # alpha_bar_t as Python floats, for DDIM's step
        weights = loss_weights(alphas_cumprod, prediction, loss_weighting, min_snr_gamma)
        self.register_buffer("loss_weights", weights.float(), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args):
        """Ignore the schedule tensors that checkpoints saved before they left the state dict: the config's own,
        computed at construction, stay."""
        for name, _ in self.named_buffers(recurse=False):
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)  (Ho et al. eq. 4)."""
        return _per_sample(self.sqrt_alphas_cumprod, t) * x0 + _per_sample(self.sqrt_one_minus_alpha_prod, t) * noise

    def forward(self, x0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """Algorithm 1: the squared error of the network's prediction of eps (Ho et al.'s simple loss), v or x_0
        at x_t, t ~ U{1..T}, eps ~ N(0, I), weighted per timestep by `loss_weighting`.

        `x0` is a float batch (N, C, H, W) in [-1, 1]. `t` and `noise` may be given to make one step
        reproducible (e.g. to compare distributed runs). `labels` (N,) condition a class-conditional network;
        each is replaced by the null label K with probability `label_dropout` (Ho & Salimans 2022, Algorithm 1),
        the mask drawn after t and noise, so that training without labels draws the same random numbers.
        """
        if x0.ndim != 4:
            raise ValueError(f"inputs are float (N, C, H, W) in [-1, 1]; got shape {tuple(x0.shape)} "
                             f"(a single image needs a batch dimension: x[None])")
        if not x0.is_floating_point():
            raise ValueError(f"inputs are float (N, C, H, W) in [-1, 1]; got dtype {x0.dtype} "
                             f"(map uint8 pixels with x.float() / 127.5 - 1)")
        if t is None:
            t = torch.randint(1, self.num_timesteps + 1, (x0.shape[0],), device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        if labels is None:
            output = self.eps_model(x_t, t / self.num_timesteps)
        else:
            self._check_labels_shape(labels, x0.shape[0])
            dropped = torch.rand(labels.shape, device=x0.device) < self.label_dropout
            output = self.eps_model(x_t, t / self.num_timesteps, labels.masked_fill(dropped, self.num_classes))
        if self.prediction == "eps":
            target = noise
        elif self.prediction == "v":
            target = _per_sample(self.sqrt_alphas_cumprod, t) * noise - _per_sample(self.sqrt_one_minus_alpha_prod, t) * x0
        else:
            target = x0
        if self.loss_weighting == "uniform":
            return F.mse_loss(output, target)
        squared_errors = F.mse_loss(output.float(), target, reduction="none").mean(dim=(1, 2, 3))
        return (self.loss_weights[t] * squared_errors).mean()

    @property
    def num_classes(self) -> int:
        """K, the classes of a class-conditional network (its null label is K); 0 for an unconditional one (also
        for a network without `num_classes`)."""
        return getattr(self.eps_model, "num_classes", 0)

    def _check_labels_shape(self, labels: torch.Tensor, num_samples: int) -> None:
        if not self.num_classes:
            raise ValueError("labels need a class-conditional network (num_classes > 0), got labels for an "
                             "unconditional one")
        if labels.dtype != torch.long or tuple(labels.shape) != (num_samples,):
            raise ValueError(f"labels must be a LongTensor of shape ({num_samples},), got {labels.dtype} of shape "
                             f"{tuple(labels.shape)}")

    @torch.inference_mode()
    def sample(
        self,
        num_samples: int,
        size: tuple[int, ...],
        device: torch.device | str,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        sampler: str | None = None,
        timestep_spacing: str = "auto",
        labels: torch.Tensor | None = None,
        guidance: str = "none",
        guidance_scale: float = 1.0,
        guide: "DiffusionModel | None" = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Draw samples in [-1, 1] with `sampler` (by default "ddim" when `steps` is given, else "ancestral";
        ddpm.samplers.SAMPLERS):

        - "ancestral": Algorithm 2 of Ho et al. over all T steps;
        - "ddim": DDIM (Song et al. 2021) over `steps` steps with noise scale `eta` (0: deterministic; 1 with
          steps = T: the posterior variance beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t of Ho et
          al. eq. 7, DDPM's other choice of sigma_t^2, not Algorithm 2's beta_t);
        - "dpm_solver", "dpm_solver_sde": DPM-Solver++(2M) and its SDE variant (Lu et al. 2022) over `steps`
          steps (default 50 for the samplers that take steps).

        `timestep_spacing` picks the timesteps of the samplers that take steps (ddpm.samplers.timesteps; "auto":
        each sampler's own). `labels` (num_samples,) condition a class-conditional network (None: the null label).
        `guidance` "cfg" (classifier-free guidance, Ho & Salimans 2022) or "auto" (autoguidance, Karras et al.
        2024, by `guide`, a DiffusionModel of the same schedule and target) moves the network's output from the
        guide's, the same network with the null label for "cfg": guide + guidance_scale (output - guide),
        before the clip of x_0 (see eps_and_x0); guidance_scale 1 is no guidance, 0 the guide alone.
        `callback(i, n)` is called after the i-th of the n evaluations of the denoiser (k-diffusion's callback:
        progress bars).
        """
        sampler = sampler or ("ancestral" if steps is None else "ddim")
        steps = self._check_sampler(sampler, steps, eta, timestep_spacing)
        chosen = timesteps(timestep_spacing, self.num_timesteps, steps, sampler)
        self._check_guidance(labels, guidance, guidance_scale, guide)
        if labels is not None:
            self._check_labels_shape(labels, num_samples)
            low, high = labels.min().item(), labels.max().item()
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"labels must be in [0, {self.num_classes - 1}], got labels from {low} to {high}")
            labels = labels.to(device)
        denoise = self._denoiser(labels, guidance, guidance_scale, guide)
        if callback is not None:
            denoise = _reporting(denoise, callback, len(chosen) - 1)
        noise = lambda x: torch.randn(x.shape, device=x.device, generator=generator)  # noqa: E731
        schedule = dict(self.named_buffers(recurse=False), alphas_cumprod_float64=self.alphas_cumprod_float64)
        x = torch.randn(num_samples, *size, device=device, generator=generator)  # x_T ~ N(0, I)
        arguments = {"eta": eta} if "eta" in SAMPLERS[sampler].arguments else {}
        return SAMPLERS[sampler].solve(denoise, x, chosen, schedule, noise, **arguments)

    def _check_sampler(self, sampler: str, steps: int | None, eta: float, timestep_spacing: str) -> int:
        """The number of steps `sampler` takes (DEFAULT_STEPS by default, T for one without steps), after the
        checks of the fields it takes."""
        check_choice("sampler", sampler, SAMPLERS)
        takes = SAMPLERS[sampler].arguments
        if "steps" not in takes and steps not in (None, self.num_timesteps):
            raise ValueError(f"the {sampler} sampler takes all num_timesteps ({self.num_timesteps}) steps, got "
                             f"steps={steps!r}: choose one of the samplers {samplers_taking('steps')} for fewer")
        if eta and "eta" not in takes:
            raise ValueError(f"eta applies to the {samplers_taking('eta')} sampler only, got eta={eta!r} with "
                             f"sampler {sampler!r}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"DDIM eta must be in [0, 1], got {eta!r}")
        if timestep_spacing != "auto" and "steps" not in takes:
            raise ValueError(f"timestep_spacing applies to the samplers {samplers_taking('steps')} only, got "
                             f"{timestep_spacing!r} with sampler {sampler!r}")
        if "steps" not in takes:
            return self.num_timesteps
        return check_int("steps", DEFAULT_STEPS if steps is None else steps, minimum=1, maximum=self.num_timesteps)

    def _check_guidance(self, labels: torch.Tensor | None, guidance: str, guidance_scale: float,
                        guide: "DiffusionModel | None") -> None:
        check_choice("guidance", guidance, GUIDANCES)
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or not guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be a number >= 0, got {guidance_scale!r}")
        if guidance == "none" and guidance_scale != 1.0:
            raise ValueError(f"guidance_scale applies to guidance 'cfg' or 'auto' only, got guidance_scale="
                             f"{guidance_scale!r} with guidance 'none'")
        if guidance == "cfg" and not self.num_classes:
            raise ValueError("guidance 'cfg' needs a class-conditional network (num_classes > 0), got an "
                             "unconditional one")
        if guidance == "cfg" and labels is None:
            raise ValueError("guidance 'cfg' needs labels, got labels=None")
        if (guide is not None) != (guidance == "auto"):
            raise ValueError(f"guide is needed by guidance 'auto' and by it only, got guidance {guidance!r} with "
                             f"guide={'a DiffusionModel' if guide is not None else None}")
        if guide is not None:
            self.check_guide(guide)

    def check_guide(self, guide: "DiffusionModel") -> None:
        """A ValueError naming the first difference unless `guide` can guide this model (guidance "auto"): the same
        T, schedule, betas, prediction target, classes and image shape."""
        network, guide_network = self.eps_model, guide.eps_model
        for name, mine, theirs in [
            ("num_timesteps", self.num_timesteps, guide.num_timesteps), ("schedule", self.schedule, guide.schedule),
            ("betas", self.betas, guide.betas), ("prediction", self.prediction, guide.prediction),
            ("num_classes", self.num_classes, guide.num_classes),
            *((name, getattr(network, name, None), getattr(guide_network, name, None))
              for name in ("in_channels", "out_channels", "image_size"))]:
            if mine != theirs and not (name == "betas" and self.schedule == "cosine"):
                raise ValueError(f"guide must have the model's {name} ({mine!r}), got {theirs!r}")

    def model_output(self, x: torch.Tensor, t: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The network's raw output (eps, v or x_0, as `prediction` says) at x_t and the integer timestep t, fed
        t/T, in float32; `labels` for a class-conditional network (None: the null label)."""
        t_fraction = torch.full((x.shape[0],), t / self.num_timesteps, device=x.device)
        if labels is None:
            return self.eps_model(x, t_fraction).float()
        return self.eps_model(x, t_fraction, labels).float()

    def _denoiser(self, labels: torch.Tensor | None, guidance: str, guidance_scale: float,
                  guide: "DiffusionModel | None") -> Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]:
        """denoise(x_t, t) -> (eps, x0), the samplers' one view of the network: its output, guided (the guide
        evaluated only when guidance_scale != 1), converted to the clipped x_0 and its eps."""
        guided = guidance != "none" and guidance_scale != 1.0
        guide_labels = torch.full_like(labels, self.num_classes) if guidance == "cfg" else labels  # cfg: the null label

        def denoise(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
            output = self.model_output(x, t, labels)
            if guided:
                guide_output = (self if guidance == "cfg" else guide).model_output(x, t, guide_labels)
                output = guide_output + guidance_scale * (output - guide_output)
            return self.eps_and_x0(x, t, output)

        return denoise

    def eps_and_x0(self, x: torch.Tensor, t: int, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The eps and x_0 that the network's `output` at (x_t, t/T) implies, from x_t = sqrt(alpha_bar_t) x_0 +
        sqrt(1 - alpha_bar_t) eps: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) from eps,
        x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v from v (Salimans & Ho 2022, section 4).

        x_0 is clipped to the data range [-1, 1] and eps re-derived from the clipped x_0, as the code of Ho et
        al. and of Nichol & Dhariwal does (Algorithm 2's step then is the posterior mean of Ho et al. eq. 7
        at the clipped x_0); where nothing is clipped both are unchanged. Without the clip, the division by
        sqrt(alpha_bar_t), about 5e-5 at t = T of the cosine schedule, would magnify any error in eps some
        2e4-fold.
        """
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self.sqrt_alphas_cumprod[t], self.sqrt_one_minus_alpha_prod[t]
        if self.prediction == "eps":
            x0 = (x - sqrt_one_minus_alpha_bar * output) / sqrt_alpha_bar
        elif self.prediction == "v":
            x0 = sqrt_alpha_bar * x - sqrt_one_minus_alpha_bar * output
        else:
            x0 = output
        x0 = x0.clamp(-1, 1)
        return (x - sqrt_alpha_bar * x0) / sqrt_one_minus_alpha_bar, x0


def _reporting(denoise: Callable, callback: Callable[[int, int], None], total: int) -> Callable:
    """`denoise` that calls `callback(i, total)` after its i-th evaluation."""
    evaluations = 0

    def reporting(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal evaluations
        result = denoise(x, t)
        evaluations += 1
        callback(evaluations, total)
        return result

    return reporting
