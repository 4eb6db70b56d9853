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
from ..planning import CandidateScorer, ScoringSpec, select_action, window_problems

BACKENDS = ("onnx", "tflite")


class PlanInputError(KDPError):
    """An observation or goal the planner cannot use (wrong size, NaN or inf)."""


class PlanOutputError(PlanInputError):
    """The model produced NaN/inf for every candidate (nothing can be chosen)."""


@dataclass
class Plan:
    """The result of one planning call (raw units)."""

    action: np.ndarray  # [act_dim] action to execute now, clipped to the bundle's limits
    window: np.ndarray  # [H, D] chosen candidate window: [obs, act] (or [act]) per step, see manifest.window
    scores: np.ndarray  # [K] candidate scores, higher is better
    choice: int  # index of the chosen candidate
    candidates: np.ndarray = field(repr=False, default=None)  # [K, H, D] all candidate windows
    latency_ms: float = 0.0  # whole call: noise, model, scoring, selection
    model_ms: float = 0.0  # the forward pass alone

    def step_action(self, i: int, act_slice: tuple[int, int]) -> np.ndarray:
        """The planned action ``i`` steps after the plan's first (for receding-horizon fallback)."""
        i = min(i, len(self.window) - 1)
        return self.window[i, act_slice[0]:act_slice[1]]


@dataclass
class BatchPlan:
    """The result of one planning call for E environments at once (raw units); see :meth:`Planner.plan_batch`."""

    actions: np.ndarray  # [E, act_dim] actions to execute now, clipped to the bundle's limits
    windows: np.ndarray  # [E, H, D] chosen candidate windows
    scores: np.ndarray  # [E, K] candidate scores, higher is better
    choice: np.ndarray  # [E] index of each environment's chosen candidate
    candidates: np.ndarray = field(repr=False, default=None)  # [E, K, H, D] all candidate windows


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


PLANNERS: dict[str, type] = {}  # ModelFile.role -> the planner class that runs it; each registers itself


def planner_class(bundle: Bundle) -> type:
    """The planner class for ``bundle``'s model role (``generator``: :class:`Planner`; ``denoiser``:
    :class:`~kdp_edge.runtime.diffusion.DiffusionPlanner`, registered by its module)."""
    role = "denoiser" if is_denoiser_bundle(bundle) else "generator"
    if role not in PLANNERS:
        raise BundleError(f"{bundle.root}: its models have role '{role}', which this runtime cannot plan with "
                          f"(it knows {', '.join(sorted(PLANNERS))}); update kdp-edge")
    return PLANNERS[role]


