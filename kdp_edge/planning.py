"""Candidate scoring and action selection (numpy only: shared by training-side evaluation and the
device runtime, so both pick the same candidate from the same windows).

A plan is a raw window [H, D]: per step [observation, action] (D = obs_dim + act_dim) or, for
action-only windows, [action] (D = act_dim); :class:`~kdp_edge.layout.WindowLayout` says where the
actions sit. Scores are "higher is better". Scorings and protocols that read planned positions need
windows with states (:func:`window_problems`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .layout import STATES_ACTIONS, WindowLayout
from .mazes import Maze

PROTOCOLS = ("own-actions", "tracker")
STATE_SCORINGS = ("goal_distance", "maze_geodesic", "region_geodesic")  # read planned positions: need windows with states
STATE_PROTOCOLS = ("tracker",)  # steers toward a planned position: needs windows with states


@dataclass
class ScoringSpec:
    """How candidates are ranked; saved in checkpoints' eval reports and in bundle.json."""

    # "goal_distance" (Euclidean, any goal-conditioned task), "maze_geodesic", "region_geodesic" (the arm
    # task, kdp_edge.arm: the shortest way around a forbidden box in ``region_dims`` of the position,
    # Euclidean in the other position dims, ``wall_penalty`` per unit fraction of planned positions in the
    # box; the way goes round its corners grown by ``wall_margin``), or "consensus" (tasks
    # without a goal input, e.g. PushT: the medoid candidate, the one whose first ``consensus_steps``
    # values of ``consensus_dims`` are nearest on average to the other candidates': the largest mode)
    kind: str = "goal_distance"
    maze: str = ""  # maze name for "maze_geodesic"
    pos_dims: list[int] = field(default_factory=lambda: [0, 1])  # observation dims holding the position
    wall_penalty: float = 10.0  # per unit fraction of planned positions inside walls
    wall_margin: float = 0.05  # metres around a position that must be free
    consensus_dims: list[int] = field(default_factory=list)  # window dims compared ("consensus")
    consensus_steps: int = 8  # leading window steps compared (the executed chunk)
    region_dims: list[int] = field(default_factory=list)  # "region_geodesic": 2 of pos_dims' positions
    region_low: list[float] = field(default_factory=list)  # the forbidden box's corners in those dims
    region_high: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> ScoringSpec:
        return ScoringSpec(**d)

    @staticmethod
    def for_env(env: str, goal_dim: int = 2, obs_dim: int = 0, act_dim: int = 0, executed_steps: int = 8,
                window: str = STATES_ACTIONS) -> ScoringSpec:
        """The scoring the environment plug-in (kdp_edge.envs) chooses: maze geodesic for
        ``pointmaze-<maze>``, Euclidean goal distance for other goal tasks, consensus over the action
        dims (wherever ``window``'s layout puts them) for goal-free tasks (``goal_dim`` 0)."""
        from .envs import env_for

        layout = WindowLayout(obs_dim, act_dim, window)
        return ScoringSpec(**env_for(env).scoring_kwargs(env, goal_dim, layout, executed_steps))

    @staticmethod
    def for_run(info, executed_steps: int = 8) -> ScoringSpec:
        """The scoring of a trained run (a :class:`~kdp_edge.checkpoint.RunInfo` or bundle manifest)."""
        return ScoringSpec.for_env(info.env, info.goal_dim, info.obs_dim, info.act_dim, executed_steps, info.window)

    @property
    def needs_states(self) -> bool:
        """Whether this scoring reads planned positions (the window's states)."""
        return self.kind in STATE_SCORINGS


def window_problems(layout: WindowLayout, scoring: ScoringSpec, protocol: str = "own-actions") -> list[str]:
    """What does not fit windows of ``layout`` in a planner with this scoring and protocol (empty: all
    fits). Action-only windows hold no planned states: no position scoring, no tracker protocol."""
    out = []
    if not layout.has_states:
        fix = "train with data.window 'states+actions'"
        if scoring.needs_states:
            out.append(f"scoring '{scoring.kind}' reads planned positions, which windows of actions only do not hold "
                       f"({fix}, or plan a goal-free task, which scores by consensus over the actions)")
        if protocol in STATE_PROTOCOLS:
            out.append(f"protocol '{protocol}' steers toward a planned position, which windows of actions only do "
                       f"not hold (use protocol own-actions, or {fix})")
    if scoring.kind == "consensus" and any(not 0 <= d < layout.dim for d in scoring.consensus_dims):
        out.append(f"consensus_dims {scoring.consensus_dims} fall outside windows of {layout.describe()}")
    return out


