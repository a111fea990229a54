"""DDPM (Ho et al. 2020) with the homework's vocabulary, plus DDIM sampling (Song et al. 2021).

Schedules are indexed by t = 0..T as in Ho et al.: index 0 is the data (beta_0 = 0, alpha_bar_0 = 1) and
alpha_bar_t = prod_{s=1..t} alpha_s, so the last reverse step, t = 1 -> 0, lands exactly on x_0.
Training draws t from 1..T and feeds the network t/T.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddpm.checks import SCHEDULES, check_choice, check_int

COSINE_OFFSET = 0.008  # s of Nichol & Dhariwal 2021, eq. 17
MAX_BETA = 0.999  # their clip on beta_t near t = T, where alpha_bar_t / alpha_bar_{t-1} goes to 0


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
    if schedule == "linear" and not (0.0 < beta1 < beta2 < 1.0):
        raise ValueError(f"betas must satisfy 0 < beta1 < beta2 < 1, got ({beta1!r}, {beta2!r})")
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


class DiffusionModel(nn.Module):
    """An eps-prediction DDPM around `eps_model(x_t, t/T)`; `schedule` is "linear" (from `betas`) or "cosine"."""

    def __init__(
        self,
        eps_model: nn.Module,
        betas: tuple[float, float] = (1e-4, 0.02),
        num_timesteps: int = 1000,
        schedule: str = "linear",
    ):
        super().__init__()
        self.eps_model = eps_model
        self.betas = tuple(betas)
        self.schedule = schedule
        for name, value in get_schedules(*self.betas, num_timesteps, schedule=schedule).items():
            self.register_buffer(name, value)  # buffers follow .to(device)
        self.num_timesteps = len(self.alphas) - 1  # T, a plain int even when given as a NumPy integer

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)  (Ho et al. eq. 4)."""
        return _per_sample(self.sqrt_alphas_cumprod, t) * x0 + _per_sample(self.sqrt_one_minus_alpha_prod, t) * noise

    def forward(self, x0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Algorithm 1: the simple loss ||eps - eps_theta(x_t, t/T)||^2 at t ~ U{1..T}, eps ~ N(0, I).

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
        return F.mse_loss(self.eps_model(x_t, t / self.num_timesteps), noise)

    @torch.inference_mode()
    def sample(
        self,
        num_samples: int,
        size: tuple[int, ...],
        device: torch.device | str,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
    ) -> torch.Tensor:
        """Draw samples in [-1, 1]: Algorithm 2 over all T steps, or DDIM over `steps` steps with noise scale
        `eta` (0: deterministic; 1 with steps = T: the posterior variance beta~_t = (1 - alpha_bar_{t-1}) /
        (1 - alpha_bar_t) beta_t of Ho et al. eq. 7, DDPM's other choice of sigma_t^2, not Algorithm 2's beta_t)."""
        if steps is not None:
            steps = check_int("DDIM steps", steps, minimum=1, maximum=self.num_timesteps)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"DDIM eta must be in [0, 1], got {eta!r}")
        x = torch.randn(num_samples, *size, device=device, generator=generator)  # x_T ~ N(0, I)
        if steps is None:
            return self._ancestral(x, generator)
        return self._ddim(x, steps, eta, generator)

    def _predict(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """eps_theta(x_t, t/T) and the x_0 it implies, (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t).

        x_0 is clipped to the data range [-1, 1] and eps re-derived from the clipped x_0, as the code of Ho et
        al. and of Nichol & Dhariwal does (Algorithm 2's step then is the posterior mean of Ho et al. eq. 7
        at the clipped x_0); where nothing is clipped both are unchanged. Without the clip, the division by
        sqrt(alpha_bar_t), about 5e-5 at t = T of the cosine schedule, would magnify any error in eps some
        2e4-fold.
        """
        t_fraction = torch.full((x.shape[0],), t / self.num_timesteps, device=x.device)
        eps = self.eps_model(x, t_fraction).float()
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = self.sqrt_alphas_cumprod[t], self.sqrt_one_minus_alpha_prod[t]
        x0 = ((x - sqrt_one_minus_alpha_bar * eps) / sqrt_alpha_bar).clamp(-1, 1)
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
            # 2. move to the previous timestep: the direction to x_t, plus fresh noise when eta > 0
            alpha_bar, alpha_bar_prev = self.alphas_cumprod[t], self.alphas_cumprod[t_prev]
            sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()
            x = alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps
            if eta > 0 and t_prev > 0:
                x = x + sigma * torch.randn(x.shape, device=x.device, generator=generator)
        return x
