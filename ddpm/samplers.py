"""The samplers, each one function over a denoiser, in the style of k-diffusion: the timesteps are chosen outside the
solver and guidance wraps the denoiser, so every sampler gets every spacing and every guidance.

A solver is `solve(denoise, x, timesteps, schedule, noise, **arguments) -> x_0`:
- `denoise(x_t, t) -> (eps, x0)`: the network's (possibly guided) prediction at the integer timestep t, as the
  noise and the clipped data that it implies (ddpm.diffusion.DiffusionModel.sample builds it);
- `x`: x_T ~ N(0, I); `timesteps`: descending integers in 1..T, then 0 (see `timesteps`);
- `schedule`: the DiffusionModel's float32 schedule tensors indexed by t = 0..T (ddpm.diffusion.get_schedules:
  alphas, inv_sqrt_alphas, sqrt_betas, sqrt_alphas_cumprod, sqrt_one_minus_alpha_prod, one_minus_alpha_over_prod)
  and `alphas_cumprod_float64`, alpha_bar_t as Python floats;
- `noise(x)`: fresh N(0, I) noise shaped like x (k-diffusion's noise_sampler).
The solvers use tensor methods only, so that this module (the registry that config checks read) loads without torch.

Adding a sampler: one function here, one line in SAMPLERS, and its tests (docs/design.md, "Adding a sampler").
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TIMESTEP_SPACINGS = ("auto", "linspace", "leading", "trailing")
GUIDANCES = ("none", "cfg", "auto")


def ancestral(denoise, x, timesteps, schedule, noise):
    """Algorithm 2 of Ho et al. (2020): x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t/sqrt(1 - alpha_bar_t) eps) + sigma_t z,
    with sigma_t = sqrt(beta_t). Each step goes from t to t - 1: `timesteps` is T, T - 1, ..., 1, 0."""
    for t, t_prev in zip(timesteps[:-1], timesteps[1:]):
        # 1. predict noise (consistent with the clipped x_0, see DiffusionModel.eps_and_x0)
        eps, _ = denoise(x, t)
        # 2. compute the previous sample, adding fresh noise except at the last step
        x = schedule["inv_sqrt_alphas"][t] * (x - eps * schedule["one_minus_alpha_over_prod"][t])
        if t_prev > 0:
            x = x + schedule["sqrt_betas"][t] * noise(x)
    return x


def ddim(denoise, x, timesteps, schedule, noise, eta=0.0):
    """DDIM (Song et al. 2021, eq. 12) from each timestep to the next, with
    sigma_t = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev) (eq. 16).

    With eta = 1 and steps = T, sigma_t^2 is the posterior variance beta~_t = (1 - alpha_bar_{t-1}) /
    (1 - alpha_bar_t) beta_t (Ho et al. eq. 7), not Algorithm 2's beta_t; fewer steps use the same formula
    between the chosen timesteps."""
    alphas_cumprod = schedule["alphas_cumprod_float64"]
    for t, t_prev in zip(timesteps[:-1], timesteps[1:]):
        # 1. predict noise, and from it x_0 (clipped)
        eps, x0 = denoise(x, t)
        # 2. move to the previous timestep: the direction to x_t, plus fresh noise when eta > 0; the coefficients
        # in float64, where 1 - alpha_bar_prev - sigma^2 does not cancel to 0 (it is 7.7e-8 at the first of 10
        # cosine steps with eta = 1, t = 1000 -> 889)
        alpha_bar, alpha_bar_prev = alphas_cumprod[t], alphas_cumprod[t_prev]
        sigma = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))
        x = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0)) * eps
        if eta > 0 and t_prev > 0:
            x = x + sigma * noise(x)
    return x


def dpm_solver(denoise, x, timesteps, schedule, noise, stochastic=False):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2: multistep, second order, data prediction) over `timesteps`.

    With alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), lambda_t = log(alpha_t / sigma_t) and
    h = lambda_t - lambda_s, a step from s to t moves along D = x0_s + (x0_s - x0_prev) h / (2 h_prev), the
    second-order estimate from the last two x_0 predictions (x0_s alone at the first step):
    deterministic, x_t = sigma_t / sigma_s x_s - alpha_t (e^-h - 1) D (their eq. 9 with D);
    `stochastic`, SDE-DPM-Solver++(2M) (their Appendix, as in diffusers' "sde-dpmsolver++"):
    x_t = sigma_t / sigma_s e^-h x_s + alpha_t (1 - e^-2h) D + sigma_t sqrt(1 - e^-2h) z.
    The last step, to sigma_0 = 0, lands on the last x_0 prediction (first order, e^-h = 0).
    """
    alpha, sigma = schedule["sqrt_alphas_cumprod"], schedule["sqrt_one_minus_alpha_prod"]
    previous_x0 = previous_h = None
    for s, t in zip(timesteps[:-1], timesteps[1:]):
        # 1. predict x_0 (clipped)
        _, x0 = denoise(x, s)
        if t == 0:
            return x0
        # 2. step from s to t along the second-order estimate D
        h = (alpha[t] / sigma[t]).log() - (alpha[s] / sigma[s]).log()  # lambda_t - lambda_s
        direction = x0 if previous_x0 is None else x0 + (x0 - previous_x0) * (h / (2 * previous_h))
        if stochastic:
            x = (sigma[t] / sigma[s] * (-h).exp() * x + alpha[t] * (-(-2 * h).expm1()) * direction
                 + sigma[t] * (-(-2 * h).expm1()).sqrt() * noise(x))
        else:
            x = sigma[t] / sigma[s] * x - alpha[t] * (-h).expm1() * direction
        previous_x0, previous_h = x0, h
    return x


