"""Diffuser-style trajectory diffusion: the multi-step baseline KDP is measured against (issue #3).

The same windows, conditions and backbones as KDP (:mod:`kdp_edge.models`); only the objective and
the sampler differ. Read top to bottom:

1. Noise schedule (:class:`NoiseSchedule`): ``timesteps`` training steps (default 256, Diffuser's
   Maze2D Medium/Large setting), cosine by default (Nichol & Dhariwal 2021; Diffuser uses it too),
   ``abar_t`` = cumulative product of ``1 - beta_t``, strictly decreasing from ~1 to ~0.
2. Backbone: the KDP backbone with a diffusion-time input. The sinusoidal embedding of the
   (integer) timestep is concatenated to the normalised condition [obs, goal]: the MLP sees it at
   its input like the condition, the U-Net's condition MLP folds it into the FiLM embedding.
3. Training (:meth:`DiffusionGenerator.loss`): a dataset window x0 [B, H, D] (normalised),
   t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; the window's first
   state is in-painted (set to the condition's state), the network predicts eps ("epsilon") or x0
   ("sample", Diffuser's Maze2D choice), MSE over every entry except the in-painted ones.
4. Sampling (:func:`sample_loop`): T' <= T steps on evenly spaced ("trailing") timesteps; each step
   in-paints the first state, estimates x0 with one network pass and moves to the previous
   timestep with the generalised DDIM update (eta = 0: DDIM, deterministic; eta = 1: DDPM ancestral
   sampling on the re-spaced schedule, exactly DDPM when T' = T).

Model contract (same raw-unit interface as :class:`kdp_edge.models.KDPGenerator`, K candidates):
    obs [K, obs_dim], goal [K, goal_dim], noise [K, H, D] (the initial x_T) -> raw window [K, H, D]
``forward`` runs the whole sampler with ``self.sampler`` / ``self.sample_steps`` (see
:meth:`DiffusionGenerator.set_sampler`), so the KDP planner, scorer and evaluation run unchanged;
``denoise`` is one network evaluation (the graph a denoiser export needs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models import MLPGenerator, ModelConfig, UNet1D
from .windows import Normalizer

SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("sample", "epsilon")
SAMPLERS = ("ddim", "ddpm")


@dataclass
class DiffusionConfig:
    """Options of ``--method diffusion`` (ignored by drift runs). Saved in config.json."""

    timesteps: int = 256  # T: training diffusion steps (schedule length; Diffuser Maze2D: 64 U / 256 M, L)
    schedule: str = "cosine"  # cosine | linear (DDPM's 1e-4..0.02, rescaled to T)
    prediction: str = "sample"  # sample: the network predicts x0 (Diffuser Maze2D) | epsilon: the noise
    sampler: str = "ddim"  # default sampler of forward(): ddim (eta 0, deterministic) | ddpm (eta 1)
    sample_steps: int = 20  # default number of sampling steps T' (1 .. timesteps); a runtime option
    time_dim: int = 32  # width of the sinusoidal timestep embedding
    clip_sample: float = 5.0  # clip x0 estimates to +-this (normalised units, z-scores); 0 = off
    batch_size: int = 0  # training windows per step; 0 = optim.conditions * optim.samples (drift's count)

    def __post_init__(self) -> None:
        for name, value, allowed in (("schedule", self.schedule, SCHEDULES),
                                     ("prediction", self.prediction, PREDICTIONS),
                                     ("sampler", self.sampler, SAMPLERS)):
            if value not in allowed:
                raise ValueError(f"unknown diffusion {name} '{value}': choose one of {', '.join(allowed)}")
        if self.timesteps < 2:
            raise ValueError(f"diffusion timesteps must be at least 2 (got {self.timesteps})")
        if not 1 <= self.sample_steps <= self.timesteps:
            raise ValueError(f"diffusion sample_steps must be in 1..timesteps={self.timesteps} (got {self.sample_steps})")
        if self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"diffusion time_dim must be even and >= 2 (got {self.time_dim})")


# ---- 1. noise schedule ------------------------------------------------------------------------------
class NoiseSchedule:
    """``betas`` and ``alphas_cumprod`` (numpy float64, [T]) plus the sampler's step coefficients."""

    def __init__(self, kind: str = "cosine", timesteps: int = 256):
        if kind == "cosine":
            s = 0.008
            f = np.cos((np.arange(timesteps + 1) / timesteps + s) / (1 + s) * np.pi / 2) ** 2
            betas = np.clip(1.0 - f[1:] / f[:-1], 1e-8, 0.999)
        elif kind == "linear":
            scale = 1000.0 / timesteps
            betas = np.linspace(1e-4 * scale, 0.02 * scale, timesteps)
        else:
            raise ValueError(f"unknown schedule '{kind}': choose one of {', '.join(SCHEDULES)}")
        self.kind, self.timesteps = kind, timesteps
        self.betas = betas
        self.alphas_cumprod = np.cumprod(1.0 - betas)

    def abar(self, t: int) -> float:
        """abar_t, with abar_{-1} = 1 (the clean data)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def sampling_timesteps(self, steps: int) -> list[int]:
        """``steps`` evenly spaced training timesteps, descending, always starting at T-1 and
        ending near 0 ("trailing" spacing: one step goes straight from pure noise to x0)."""
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"sample steps must be in 1..{self.timesteps} (got {steps})")
        ts = np.round(np.arange(self.timesteps, 0, -self.timesteps / steps)).astype(np.int64) - 1
        return [int(t) for t in ts]

    def step_coefficients(self, t: int, t_prev: int, eta: float) -> tuple[float, float, float]:
        """(a, b, sigma) of x_prev = a * x0 + b * eps + sigma * z for a step t -> t_prev.

        The generalised DDIM update (Song et al. 2021, eq. 12): eta = 0 is DDIM; eta = 1 gives
        sigma^2 = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev), DDPM's posterior variance.
        """
        ab_t, ab_prev = self.abar(t), self.abar(t_prev)
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
        return math.sqrt(ab_prev), math.sqrt(max(1 - ab_prev - sigma**2, 0.0)), sigma


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Timesteps t [B] (float or int) -> [B, dim] = [sin(t f_i), cos(t f_i)], f_i = 10000^(-i / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


# ---- 4. the sampler (pure: tests drive it with exact denoisers) ---------------------------------------
def sample_loop(
    x0_fn: Callable[[torch.Tensor, int], torch.Tensor],
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int,
    eta: float = 0.0,
    inpaint: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``steps`` denoising steps from x_T [B, H, D]; returns the final x0 estimate [B, H, D].

    ``x0_fn(x_t, t)`` is one denoiser evaluation returning the clean-window estimate; ``inpaint``
    (e.g. overwrite the first state) is applied to every x_t and to the result. eta = 0: DDIM,
    eta = 1: DDPM (its per-step noise comes from ``generator``, or torch's global RNG).
    """
    ts = schedule.sampling_timesteps(steps)
    x = x_T
    for i, t in enumerate(ts):
        if inpaint is not None:
            x = inpaint(x)
        x0 = x0_fn(x, t)
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        if t_prev < 0:
            x = x0
            break
        a, b, sigma = schedule.step_coefficients(t, t_prev, eta)
        eps = (x - math.sqrt(schedule.abar(t)) * x0) / math.sqrt(1 - schedule.abar(t))
        x = a * x0 + b * eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return inpaint(x) if inpaint is not None else x


