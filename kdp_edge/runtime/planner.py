"""Single-pass planner over an exported bundle (numpy + onnxruntime; LiteRT for .tflite).

One call of :meth:`Planner.plan` draws K noise windows, runs the model once on the batch, scores the
K candidate windows with the same :class:`~kdp_edge.planning.CandidateScorer` the training-side
evaluation uses, and turns the best window into an action with the bundle's protocol
(:func:`~kdp_edge.planning.select_action`), clipped to the bundle's action limits.

Bad input policy (the planner never guesses): an observation or goal of the wrong size, or with
NaN/inf, and noise of the wrong shape raise :class:`PlanInputError` before the model runs. A model
output with NaN/inf (e.g. a broken int8 file) is handled per candidate: such candidates score
``-inf`` and are never chosen; if no candidate is finite, :class:`PlanOutputError` (a subclass of
PlanInputError, so one ``except PlanInputError`` covers both) is raised. Either way nothing is
executed from that call: the control loop catches the error and applies its documented safe action.

Threads: ``threads=1`` pins the model to one core (ORT intra-op threads / TFLite ``num_threads``);
``threads=0`` leaves the choice to the runtime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bundle import Bundle, BundleError, ModelFile, load_bundle
from ..errors import KDPError
from ..planning import CandidateScorer, ScoringSpec, select_action

BACKENDS = ("onnx", "tflite")


class PlanInputError(KDPError):
    """An observation or goal the planner cannot use (wrong size, NaN or inf)."""


class PlanOutputError(PlanInputError):
    """The model produced NaN/inf for every candidate (nothing can be chosen)."""


@dataclass
class Plan:
    """The result of one planning call (raw units)."""

    action: np.ndarray  # [act_dim] action to execute now, clipped to the bundle's limits
    window: np.ndarray  # [H, D] chosen candidate window: [obs, act] per step
    scores: np.ndarray  # [K] candidate scores, higher is better
    choice: int  # index of the chosen candidate
    candidates: np.ndarray = field(repr=False, default=None)  # [K, H, D] all candidate windows
    latency_ms: float = 0.0  # whole call: noise, model, scoring, selection
    model_ms: float = 0.0  # the forward pass alone

    def step_action(self, i: int, act_slice: tuple[int, int]) -> np.ndarray:
        """The planned action ``i`` steps after the plan's first (for receding-horizon fallback)."""
        i = min(i, len(self.window) - 1)
        return self.window[i, act_slice[0]:act_slice[1]]


