"""The diffusion baseline on the device: T denoiser passes per plan (numpy + onnxruntime only).

A diffusion bundle (``method: diffusion``, model files with role ``denoiser``; written by
``kdp-edge export`` for a ``--method diffusion`` run, see export/denoiser.py) holds ONE network
evaluation of :meth:`kdp_edge.diffusion.DiffusionGenerator.denoise`::

    inputs   x_t   float32 [K, H, D]   the noisy window, NORMALISED (z-scores, win_mean / win_std)
             t     int64   [K]         training timestep 0 .. timesteps-1
             obs   float32 [K, O]      raw observation
             goal  float32 [K, G]      raw goal (absent when goal_dim == 0)
    output   x0    float32 [K, H, D]   clean-window estimate, NORMALISED; whatever the prediction type
                                       (eps is converted inside the graph), clipped to +-clip_sample,
                                       first state in-painted

and ``bundle.json``'s ``diffusion`` dict holds everything the sampler needs outside the graph: the
schedule (``alphas_cumprod``), ``timesteps``, the default ``sampler`` / ``sample_steps`` and the
normalisation of the window (``win_mean``, ``win_std``) and observation (``obs_mean``, ``obs_std``).

:class:`DenoiserSampler` is :func:`kdp_edge.diffusion.sample_loop` in numpy, step for step: the same
"trailing" timesteps, the first state in-painted into every x_t and into the result, the
generalised DDIM update (eta = 0: DDIM, deterministic given the initial noise x_T, which is what
the export's parity check compares; eta = 1: DDPM, its per-step noise from the planner's RNG), then
raw units with the first state set to the observation, as ``DiffusionGenerator.forward`` does.
:class:`DiffusionPlanner` is the :class:`~kdp_edge.runtime.planner.Planner` (same input checks,
scoring, action selection and clipping) with that sampler as its generator; ``passes`` = T model
calls per plan, ``Plan.model_ms`` is their sum. ``Planner.load`` returns one for diffusion bundles.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bundle import Bundle, BundleError, BundleManifest, ModelFile
from .planner import PLANNERS, Planner, is_denoiser_bundle, make_backend

SAMPLERS = {"ddim": 0.0, "ddpm": 1.0}  # sampler -> eta
INPUTS = ("x_t", "t", "obs", "goal")

Denoise = Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds (x_t, t, obs, goal) -> x0 [K, H, D]


def _vector(d: dict, name: str, n: int, where: str, positive: bool = False) -> np.ndarray:
    try:
        a = np.asarray(d[name], dtype=np.float64)
    except KeyError:
        raise BundleError(f"{where}: diffusion.{name} is missing; re-export the bundle") from None
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: diffusion.{name} is not a list of numbers ({exc}); re-export the bundle") from exc
    if a.shape != (n,) or not np.isfinite(a).all() or (positive and (a <= 0).any()):
        raise BundleError(f"{where}: diffusion.{name} must be {n} finite{' positive' if positive else ''} numbers "
                          f"(got shape {list(a.shape)}); the manifest does not match the model, re-export the bundle")
    return a


@dataclass
class DenoiserSchedule:
    """The ``diffusion`` dict of a denoiser bundle, validated (see the module docstring)."""

    alphas_cumprod: np.ndarray  # float64 [timesteps], strictly decreasing in (0, 1)
    prediction: str  # what the network predicts (informative: the graph always returns x0)
    sampler: str  # default: ddim | ddpm
    sample_steps: int  # default T (passes per plan)
    clip_sample: float  # informative: applied inside the graph
    overwrite_first_state: bool
    win_mean: np.ndarray  # float32 [D]
    win_std: np.ndarray
    obs_mean: np.ndarray  # float32 [O]
    obs_std: np.ndarray

    @property
    def timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @staticmethod
    def from_manifest(m: BundleManifest, where: str = "bundle.json") -> DenoiserSchedule:
        d = m.diffusion
        if not isinstance(d, dict) or not d:
            raise BundleError(f"{where}: a denoiser bundle needs the 'diffusion' dict (schedule, sample steps, "
                              "normalisation); re-export the bundle with kdp-edge export RUN_DIR")
        units = d.get("units", "normalized")
        if units != "normalized":
            raise BundleError(f"{where}: diffusion.units {units!r}: this runtime reads 'normalized' denoisers")
        n = d.get("timesteps")
        if not isinstance(n, int) or n < 2:
            raise BundleError(f"{where}: diffusion.timesteps must be an integer >= 2 (got {n!r}); re-export the bundle")
        ab = _vector(d, "alphas_cumprod", n, where, positive=True)
        if (ab >= 1).any() or (np.diff(ab) >= 0).any():
            raise BundleError(f"{where}: diffusion.alphas_cumprod must decrease strictly inside (0, 1); "
                              "the manifest is corrupted, re-export the bundle")
        sampler, steps = d.get("sampler", "ddim"), d.get("sample_steps")
        if sampler not in SAMPLERS:
            raise BundleError(f"{where}: diffusion.sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
        if not isinstance(steps, int) or not 1 <= steps <= n:
            raise BundleError(f"{where}: diffusion.sample_steps must be an integer in 1..{n} (got {steps!r})")
        f32 = np.float32
        return DenoiserSchedule(
            alphas_cumprod=ab, prediction=str(d.get("prediction", "sample")), sampler=sampler, sample_steps=steps,
            clip_sample=float(d.get("clip_sample", 0.0)),
            # an action-only window has no state to in-paint, whatever the dict says
            overwrite_first_state=bool(d.get("overwrite_first_state", True)) and m.layout.has_states,
            win_mean=_vector(d, "win_mean", m.window_dim, where).astype(f32),
            win_std=_vector(d, "win_std", m.window_dim, where, positive=True).astype(f32),
            obs_mean=_vector(d, "obs_mean", m.obs_dim, where).astype(f32),
            obs_std=_vector(d, "obs_std", m.obs_dim, where, positive=True).astype(f32))

    def abar(self, t: int) -> float:
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def sampling_timesteps(self, steps: int) -> list[int]:
        """Same as :meth:`kdp_edge.diffusion.NoiseSchedule.sampling_timesteps` ("trailing" spacing)."""
        n = self.timesteps
        if not 1 <= steps <= n:
            raise ValueError(f"sample steps must be in 1..{n} (the model's training timesteps), got {steps}")
        return [int(t) for t in np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1]

    def step_coefficients(self, t: int, t_prev: int, eta: float) -> tuple[float, float, float]:
        """Same as :meth:`kdp_edge.diffusion.NoiseSchedule.step_coefficients`: (a, b, sigma)."""
        ab_t, ab_prev = self.abar(t), self.abar(t_prev)
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
        return math.sqrt(ab_prev), math.sqrt(max(1 - ab_prev - sigma**2, 0.0)), sigma


class DenoiserSampler:
    """``sample_loop`` + ``DiffusionGenerator.forward`` around a denoiser (numpy, raw in, raw out)."""

    def __init__(self, schedule: DenoiserSchedule, obs_dim: int, goal_dim: int, steps: int | None = None,
                 sampler: str | None = None):
        self.schedule, self.obs_dim, self.goal_dim = schedule, obs_dim, goal_dim
        self.sampler = sampler or schedule.sampler
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        self.eta = SAMPLERS[self.sampler]
        self.steps = int(steps or schedule.sample_steps)
        ts = schedule.sampling_timesteps(self.steps)
        self.timesteps = ts
        # per step: (t, sqrt(abar_t), sqrt(1 - abar_t), a, b, sigma); None for the last (x <- x0)
        self.coefficients = []
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            ab = schedule.abar(t)
            self.coefficients.append(None if t_prev < 0 else
                                     (math.sqrt(ab), math.sqrt(1 - ab), *schedule.step_coefficients(t, t_prev, self.eta)))

    def first_state(self, obs: np.ndarray) -> np.ndarray:
        """Raw obs [K, O] -> the in-painted first state in window normalisation (the torch round trip)."""
        s = self.schedule
        o = self.obs_dim
        s0 = ((obs - s.obs_mean) / s.obs_std) * s.obs_std + s.obs_mean
        return (s0 - s.win_mean[:o]) / s.win_std[:o]

    def __call__(self, denoise: Denoise, feeds: dict[str, np.ndarray], rng: np.random.Generator | None = None) -> np.ndarray:
        """Feeds with raw ``obs`` [K, O], ``goal`` [K, G] and the initial noise x_T ``noise`` [K, H, D]
        -> raw windows [K, H, D]; ``denoise`` is one model pass. ``rng``: DDPM's per-step noise."""
        obs, noise = feeds["obs"], feeds["noise"]
        k, o, inpaint = len(noise), self.obs_dim, self.schedule.overwrite_first_state
        s0 = self.first_state(obs) if inpaint else None
        x = np.array(noise, dtype=np.float32, copy=True)
        eps = np.empty_like(x)
        pass_feeds = {"obs": obs, "x_t": x}
        if self.goal_dim:
            pass_feeds["goal"] = feeds["goal"]
        for t, c in zip(self.timesteps, self.coefficients, strict=True):
            if inpaint:
                x[:, 0, :o] = s0
            pass_feeds["t"] = np.full(k, t, dtype=np.int64)
            x0 = np.asarray(denoise(pass_feeds), dtype=np.float32)
            if c is None:
                x[...] = x0
                break
            sq_ab, sq_1m_ab, a, b, sigma = c
            # in place, in sample_loop's order: eps = (x - sqrt(abar_t) x0) / sqrt(1 - abar_t); x = a x0 + b eps
            np.multiply(x0, sq_ab, out=eps)
            np.subtract(x, eps, out=eps)
            eps /= sq_1m_ab
            np.multiply(x0, a, out=x)
            eps *= b
            x += eps
            if sigma > 0:
                rng = rng if rng is not None else np.random.default_rng()
                x += sigma * rng.standard_normal(x.shape, dtype=np.float32)
        if inpaint:
            x[:, 0, :o] = s0
        win = x * self.schedule.win_std + self.schedule.win_mean
        if inpaint:
            win[:, 0, :o] = obs
        return win