# ---- 2. + 3. the model --------------------------------------------------------------------------------
class DiffusionGenerator(nn.Module):
    """Trajectory diffusion on the KDP backbone; ``forward(obs, goal, noise)`` works in raw units.

    Buffers and attributes match :class:`~kdp_edge.models.KDPGenerator` (obs_mean, obs_std,
    goal_mean, goal_std, win_mean, win_std; obs_dim, act_dim, goal_dim, window_dim, horizon), so a
    diffusion run loads, plans and evaluates through the same code paths as a KDP run.
    """

    def __init__(self, normalizer: Normalizer, horizon: int, cfg: ModelConfig, dcfg: DiffusionConfig):
        super().__init__()
        self.cfg, self.dcfg = cfg, dcfg
        self.horizon = horizon
        self.obs_dim, self.act_dim, self.goal_dim = normalizer.obs_dim, normalizer.act_dim, normalizer.goal_dim
        self.layout = normalizer.layout
        self.window_dim = self.layout.dim
        # in-painting writes the condition's state into step 0: only where a window step has a state
        self.overwrites_first_state = cfg.overwrite_first_state and self.layout.has_states
        cond_in = self.obs_dim + self.goal_dim + dcfg.time_dim
        if cfg.arch == "unet":
            if horizon % (2 ** (len(cfg.channels) - 1)):
                raise ValueError(f"horizon {horizon} must be divisible by {2 ** (len(cfg.channels) - 1)} for a "
                                 f"{len(cfg.channels)}-level U-Net: change the horizon or model.channels")
            self.net = UNet1D(self.window_dim, cond_in, cfg)
        elif cfg.arch == "mlp":
            self.net = MLPGenerator(self.window_dim, horizon, cond_in, cfg)
        else:
            raise ValueError(f"unknown arch '{cfg.arch}': use 'unet' or 'mlp'")
        for name, arr in normalizer.tensors().items():
            self.register_buffer(name, torch.as_tensor(arr, dtype=torch.float32))
        self.schedule = NoiseSchedule(dcfg.schedule, dcfg.timesteps)
        self.register_buffer("alphas_cumprod", torch.as_tensor(self.schedule.alphas_cumprod, dtype=torch.float32),
                             persistent=False)
        self.sampler, self.sample_steps = dcfg.sampler, dcfg.sample_steps

    def set_sampler(self, sampler: str | None = None, steps: int | None = None) -> None:
        """Change the runtime sampler ("ddim" | "ddpm") and/or its number of steps (1..timesteps)."""
        if sampler is not None:
            if sampler not in SAMPLERS:
                raise ValueError(f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}")
            self.sampler = sampler
        if steps is not None:
            if not 1 <= steps <= self.dcfg.timesteps:
                raise ValueError(f"sample steps must be in 1..{self.dcfg.timesteps} (the model's training "
                                 f"timesteps), got {steps}")
            self.sample_steps = int(steps)

    # -- normalisation (same formulas as KDPGenerator) --
    def normalize_condition(self, obs: torch.Tensor, goal: torch.Tensor | None) -> torch.Tensor:
        """Raw obs [B, O] (+ goal [B, G]) -> normalised condition [B, O + G]."""
        c = (obs - self.obs_mean) / self.obs_std
        if self.goal_dim:
            c = torch.cat([c, (goal - self.goal_mean) / self.goal_std], dim=-1)
        return c

    def first_state(self, cond: torch.Tensor) -> torch.Tensor | None:
        """The condition's state [B, O] in window normalisation (what in-painting writes); None when
        nothing is in-painted (in-painting off, or windows of actions only)."""
        if not self.overwrites_first_state:
            return None
        s0 = cond[:, : self.obs_dim] * self.obs_std + self.obs_mean
        return (s0 - self.win_mean[: self.obs_dim]) / self.win_std[: self.obs_dim]

    def inpaint(self, x: torch.Tensor, s0: torch.Tensor | None) -> torch.Tensor:
        """x [B, H, D] with its first state replaced by s0 [B, O] (a no-op if in-painting is off or the
        windows hold actions only)."""
        if not self.overwrites_first_state:
            return x
        return torch.cat([torch.cat([s0[:, None, :], x[:, :1, self.obs_dim:]], dim=-1), x[:, 1:]], dim=1)

    # -- one network evaluation --
    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The network's raw output (eps or x0 per ``prediction``) for x_t [B, H, D], timesteps t [B]
        (integers 0..T-1, any dtype) and normalised conditions cond [B, C]; normalised units."""
        return self.net(x_t, torch.cat([cond, sinusoidal_embedding(t, self.dcfg.time_dim)], dim=-1))

    def x0_estimate(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Clean-window estimate [B, H, D] (normalised, clipped, first state in-painted)."""
        out = self.predict(x_t, t, cond)
        if self.dcfg.prediction == "epsilon":
            ab = self.alphas_cumprod[t.long()].to(x_t.dtype)[:, None, None]
            out = (x_t - (1 - ab).sqrt() * out) / ab.sqrt()
        if self.dcfg.clip_sample > 0:
            out = out.clamp(-self.dcfg.clip_sample, self.dcfg.clip_sample)
        return self.inpaint(out, self.first_state(cond))

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """One denoiser evaluation: x_t [B, H, D] (normalised), t [B] timesteps, raw obs [B, O] and
        goal [B, G] -> the x0 estimate [B, H, D] in normalised units, whatever ``prediction`` is, so a
        sampler outside torch needs only this graph and :meth:`NoiseSchedule.step_coefficients`."""
        return self.x0_estimate(x_t, t, self.normalize_condition(obs, goal))

    # -- training --
    def loss(self, x0: torch.Tensor, cond: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """DDPM loss for dataset windows x0 [B, H, D] with conditions cond [B, C] (both normalised).

        Random t and eps (torch's global RNG unless ``generator``); the in-painted first state is
        excluded from the MSE (it is given, not predicted).
        """
        b = x0.shape[0]
        # drawn on the CPU (same numbers on every device, resumable from the CPU RNG state), then moved
        t = torch.randint(0, self.dcfg.timesteps, (b,), generator=generator).to(x0.device)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        ab = self.alphas_cumprod[t][:, None, None]
        x_t = self.inpaint(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, self.first_state(cond))
        target = eps if self.dcfg.prediction == "epsilon" else x0
        err = (self.predict(x_t, t, cond) - target) ** 2
        mask = torch.ones_like(err[:1])
        if self.overwrites_first_state:
            mask[:, 0, : self.obs_dim] = 0.0
        loss = (err * mask).sum() / (mask.sum() * b)
        with torch.no_grad():
            high = t >= self.dcfg.timesteps // 2
            per_sample = (err * mask).flatten(1).sum(1) / mask.sum()
            stats = {"loss_t_low": float(per_sample[~high].mean()) if (~high).any() else float("nan"),
                     "loss_t_high": float(per_sample[high].mean()) if high.any() else float("nan")}
        return loss, stats

    # -- planning interface --
    def sample_normalized(self, cond: torch.Tensor, noise: torch.Tensor, steps: int | None = None,
                          sampler: str | None = None) -> torch.Tensor:
        """Normalised condition [B, C] + initial noise x_T [B, H, D] -> normalised window [B, H, D]."""
        sampler = sampler or self.sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}")
        s0 = self.first_state(cond)
        b = cond.shape[0]

        def x0_fn(x: torch.Tensor, t: int) -> torch.Tensor:
            return self.x0_estimate(x, torch.full((b,), t, dtype=torch.long, device=cond.device), cond)

        return sample_loop(x0_fn, noise, self.schedule, steps or self.sample_steps,
                           eta=1.0 if sampler == "ddpm" else 0.0, inpaint=lambda x: self.inpaint(x, s0))

    def forward(self, obs: torch.Tensor, goal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Raw obs [K, O], goal [K, G], noise [K, H, D] -> raw window [K, H, D], with
        ``self.sample_steps`` steps of ``self.sampler``; the first state equals obs exactly."""
        win = self.sample_normalized(self.normalize_condition(obs, goal), noise)
        win = win * self.win_std + self.win_mean
        if self.overwrites_first_state:
            win = torch.cat([torch.cat([obs[:, None, :], win[:, :1, self.obs_dim:]], dim=-1), win[:, 1:]], dim=1)
        return win


def diffusion_batch_size(cfg) -> int:
    """Training windows per step for a TrainConfig (``diffusion.batch_size`` or G * N)."""
    return cfg.diffusion.batch_size or cfg.optim.conditions * cfg.optim.samples


__all__ = ["DiffusionConfig", "DiffusionGenerator", "NoiseSchedule", "sample_loop", "sinusoidal_embedding",
           "diffusion_batch_size", "SAMPLERS", "PREDICTIONS", "SCHEDULES"]