def dpm_solver_sde(denoise, x, timesteps, schedule, noise):
    """SDE-DPM-Solver++(2M): `dpm_solver` with stochastic=True."""
    return dpm_solver(denoise, x, timesteps, schedule, noise, stochastic=True)


@dataclass(frozen=True)
class Sampler:
    """A sampler: its solver, the sampling fields it takes beside the timesteps ("steps", "eta"), the timestep
    spacing that "auto" means for it, and one line for the docs and the command line."""

    solve: Callable
    arguments: tuple[str, ...]
    auto_spacing: str
    description: str


SAMPLERS = {
    "ancestral": Sampler(ancestral, (), "trailing",  # T, T - 1, ..., 1: no spacing applies to all T steps
                         "Algorithm 2 of Ho et al. (2020) over all T steps"),
    "ddim": Sampler(ddim, ("steps", "eta"), "linspace", "DDIM (Song et al. 2021) with noise scale eta"),
    "dpm_solver": Sampler(dpm_solver, ("steps",), "trailing", "DPM-Solver++(2M) (Lu et al. 2022)"),
    "dpm_solver_sde": Sampler(dpm_solver_sde, ("steps",), "trailing", "SDE-DPM-Solver++(2M) (Lu et al. 2022)"),
}


def samplers_taking(argument: str) -> str:
    """The samplers that take the sampling field `argument`, for messages: "ddim" for "eta"."""
    return ", ".join(name for name, sampler in SAMPLERS.items() if argument in sampler.arguments)


def timesteps(spacing: str, num_timesteps: int, steps: int, sampler: str) -> list[int]:
    """The `steps` timesteps in 1..T that `sampler` visits, descending, then 0 (the data), for 1 <= steps <= T.

    The spacings are diffusers' (Lin et al. 2024, Table 2), whose timesteps 0..T-1 are this package's t = 1..T:
    - "linspace": T - i (T - 1) / (steps - 1), evenly spaced from T to 1, rounded half to even in the float32
      arithmetic of torch.linspace(T, 1, steps) on the CPU (see _linspace_float32), which decides the ties:
      diffusers' round(j (T - 1) / (steps - 1)) + 1, j = steps - 1 - i, but for how some ties round;
    - "leading": i (T // steps) + 1 for i = steps - 1, ..., 0: diffusers' (T // steps) i (steps_offset 0) + 1;
    - "trailing": round(T - i T / steps) in float64, i = 0..steps - 1: diffusers' round(T - i T / steps) - 1;
    - "auto": the sampler's own (SAMPLERS[sampler].auto_spacing): linspace for ddim, trailing for the DPM-Solvers.
    """
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep_spacing must be one of {list(TIMESTEP_SPACINGS)}, got {spacing!r}")
    if spacing == "auto":
        spacing = SAMPLERS[sampler].auto_spacing
    i = np.arange(steps)
    if spacing == "linspace":
        chosen = np.rint(_linspace_float32(num_timesteps, 1, steps))
    elif spacing == "leading":
        chosen = i[::-1] * (num_timesteps // steps) + 1
    else:
        chosen = np.rint(num_timesteps - i * (num_timesteps / steps))
    return [int(t) for t in chosen] + [0]


def _linspace_float32(start: int, end: int, steps: int) -> np.ndarray:
    """torch.linspace(start, end, steps) as PyTorch computes it in float32 on the CPU: step = (end - start) /
    (steps - 1) in float32; value i = start + i step below steps // 2, else end - (steps - 1 - i) step, each
    exact in float64 and rounded once to float32 (a fused multiply-add; builds without one round twice, which
    changes a rounded timestep only for T > 2000)."""
    if steps == 1:
        return np.array([start], dtype=np.float32)
    step = np.float64((np.float32(end) - np.float32(start)) / np.float32(steps - 1))
    i = np.arange(steps)
    return np.where(i < steps // 2, start + i * step, end - (steps - 1 - i) * step).astype(np.float32)
