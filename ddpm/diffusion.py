"""DDPM (Ho et al. 2020) with the homework's vocabulary; eps, v or x_0 prediction with uniform or Min-SNR loss
weights; ancestral, DDIM (Song et al. 2021) and DPM-Solver++(2M) (Lu et al. 2022) sampling.

Schedules are indexed by t = 0..T as in Ho et al.: index 0 is the data (beta_0 = 0, alpha_bar_0 = 1) and
alpha_bar_t = prod_{s=1..t} alpha_s, so the last reverse step, t = 1 -> 0, lands exactly on x_0.
Training draws t from 1..T and feeds the network t/T.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddpm.checks import (LOSS_WEIGHTINGS, PREDICTIONS, SAMPLERS, SCHEDULES, check_betas, check_choice,
                         check_int, check_positive)

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
    ):
        super().__init__()
        check_choice("prediction", prediction, PREDICTIONS)
        check_choice("loss_weighting", loss_weighting, LOSS_WEIGHTINGS)
        check_positive("min_snr_gamma", min_snr_gamma)
        self.eps_model = eps_model
        self.betas = tuple(betas)
        self.schedule, self.prediction, self.loss_weighting = schedule, prediction, loss_weighting
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

    def forward(self, x0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Algorithm 1: the squared error of the network's prediction of eps (Ho et al.'s simple loss), v or x_0
        at x_t, t ~ U{1..T}, eps ~ N(0, I), weighted per timestep by `loss_weighting`.

        `x0` is a float batch (N, C, H, W) in [-1, 1]. `t` and `noise` may be given to make one step
        reproducible (e.g. to compare distributed runs).
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
        output = self.eps_model(x_t, t / self.num_timesteps)
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
    ) -> torch.Tensor:
        """Draw samples in [-1, 1] with `sampler` (by default "ddim" when `steps` is given, else "ancestral"):

        - "ancestral": Algorithm 2 of Ho et al. over all T steps;
        - "ddim": DDIM (Song et al. 2021) over `steps` steps with noise scale `eta` (0: deterministic; 1 with
          steps = T: the posterior variance beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t of Ho et
          al. eq. 7, DDPM's other choice of sigma_t^2, not Algorithm 2's beta_t);
        - "dpm_solver", "dpm_solver_sde": DPM-Solver++(2M) and its SDE variant (Lu et al. 2022) over `steps`
          steps (default 50 for the samplers that take steps).
        """
        sampler = sampler or ("ancestral" if steps is None else "ddim")
        check_choice("sampler", sampler, SAMPLERS)
        if sampler == "ancestral" and steps not in (None, self.num_timesteps):
            raise ValueError(f"the ancestral sampler takes all num_timesteps ({self.num_timesteps}) steps, got "
                             f"steps={steps!r}: choose sampler ddim or dpm_solver for fewer")
        if sampler != "ancestral":
            steps = check_int("steps", DEFAULT_STEPS if steps is None else steps, minimum=1, maximum=self.num_timesteps)
        if eta and sampler != "ddim":
            raise ValueError(f"eta applies to the ddim sampler only, got eta={eta!r} with sampler {sampler!r}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"DDIM eta must be in [0, 1], got {eta!r}")
        x = torch.randn(num_samples, *size, device=device, generator=generator)  # x_T ~ N(0, I)
        if sampler == "ancestral":
            return self._ancestral(x, generator)
        if sampler == "ddim":
            return self._ddim(x, steps, eta, generator)
        return self._dpm_solver(x, steps, generator, stochastic=sampler == "dpm_solver_sde")

    def _predict(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The eps and x_0 that the network's prediction at (x_t, t/T) implies, from x_t = sqrt(alpha_bar_t) x_0 +
        sqrt(1 - alpha_bar_t) eps: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) from eps,
        x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v from v (Salimans & Ho 2022, section 4).

        x_0 is clipped to the data range [-1, 1] and eps re-derived from the clipped x_0, as the code of Ho et
        al. and of Nichol & Dhariwal does (Algorithm 2's step then is the posterior mean of Ho et al. eq. 7
        at the clipped x_0); where nothing is clipped both are unchanged. Without the clip, the division by
        sqrt(alpha_bar_t), about 5e-5 at t = T of the cosine schedule, would magnify any error in eps some
        2e4-fold.
        """
        t_fraction = torch.full((x.shape[0],), t / self.num_timesteps, device=x.device)
        output = self.eps_model(x, t_fraction).float()
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self.sqrt_alphas_cumprod[t], self.sqrt_one_minus_alpha_prod[t]
        if self.prediction == "eps":
            x0 = (x - sqrt_one_minus_alpha_bar * output) / sqrt_alpha_bar
        elif self.prediction == "v":
            x0 = sqrt_alpha_bar * x - sqrt_one_minus_alpha_bar * output
        else:
            x0 = output
        x0 = x0.clamp(-1, 1)
        return (x - sqrt_alpha_bar * x0) / sqrt_one_minus_alpha_bar, x0

    def _ancestral(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Algorithm 2: x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t/sqrt(1 - alpha_bar_t) eps) + sigma_t z."""
        for t in range(self.num_timesteps, 0, -1):
            # 1. predict noise (consistent with the clipped x_0, see _predict)
            eps, _ = self._predict(x, t)
            # 2. compute the previous sample, adding fresh noise except at the last step
            x = self.inv_sqrt_alphas[t] * (x - eps * self.one_minus_alpha_over_prod[t])
            if t > 1:
                x = x + self.sqrt_betas[t] * torch.randn(x.shape, device=x.device, generator=generator)
        return x

    def _ddim(self, x: torch.Tensor, steps: int, eta: float, generator: torch.Generator | None) -> torch.Tensor:
        """DDIM (Song et al. eq. 12) over `steps` timesteps evenly spaced in [1, T], then to t = 0, with
        sigma_t = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev) (eq. 16).

        With eta = 1 and steps = T, sigma_t^2 is the posterior variance beta~_t = (1 - alpha_bar_{t-1}) /
        (1 - alpha_bar_t) beta_t (Ho et al. eq. 7), not Algorithm 2's beta_t; fewer steps use the same formula
        between the chosen timesteps."""
        timesteps = torch.linspace(self.num_timesteps, 1, steps).round().long().tolist() + [0]
        for t, t_prev in zip(timesteps[:-1], timesteps[1:]):
            # 1. predict noise, and from it x_0 (clipped, see _predict)
            eps, x0 = self._predict(x, t)
            # 2. move to the previous timestep: the direction to x_t, plus fresh noise when eta > 0; the coefficients
            # in float64, where 1 - alpha_bar_prev - sigma^2 does not cancel to 0 (it is 7.7e-8 at the first of 10
            # cosine steps with eta = 1, t = 1000 -> 889)
            alpha_bar, alpha_bar_prev = self.alphas_cumprod_float64[t], self.alphas_cumprod_float64[t_prev]
            sigma = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))
            x = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0)) * eps
            if eta > 0 and t_prev > 0:
                x = x + sigma * torch.randn(x.shape, device=x.device, generator=generator)
        return x

    def _dpm_solver(self, x: torch.Tensor, steps: int, generator: torch.Generator | None, stochastic: bool) -> torch.Tensor:
        """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2: multistep, second order, data prediction) over `steps`
        network evaluations at t_i = round(T - i T / steps), i = 0..steps - 1 (evenly spaced from T, the
        "trailing" spacing of Lin et al. 2024, Table 2), then to the data at t = 0.

        With alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), lambda_t = log(alpha_t / sigma_t) and
        h = lambda_t - lambda_s, a step from s to t moves along D = x0_s + (x0_s - x0_prev) h / (2 h_prev), the
        second-order estimate from the last two x_0 predictions (x0_s alone at the first step):
        deterministic, x_t = sigma_t / sigma_s x_s - alpha_t (e^-h - 1) D (their eq. 9 with D);
        `stochastic`, SDE-DPM-Solver++(2M) (their Appendix, as in diffusers' "sde-dpmsolver++"):
        x_t = sigma_t / sigma_s e^-h x_s + alpha_t (1 - e^-2h) D + sigma_t sqrt(1 - e^-2h) z.
        The last step, to sigma_0 = 0, lands on the last x_0 prediction (first order, e^-h = 0).
        """
        spacing = torch.arange(steps, dtype=torch.float64) * (self.num_timesteps / steps)
        timesteps = (self.num_timesteps - spacing).round().long().tolist() + [0]
        alpha, sigma = self.sqrt_alphas_cumprod, self.sqrt_one_minus_alpha_prod
        previous_x0 = previous_h = None
        for s, t in zip(timesteps[:-1], timesteps[1:]):
            _, x0 = self._predict(x, s)
            if t == 0:
                return x0
            h = (alpha[t] / sigma[t]).log() - (alpha[s] / sigma[s]).log()  # lambda_t - lambda_s
            direction = x0 if previous_x0 is None else x0 + (x0 - previous_x0) * (h / (2 * previous_h))
            if stochastic:
                x = (sigma[t] / sigma[s] * (-h).exp() * x + alpha[t] * (-torch.expm1(-2 * h)) * direction
                     + sigma[t] * (-torch.expm1(-2 * h)).sqrt() * torch.randn(x.shape, device=x.device, generator=generator))
            else:
                x = sigma[t] / sigma[s] * x - alpha[t] * torch.expm1(-h) * direction
            previous_x0, previous_h = x0, h
        return x