class DiffusionPlanner(Planner):
    """:class:`Planner` over a denoiser bundle: each plan runs ``passes`` = T denoiser passes on the
    K candidates. Build with :meth:`Planner.load` (or this class's ``load``); ``sample_steps``
    (default the bundle's ``diffusion.sample_steps``) and ``sampler`` change T and DDIM/DDPM."""

    role = "denoiser"

    def __init__(self, bundle: Bundle, model: ModelFile, backend, candidates: int, seed: int = 0,
                 sample_steps: int | None = None, sampler: str | None = None):
        super().__init__(bundle, model, backend, candidates, seed)
        where = str(bundle.root / "bundle.json")
        self.schedule = DenoiserSchedule.from_manifest(self.manifest, where)
        try:
            self.sampler = DenoiserSampler(self.schedule, self.manifest.obs_dim, self.manifest.goal_dim,
                                           sample_steps, sampler)
        except ValueError as exc:
            raise BundleError(f"{bundle.root}: {exc}") from exc
        self._check_graph(where)
        self._model_s = 0.0

    @property
    def passes(self) -> int:
        """Model calls per plan (T)."""
        return self.sampler.steps

    @classmethod
    def from_bundle(cls, bundle: Bundle, backend: str = "onnx", precision: str | None = None, threads: int = 1,
                    providers: list | None = None, candidates: int | None = None, seed: int = 0, warmup: int = 20,
                    sample_steps: int | None = None, sampler: str | None = None) -> DiffusionPlanner:
        if not is_denoiser_bundle(bundle):
            raise BundleError(f"{bundle.root} is not a diffusion bundle (no model file with role 'denoiser'); "
                              "load it with Planner.load")
        if backend != "onnx":
            raise BundleError(f"{bundle.root}: diffusion bundles hold an ONNX denoiser only (backend '{backend}' "
                              "asked for); use backend onnx (kdp-edge bench/run --backend onnx)")
        k = candidates or bundle.manifest.default_candidates
        f = bundle.select(backend, precision, k, role=cls.role)
        planner = cls(bundle, f, make_backend(bundle, f, threads, providers), k, seed, sample_steps, sampler)
        planner.warm_up(warmup)
        return planner

    def _check_graph(self, where: str) -> None:
        """The ONNX graph's inputs must be the denoiser contract for this manifest's dims."""
        session = getattr(self.backend, "session", None)
        if session is None:
            return
        m = self.manifest
        want = {"x_t": [m.horizon, m.window_dim], "t": [], "obs": [m.obs_dim]}
        if m.goal_dim:
            want["goal"] = [m.goal_dim]
        have = {i.name: list(i.shape[1:]) for i in session.get_inputs()}
        bad = sorted(set(want) ^ set(have))
        bad += [n for n in want if n in have and [d for d in have[n] if isinstance(d, int)] != want[n]]
        if bad:
            raise BundleError(f"{self.bundle.root / self.model_file.path}: the graph's inputs "
                              f"{ {n: ['K', *s] for n, s in have.items()} } do not match {where} "
                              f"({ {n: ['K', *s] for n, s in want.items()} }; mismatch at {sorted(set(bad))}); "
                              "the manifest and the model come from different exports, re-export the bundle")

    def _denoise(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.backend(feeds)
        self._model_s += time.perf_counter() - t0
        return out

    def generate_rows(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Raw windows [B, H, D] from the initial noise x_T ``feeds['noise']`` [B, H, D] (T model passes)."""
        return self.sampler(self._denoise, feeds, self.rng)

    def _generate_timed(self, obs, goal, noise) -> tuple[np.ndarray, float]:
        self._model_s = 0.0
        windows = self.generate(obs, goal, noise)
        return windows, self._model_s

    def warm_up(self, n: int = 20) -> None:
        """``n`` model calls: ceil(n / T) plans' worth of sampling."""
        super().warm_up(-(-n // self.passes) if n > 0 else 0)

    def describe(self) -> str:
        f = self.model_file
        return (f"{f.path} ({f.format} {f.precision} denoiser, {self.sampler.sampler} T={self.passes}, K={self.k}, "
                f"{f.bytes / 1e6:.2f} MB)")


PLANNERS[DiffusionPlanner.role] = DiffusionPlanner


def load_denoiser_sampler(bundle_dir: str | Path, steps: int | None = None) -> DenoiserSampler:
    """The sampler of a denoiser bundle's manifest (no model loaded), e.g. for tests and tools."""
    from ..bundle import load_bundle

    b = load_bundle(bundle_dir, verify=False)
    return DenoiserSampler(DenoiserSchedule.from_manifest(b.manifest, str(b.root / "bundle.json")),
                           b.manifest.obs_dim, b.manifest.goal_dim, steps)


__all__ = ["DenoiserSampler", "DenoiserSchedule", "DiffusionPlanner", "SAMPLERS", "load_denoiser_sampler"]