class CandidateScorer:
    """``scores = scorer(plans [K, H, D], goal [G])`` -> [K]; geodesic fields cached per goal."""

    def __init__(self, spec: ScoringSpec):
        if spec.kind not in ("goal_distance", "maze_geodesic", "region_geodesic", "consensus"):
            raise ValueError(f"unknown scoring '{spec.kind}': use goal_distance, maze_geodesic, region_geodesic "
                             "or consensus")
        self.spec = spec
        self.maze = Maze.named(spec.maze) if spec.kind == "maze_geodesic" else None
        self.region = None
        if spec.kind == "region_geodesic":
            from .arm import BoxGeodesic

            if len(spec.region_dims) != 2 or len(spec.region_low) != 2 or len(spec.region_high) != 2 \
                    or not set(spec.region_dims) <= set(spec.pos_dims):
                raise ValueError(f"scoring region_geodesic needs 2 region_dims among pos_dims {spec.pos_dims} and "
                                 f"2-value region_low / region_high, got {spec.region_dims}, {spec.region_low}, "
                                 f"{spec.region_high}")
            self.region = BoxGeodesic(spec.region_low, spec.region_high, spec.wall_margin)
        self._fields: dict[tuple, object] = {}

    def _field(self, goal: np.ndarray):
        key = tuple(np.round(np.asarray(goal, dtype=np.float64)[:2], 3))
        if key not in self._fields:
            if len(self._fields) > 32:
                self._fields.clear()
            self._fields[key] = self.maze.geodesic_field(np.array(key))
        return self._fields[key]

    def __call__(self, plans: np.ndarray, goal: np.ndarray) -> np.ndarray:
        if self.spec.kind == "consensus":
            return consensus_scores(plans, self.spec.consensus_dims, self.spec.consensus_steps)
        pos = plans[..., self.spec.pos_dims]  # [K, H, 2]
        goal = np.asarray(goal, dtype=np.float64)
        if self.region is not None:
            return self._region_scores(plans, goal)
        if self.maze is None:
            return -np.linalg.norm(pos[:, -1] - goal[: pos.shape[-1]], axis=-1)
        geo = self._field(goal)(pos[:, -1])
        walls = self.maze.in_wall(pos, margin=self.spec.wall_margin).mean(axis=-1)
        far = np.nanmax(np.where(np.isfinite(geo), geo, np.nan)) if np.isfinite(geo).any() else 0.0
        geo = np.where(np.isfinite(geo), geo, far + 1.0)
        return -geo - self.spec.wall_penalty * walls


    def _region_scores(self, plans: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """[K]: minus (way around the box in region_dims (+) Euclidean rest) from each plan's last position
        to the goal, minus ``wall_penalty`` x the fraction of its planned positions inside the box."""
        s = self.spec
        pos_dims = list(s.pos_dims)
        k = [pos_dims.index(d) for d in s.region_dims]
        rest = [i for i in range(len(pos_dims)) if i not in k]
        last = plans[:, -1][:, pos_dims].astype(np.float64)  # [K, P]
        g = np.asarray(goal, dtype=np.float64)[: len(pos_dims)]
        geo = self.region.lengths(last[:, k], g[k])
        dist = np.sqrt(geo ** 2 + ((last[:, rest] - g[rest]) ** 2).sum(-1))
        box = plans[..., s.region_dims]  # [K, H, 2]
        inside = ((box >= np.asarray(s.region_low)) & (box <= np.asarray(s.region_high))).all(-1).mean(-1)
        return -dist - s.wall_penalty * inside


def consensus_scores(plans: np.ndarray, dims: list[int], steps: int) -> np.ndarray:
    """[K] minus the mean Euclidean distance of each candidate's leading ``steps`` x ``dims`` values
    to the other candidates' (0 for K = 1): the highest-scoring candidate is the medoid."""
    x = plans[:, :steps][..., dims].reshape(len(plans), -1).astype(np.float64)
    if len(x) < 2:
        return np.zeros(len(x))
    d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0.0))
    return -d.sum(1) / (len(x) - 1)


def select_action(
    plan: np.ndarray, obs: np.ndarray, act_slice: tuple[int, int], protocol: str = "own-actions",
    lookahead: int = 8, pos_dims=(0, 1), kp: float = 10.0, kd: float = 1.0,
) -> np.ndarray:
    """The action to execute now from the chosen plan [H, D] whose actions are ``[act_slice)`` of a step.

    own-actions: the plan's first action. tracker: PD control toward the planned position
    ``lookahead`` steps ahead (Diffuser's Maze2D protocol; assumes velocity dims follow positions;
    windows with states only, see :func:`window_problems`).
    """
    if protocol == "own-actions":
        return plan[0, act_slice[0]:act_slice[1]]
    if protocol == "tracker":
        pos = np.asarray(pos_dims)
        target = plan[min(lookahead, len(plan) - 1), pos]
        vel = obs[pos + len(pos)]
        return np.clip(kp * (target - obs[pos]) - kd * vel, -1.0, 1.0)
    raise ValueError(f"unknown protocol '{protocol}': use {' or '.join(PROTOCOLS)}")
