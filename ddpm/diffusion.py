"""DDPM (Ho et al. 2020) with the homework's vocabulary, plus DDIM sampling (Song et al. 2021).

Schedules are indexed by t = 0..T; training draws t from 1..T and feeds the network t/T.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def get_schedules(beta1: float, beta2: float, num_timesteps: int) -> dict[str, torch.Tensor]:
    """Linear beta schedule from beta1 to beta2 and the quantities DDPM needs, for t = 0..T."""
    if not (isinstance(num_timesteps, int) and num_timesteps >= 1):
        raise ValueError(f"num_timesteps must be an integer >= 1, got {num_timesteps!r}")
    if not (0.0 < beta1 < beta2 < 1.0):
        raise ValueError(f"betas must satisfy 0 < beta1 < beta2 < 1, got ({beta1!r}, {beta2!r})")
    betas = beta1 + (beta2 - beta1) * torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alphas = 1 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    schedules = {
        "alphas": alphas,  # alpha_t = 1 - beta_t
        "inv_sqrt_alphas": 1 / alphas.sqrt(),  # 1 / sqrt(alpha_t)
        "sqrt_betas": betas.sqrt(),  # sigma_t = sqrt(beta_t)
        "alphas_cumprod": alphas_cumprod,  # alpha_bar_t = prod_{s<=t} alpha_s
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),  # sqrt(alpha_bar_t)
        "sqrt_one_minus_alpha_prod": (1 - alphas_cumprod).sqrt(),  # sqrt(1 - alpha_bar_t)
        "one_minus_alpha_over_prod": betas / (1 - alphas_cumprod).sqrt(),  # (1 - alpha_t) / sqrt(1 - alpha_bar_t)
    }
    return {name: value.float() for name, value in schedules.items()}


def _per_sample(coefficient: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Pick coefficient[t] for each sample, shaped to broadcast over (C, H, W)."""
    return coefficient[t][:, None, None, None]


class DiffusionModel(nn.Module):
    def __init__(self, eps_model: nn.Module, betas: tuple[float, float] = (1e-4, 0.02), num_timesteps: int = 1000):
        super().__init__()
        self.eps_model = eps_model
        self.betas = tuple(betas)
        self.num_timesteps = num_timesteps
        for name, schedule in get_schedules(*self.betas, num_timesteps).items():
            self.register_buffer(name, schedule)  # buffers follow .to(device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)  (Ho et al. eq. 4)."""
        return _per_sample(self.sqrt_alphas_cumprod, t) * x0 + _per_sample(self.sqrt_one_minus_alpha_prod, t) * noise

    def forward(self, x0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Algorithm 1: the simple loss ||eps - eps_theta(x_t, t/T)||^2 at t ~ U{1..T}, eps ~ N(0, I).

        `t` and `noise` may be given to make one step reproducible (e.g. to compare distributed runs).
        """
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
    ) -> torch.Tensor:
        """Draw samples in [-1, 1] (roughly): Algorithm 2 over all T steps, or DDIM (eta=0) over `steps`."""
        x = torch.randn(num_samples, *size, device=device, generator=generator)  # x_T ~ N(0, I)
        if steps is None:
            return self._ancestral(x, generator)
        if not (isinstance(steps, int) and 1 <= steps <= self.num_timesteps):
            raise ValueError(f"DDIM steps must be an integer in [1, {self.num_timesteps}], got {steps!r}")
        return self._ddim(x, steps)

    def _eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        t_fraction = torch.full((x.shape[0],), t / self.num_timesteps, device=x.device)
        return self.eps_model(x, t_fraction).float()

    def _ancestral(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Algorithm 2: x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t/sqrt(1 - alpha_bar_t) eps) + sigma_t z."""
        for t in range(self.num_timesteps, 0, -1):
            # 1. predict noise
            eps = self._eps(x, t)
            # 2. compute the previous sample, adding fresh noise except at the last step
            x = self.inv_sqrt_alphas[t] * (x - eps * self.one_minus_alpha_over_prod[t])
            if t > 1:
                x = x + self.sqrt_betas[t] * torch.randn(x.shape, device=x.device, generator=generator)
        return x

    def _ddim(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """DDIM with eta=0 (Song et al. eq. 12) over `steps` timesteps evenly spaced in [1, T]."""
        timesteps = torch.linspace(self.num_timesteps, 1, steps).round().long().tolist()
        for i, t in enumerate(timesteps):
            alpha_bar = self.alphas_cumprod[t]
            alpha_bar_prev = self.alphas_cumprod[timesteps[i + 1]] if i + 1 < steps else torch.ones_like(alpha_bar)
            # 1. predict noise, and from it x_0
            eps = self._eps(x, t)
            x0 = (x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
            # 2. move to the previous timestep along the deterministic path
            x = alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev).sqrt() * eps
        return x