class OnnxBackend:
    """onnxruntime session; the ONNX graph has a dynamic K axis."""

    def __init__(self, path: Path, threads: int = 1, providers: list | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load it ({exc}); re-export the bundle") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {n: feeds[n] for n in self.input_names})[0]


def make_backend(bundle: Bundle, f: ModelFile, threads: int, providers: list | None):
    if f.format == "onnx":
        return OnnxBackend(bundle.path(f), threads, providers)
    if f.format == "tflite":
        from .tflite_backend import TFLiteBackend

        m = bundle.manifest
        k = f.candidates or m.default_candidates
        dims = {"obs": (k, m.obs_dim), "goal": (k, m.goal_dim), "noise": (k, m.horizon, m.window_dim)}
        return TFLiteBackend(bundle.path(f), threads, {n: dims[n] for n in m.inputs if n in dims})
    raise BundleError(f"unknown model format {f.format}")


def is_denoiser_bundle(bundle: Bundle) -> bool:
    """A diffusion bundle: its model files are denoisers (T passes per plan), not generators."""
    roles = {f.role for f in bundle.manifest.files}
    return "denoiser" in roles and "generator" not in roles


class Planner:
    """Plans from a bundle. Build with :meth:`load` (validates the bundle and warms up)."""

    role = "generator"  # the ModelFile.role this planner runs

    def __init__(self, bundle: Bundle, model: ModelFile, backend, candidates: int, seed: int = 0):
        m = bundle.manifest
        self.bundle, self.model_file, self.backend = bundle, model, backend
        self.manifest = m
        self.k = candidates
        self.rng = np.random.default_rng(seed)
        self.scorer = CandidateScorer(ScoringSpec.from_dict(m.scoring) if m.scoring else ScoringSpec())
        self.act_slice = m.action_slice
        self.low = np.asarray(m.action_low, dtype=np.float32) if m.action_low else None
        self.high = np.asarray(m.action_high, dtype=np.float32) if m.action_high else None

    @classmethod
    def load(cls, bundle_dir: str | Path, backend: str = "onnx", precision: str | None = None, threads: int = 1,
             providers: list | None = None, candidates: int | None = None, seed: int = 0, warmup: int = 20,
             verify: bool = True, sample_steps: int | None = None) -> Planner:
        """Load and verify ``bundle_dir`` and warm up (``warmup`` model calls).

        backend: ``onnx`` (dynamic K) or ``tflite`` (needs a file exported for K = ``candidates``).
        precision: ``fp32``, ``int8``, ``int8-dynamic``, or None to prefer int8 when the bundle has it.
        threads: model threads (1 = one core). providers: onnxruntime execution providers
        (default CPU). candidates: K (default the bundle's ``default_candidates``). seed: noise RNG.
        Diffusion bundles (model files with role ``denoiser``) load as
        :class:`~kdp_edge.runtime.diffusion.DiffusionPlanner`, T denoiser passes per plan;
        sample_steps: their T (default the bundle's), ignored for generator bundles.
        Raises BundleError (missing/corrupt bundle, no matching file) or MissingExtraError.
        """
        if backend not in BACKENDS:
            raise BundleError(f"unknown backend '{backend}': use one of {', '.join(BACKENDS)}")
        bundle = load_bundle(bundle_dir, verify=verify)
        if cls is Planner and is_denoiser_bundle(bundle):
            from .diffusion import DiffusionPlanner

            cls = DiffusionPlanner
        return cls.from_bundle(bundle, backend, precision, threads, providers, candidates, seed, warmup,
                               sample_steps=sample_steps)

    @classmethod
    def from_bundle(cls, bundle: Bundle, backend: str = "onnx", precision: str | None = None, threads: int = 1,
                    providers: list | None = None, candidates: int | None = None, seed: int = 0,
                    warmup: int = 20, sample_steps: int | None = None) -> Planner:
        """:meth:`load` for an already loaded bundle (``sample_steps``: denoiser planners only)."""
        k = candidates or bundle.manifest.default_candidates
        f = bundle.select(backend, precision, k, role=cls.role)
        planner = cls(bundle, f, make_backend(bundle, f, threads, providers), k, seed)
        planner.warm_up(warmup)
        return planner

    # -- inputs ------------------------------------------------------------------------------------
    def _check(self, name: str, x, dim: int) -> np.ndarray:
        """``x`` as float32 [dim]; PlanInputError when missing, of the wrong size, or not finite."""
        if x is None:
            raise PlanInputError(f"{name} is missing; the bundle expects {dim} values ({name}_dim)")
        try:
            a = np.asarray(x, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise PlanInputError(f"{name} is not numeric ({exc}); pass {dim} floats") from exc
        if a.shape[0] != dim:
            raise PlanInputError(f"{name} has {a.shape[0]} values, the bundle expects {dim} "
                                 f"({self.bundle.root / 'bundle.json'}: {name}_dim); check the state mapping")
        if not np.isfinite(a).all():
            raise PlanInputError(f"{name} contains NaN or inf ({a.tolist()}); not planning on it")
        return a

    def feeds(self, obs: np.ndarray, goal: np.ndarray | None, noise: np.ndarray) -> dict[str, np.ndarray]:
        k = len(noise)
        out = {"obs": np.broadcast_to(obs, (k, len(obs))).copy(), "noise": noise}
        if self.manifest.goal_dim:
            out["goal"] = np.broadcast_to(goal, (k, len(goal))).copy()
        return out

    def sample_noise(self) -> np.ndarray:
        """Standard-normal noise [K, H, D], float32, drawn per plan (drawing many plans at once is
        cheaper on average but puts the whole cost into one plan's tail latency)."""
        m = self.manifest
        return self.rng.standard_normal((self.k, m.horizon, m.window_dim), dtype=np.float32)

    # -- planning ----------------------------------------------------------------------------------
    def generate(self, obs: np.ndarray, goal: np.ndarray | None, noise: np.ndarray) -> np.ndarray:
        """Raw candidate windows [K, H, D] for one (validated) observation and given noise."""
        return self.backend(self.feeds(obs, goal, noise))

    def plan(self, obs, goal=None, noise: np.ndarray | None = None) -> Plan:
        """Plan from one raw observation [obs_dim] (and goal [goal_dim]); raises PlanInputError.

        noise: optional float32 [K, H, D] standard normal (default: drawn from the planner's RNG).
        Returns a :class:`Plan`; ``latency_ms`` covers checks, noise, model, scoring and selection.
        """
        t0 = time.perf_counter()
        m = self.manifest
        obs = self._check("obs", obs, m.obs_dim)
        goal = self._check("goal", goal, m.goal_dim) if m.goal_dim else None
        noise = self.sample_noise() if noise is None else self._check_noise(noise)
        windows, model_s = self._generate_timed(obs, goal, noise)
        scores = self.score(windows, goal)
        choice = int(np.argmax(scores))
        action = select_action(windows[choice], obs, m.obs_dim, m.protocol, m.lookahead,
                               pos_dims=tuple(self.scorer.spec.pos_dims))
        action = self.clip(action)
        return Plan(action=action, window=windows[choice], scores=scores, choice=choice, candidates=windows,
                    latency_ms=1e3 * (time.perf_counter() - t0), model_ms=1e3 * model_s)

    def _generate_timed(self, obs, goal, noise) -> tuple[np.ndarray, float]:
        """:meth:`generate` and the seconds spent in the model (all of it here: one pass)."""
        t0 = time.perf_counter()
        windows = self.generate(obs, goal, noise)
        return windows, time.perf_counter() - t0

    def score(self, windows: np.ndarray, goal: np.ndarray | None) -> np.ndarray:
        """Scores [K] (higher is better) of candidate windows [K, H, D]; non-finite candidates get -inf."""
        goal = goal if goal is not None else np.zeros(0)
        finite = np.isfinite(windows).all(axis=(1, 2))
        if finite.all():
            return self.scorer(windows, goal)
        if not finite.any():
            raise PlanOutputError(f"{self.describe()} produced NaN/inf for all {len(windows)} candidates; "
                                  "re-export the bundle (int8: check the parity report in bundle.json) or load "
                                  "precision='fp32'")
        scores = np.full(len(windows), -np.inf)
        scores[finite] = self.scorer(windows[finite], goal)
        return scores

    def _check_noise(self, noise) -> np.ndarray:
        m = self.manifest
        noise = np.asarray(noise, dtype=np.float32)
        want = (self.k, m.horizon, m.window_dim)
        if noise.shape != want:
            raise PlanInputError(f"noise has shape {list(noise.shape)}, the planner expects {list(want)} "
                                 "(K candidates x horizon x window_dim)")
        return noise

    def clip(self, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action, dtype=np.float32)
        if self.low is not None:
            action = np.clip(action, self.low, self.high)
        return action

    def warm_up(self, n: int = 20) -> None:
        m = self.manifest
        obs = np.zeros(m.obs_dim, np.float32)
        goal = np.zeros(m.goal_dim, np.float32) if m.goal_dim else None
        for _ in range(n):
            self.generate(obs, goal, self.sample_noise())

    def describe(self) -> str:
        f = self.model_file
        return f"{f.path} ({f.format} {f.precision}, K={self.k}, {f.bytes / 1e6:.2f} MB)"