class Planner:
    """Plans from a bundle. Build with :meth:`load` (validates the bundle and warms up)."""

    role = "generator"  # the ModelFile.role this planner runs

    def __init__(self, bundle: Bundle, model: ModelFile, backend, candidates: int, seed: int = 0):
        m = bundle.manifest
        self.bundle, self.model_file, self.backend = bundle, model, backend
        self.manifest = m
        self.k = candidates
        self.rng = np.random.default_rng(seed)
        spec = ScoringSpec.from_dict(m.scoring) if m.scoring else ScoringSpec()
        problems = window_problems(m.layout, spec, m.protocol)
        if problems:  # a manifest built in code (evaluation) is checked here; bundle.json when it loads
            raise BundleError(f"{bundle.root}: windows of {m.layout.describe()} cannot be planned with: "
                              + "; ".join(problems))
        self.scorer = CandidateScorer(spec)
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
        if cls is Planner:
            cls = planner_class(bundle)
        return cls.from_bundle(bundle, backend, precision, threads, providers, candidates, seed, warmup,
                               sample_steps=sample_steps)

    @classmethod
    def over(cls, manifest, backend, candidates: int | None = None, seed: int = 0, root: str | Path = ".",
             model: ModelFile | None = None) -> Planner:
        """A planner for ``manifest`` (a :class:`~kdp_edge.bundle.BundleManifest`, possibly without model
        files) whose model is any feeds -> raw windows callable ``backend``: a torch model on the
        training side, an exported file's session in export parity, a wrapper that alters the noise.
        Planning, scoring, selection and clipping are this class's, as on the device. No warm-up."""
        model = model or ModelFile(path="(in memory)", format="callable", precision="fp32")
        return cls(Bundle(Path(root), manifest), model, backend, candidates or manifest.default_candidates, seed)

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

    def _check_rows(self, name: str, x, dim: int, rows: int | None = None) -> np.ndarray:
        """``x`` as float32 [E, dim] (E = ``rows`` when given); PlanInputError otherwise."""
        a = np.asarray(x if x is not None else np.zeros((0, dim)), dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != dim or (rows is not None and len(a) != rows) or len(a) == 0:
            raise PlanInputError(f"{name} has shape {list(a.shape)}, plan_batch expects "
                                 f"[{rows if rows is not None else 'E'}, {dim}] (one row per environment)")
        if not np.isfinite(a).all():
            raise PlanInputError(f"{name} contains NaN or inf in row(s) {np.flatnonzero(~np.isfinite(a).all(1)).tolist()}")
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
        return self.generate_rows(self.feeds(obs, goal, noise))

    def generate_rows(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Raw windows [B, H, D] for feeds of B rows (obs [B, O], goal [B, G], noise [B, H, D]): one
        model pass (a denoiser planner runs its T passes here). A model file exported for a fixed K
        (TFLite) is called once per K rows."""
        rows, fixed = len(feeds["noise"]), self.model_file.candidates
        if not fixed or rows == fixed:
            return self.backend(feeds)
        if rows % fixed:
            raise PlanInputError(f"{self.describe()} takes batches of exactly K={fixed} rows, got {rows}")
        return np.concatenate([self.backend({n: v[i:i + fixed] for n, v in feeds.items()})
                               for i in range(0, rows, fixed)])

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
        scores, choice, action = self.choose(windows, obs, goal)
        return Plan(action=action, window=windows[choice], scores=scores, choice=choice, candidates=windows,
                    latency_ms=1e3 * (time.perf_counter() - t0), model_ms=1e3 * model_s)

    def choose(self, windows: np.ndarray, obs: np.ndarray, goal: np.ndarray | None) -> tuple[np.ndarray, int, np.ndarray]:
        """Scores [K], the chosen index and its clipped action [act_dim] for candidates [K, H, D] of one
        observation [O]: the one selection rule every caller (device, evaluation, parity) applies."""
        m = self.manifest
        scores = self.score(windows, goal)
        choice = int(np.argmax(scores))
        action = select_action(windows[choice], obs, self.act_slice, m.protocol, m.lookahead,
                               pos_dims=tuple(self.scorer.spec.pos_dims))
        return scores, choice, self.clip(action)

    def plan_batch(self, obs, goal=None, noise: np.ndarray | None = None) -> BatchPlan:
        """Plan for E environments at once: raw observations [E, obs_dim] (and goals [E, goal_dim]),
        K candidates each, generated in one model call on E x K rows, then scored and selected per
        environment exactly as :meth:`plan` does. noise: optional float32 [E x K, H, D] (default:
        drawn from the planner's RNG). Raises PlanInputError like :meth:`plan`."""
        m = self.manifest
        obs = self._check_rows("obs", obs, m.obs_dim)
        e, k = len(obs), self.k
        goal = self._check_rows("goal", goal, m.goal_dim, e) if m.goal_dim else None
        shape = (e * k, m.horizon, m.window_dim)
        if noise is None:
            noise = self.rng.standard_normal(shape, dtype=np.float32)
        elif np.shape(noise) != shape:
            raise PlanInputError(f"noise has shape {list(np.shape(noise))}, plan_batch expects {list(shape)} "
                                 "(E environments x K candidates, horizon, window_dim)")
        feeds = {"obs": np.repeat(obs, k, 0), "noise": np.asarray(noise, np.float32)}
        if goal is not None:
            feeds["goal"] = np.repeat(goal, k, 0)
        windows = np.asarray(self.generate_rows(feeds), np.float32).reshape(e, k, m.horizon, m.window_dim)
        picked = [self.choose(windows[i], obs[i], goal[i] if goal is not None else None) for i in range(e)]
        choice = np.array([c for _, c, _ in picked])
        return BatchPlan(actions=np.stack([a for _, _, a in picked]), windows=windows[np.arange(e), choice],
                         scores=np.stack([s for s, _, _ in picked]), choice=choice, candidates=windows)

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


PLANNERS[Planner.role] = Planner
