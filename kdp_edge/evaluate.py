"""Closed-loop PointMaze evaluation on the D4RL maze2d protocol (needs the ``sim`` extra).

Protocol: fixed goal cell ((1,1) / (6,6) / (7,9)), horizons 300 / 600 / 800, sparse reward 1 per
step within 0.5 m of the goal, random start cell (not the goal cell) plus U(+-0.25) noise, one
seeded start per episode shared by every policy. The planner replans every step. Scores are
D4RL-normalised with D4RL's constants: only approximately comparable on gymnasium-robotics, so the
reference pair (uniform random and the scripted waypoint expert) is measured on the same episodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .mazes import D4RL_PROTOCOL, GOAL_RADIUS, Maze
from .metrics import mean_sem, percentiles_ms
from .planning import ScoringSpec
from .progress import Progress
from .sim_episodes import SimEpisodes

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]  # obs [E, 4], goal [E, 2] -> actions [E, 2]


@dataclass
class EvalProtocol:
    env: str = "pointmaze-umaze"
    episodes: int = 50
    seed: int = 0
    protocol: str = "own-actions"  # own-actions | tracker
    lookahead: int = 8  # tracker: planned step to steer toward
    candidates: int = 16
    replan_every: int = 1
    goals: str = "fixed"  # fixed: D4RL's goal cell; random: a seeded goal and start cell per episode

    @property
    def maze(self) -> str:
        return self.env.removeprefix("pointmaze-")

    def describe(self) -> str:
        p = D4RL_PROTOCOL[self.maze]
        act = "own actions" if self.protocol == "own-actions" else f"PD tracker toward plan step {self.lookahead}"
        where = (f"goal cell {p['goal_cell']}" if self.goals == "fixed"
                 else "random goal and start cells per episode")
        return (f"{self.env}: {where}, horizon {p['horizon']}, reward radius {GOAL_RADIUS} m, "
                f"{self.episodes} episodes (seed {self.seed}), replanning every {self.replan_every} step(s), "
                f"K = {self.candidates} candidates, {act}; D4RL-normalised (approximate)")


def episode_starts(maze: Maze, goal_cell, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = [c for c in maze.free_cells() if c != tuple(goal_cell)]
    idx = rng.integers(len(cells), size=n)
    return np.stack([maze.cell_to_xy(cells[i]) + rng.uniform(-0.25, 0.25, 2) for i in idx])


def episode_goals(maze: Maze, proto: EvalProtocol) -> tuple[np.ndarray, np.ndarray]:
    """Goals [E, 2] and starts [E, 2] of ``proto``'s episodes: D4RL's fixed goal cell with random start
    cells (``goals='fixed'``), or a random goal cell and a different random start cell per episode
    (``goals='random'``), seeded by ``proto.seed``; starts get U(+-0.25) m of jitter."""
    if proto.goals == "fixed":
        cell = D4RL_PROTOCOL[proto.maze]["goal_cell"]
        goal = maze.cell_to_xy(cell)
        return np.repeat(goal[None], proto.episodes, 0), episode_starts(maze, cell, proto.episodes, proto.seed)
    if proto.goals != "random":
        raise ValueError(f"unknown goals '{proto.goals}': use fixed or random")
    rng = np.random.default_rng([proto.seed, 7])
    cells = maze.free_cells()
    goals, starts = [], []
    for _ in range(proto.episodes):
        g = cells[rng.integers(len(cells))]
        others = [c for c in cells if c != g]
        s = others[rng.integers(len(others))]
        goals.append(maze.cell_to_xy(g))
        starts.append(maze.cell_to_xy(s) + rng.uniform(-0.25, 0.25, 2))
    return np.stack(goals), np.stack(starts)


STALL_WINDOW = 100  # steps: an episode that never arrives and moved less than STALL_DISTANCE in its last 100
STALL_DISTANCE = 0.1  # metres: ... steps has stalled (e.g. resting against a wall between it and the goal)


def normalized_score(ret: np.ndarray, maze: str) -> np.ndarray:
    p = D4RL_PROTOCOL[maze]
    return 100.0 * (np.asarray(ret, dtype=np.float64) - p["ref_min"]) / (p["ref_max"] - p["ref_min"])


def make_sims(proto: EvalProtocol) -> list:
    """One simulator per episode; ``rollout`` resets them, so several policies can share them."""
    from .sim import PointMazeSim

    maze = Maze.named(proto.maze)
    return [PointMazeSim(maze, seed=proto.seed + i) for i in range(proto.episodes)]


def rollout(policy: Policy, proto: EvalProtocol, label: str = "", progress: bool = True,
            record: Callable[[int, np.ndarray], None] | None = None, sims: list | None = None) -> dict:
    """Run ``proto.episodes`` episodes in lockstep; returns returns, scores and trajectories."""
    p = D4RL_PROTOCOL[proto.maze]
    maze = Maze.named(proto.maze)
    goals, starts = episode_goals(maze, proto)
    sims = sims if sims is not None else make_sims(proto)
    obs = np.stack([s.reset(st, g) for s, st, g in zip(sims, starts, goals, strict=True)])
    horizon = p["horizon"]
    rewards = np.zeros((proto.episodes, horizon))
    traj = np.zeros((proto.episodes, horizon + 1, 2))
    traj[:, 0] = obs[:, :2]
    with Progress(horizon, f"eval {label}".strip(), enabled=progress) as bar:
        for t in range(horizon):
            act = policy(obs, goals)
            if record is not None:
                record(t, obs)
            obs = np.stack([s.step(a) for s, a in zip(sims, act, strict=True)])
            traj[:, t + 1] = obs[:, :2]
            rewards[:, t] = np.linalg.norm(obs[:, :2] - goals, axis=1) <= GOAL_RADIUS
            bar.update(1)
    returns = rewards.sum(1)
    scores = normalized_score(returns, proto.maze)
    success = rewards.any(1)
    arrival = np.where(success, rewards.argmax(1) + 1, -1)
    w = min(STALL_WINDOW, horizon)
    stalled = ~success & (np.linalg.norm(traj[:, -1] - traj[:, -1 - w], axis=-1) < STALL_DISTANCE)
    return {"returns": returns, "scores": scores, "success": success, "trajectories": traj,
            "starts": starts, "goal": goals[0], "goals": goals, "arrival_step": arrival, "stalled": stalled}


def summarize(result: dict) -> dict:
    s = result["scores"]
    n = len(s)
    mean, sem = mean_sem(s)
    return {
        "normalized_score_mean": mean,
        "normalized_score_sem": sem,
        "return_mean": float(result["returns"].mean()),
        "success_rate": float(result["success"].mean()),
        "episodes": n,
    } | ({"stalled_rate": float(result["stalled"].mean()), "stalled_episodes": np.flatnonzero(result["stalled"]).tolist(),
          "mean_arrival_step": float(result["arrival_step"][result["success"]].mean()) if result["success"].any() else None}
         if "stalled" in result else {})


class PlannerPolicy:
    """Replanning policy over the device runtime's :class:`~kdp_edge.runtime.planner.Planner`: each
    call plans for all E environments at once (:meth:`Planner.plan_batch`: K candidates each in one
    model call, scored, selected and clipped exactly as on the robot) and returns their actions."""

    def __init__(self, planner):
        self.planner = planner
        self.last_plans: np.ndarray | None = None  # [E, K, H, D]
        self.last_choice: np.ndarray | None = None  # [E]

    def __call__(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        batch = self.planner.plan_batch(obs, goals if self.planner.manifest.goal_dim else None)
        self.last_plans, self.last_choice = batch.candidates, batch.choice
        return batch.actions


def plan_latency(planner, obs: np.ndarray, goal: np.ndarray | None, runs: int = 200) -> dict:
    """One environment's whole-plan latency (:meth:`Planner.plan`: noise, model, scoring, selection),
    milliseconds; 10 untimed plans first."""
    times = []
    for i in range(runs + 10):
        t0 = time.perf_counter()
        planner.plan(obs, goal)
        if i >= 10:
            times.append(time.perf_counter() - t0)
    return percentiles_ms(times)


def reference_policies(maze: Maze, seed: int) -> dict[str, Policy]:
    from .expert import WaypointExpert

    expert = WaypointExpert(maze)
    rng = np.random.default_rng(seed)
    return {
        "random": lambda obs, goal: rng.uniform(-1, 1, size=(len(obs), 2)),
        "expert": lambda obs, goal: np.stack([expert.act(o, g) for o, g in zip(obs, goal, strict=True)]),
    }


def configure_sampler(model, method: str, sampler: str | None, sample_steps: int | None, log=print) -> dict:
    """Apply ``sampler`` / ``sample_steps`` to a diffusion model (a note, no change, for other methods);
    returns what the report records about the generator."""
    from .methods import method_for

    return method_for(method).configure_sampler(model, sampler, sample_steps, log)


def evaluate_run(run_dir, proto: EvalProtocol, progress: bool = True, plot: str | None = None,
                 references: bool = True, threads: int = 0, sampler: str | None = None,
                 sample_steps: int | None = None, log=print) -> dict:
    """Evaluate a trained run; returns the JSON-able report. ``sampler`` / ``sample_steps`` override a
    diffusion run's defaults (ignored, with a note, for drift runs)."""
    import torch

    from .checkpoint import load_run
    from .torch_planner import run_planner

    if threads > 0:
        torch.set_num_threads(threads)
    run = load_run(run_dir)
    model = run.build_model(ema=True)
    generator_info = configure_sampler(model, run.cfg.method, sampler, sample_steps, log)
    maze = Maze.named(proto.maze)
    planner = run_planner(run, proto.candidates, ScoringSpec.for_env(proto.env), seed=proto.seed,
                          protocol=proto.protocol, lookahead=proto.lookahead, model=model)
    policy = PlannerPolicy(planner)
    snapshots: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def record(t, obs):
        if plot and t % 40 == 0 and policy.last_plans is not None:
            snapshots.append((t, obs.copy(), policy.last_plans[:4].copy(), policy.last_choice[:4].copy()))

    sims = make_sims(proto)
    res = rollout(policy, proto, "kdp", progress, record, sims)
    goal = res["goal"]
    latency = plan_latency(planner, np.concatenate([res["starts"][0], [0, 0]]), goal)
    report = {
        "protocol": asdict(proto), "protocol_text": proto.describe(),
        "scoring": planner.scorer.spec.to_dict(), "planner": "kdp_edge.runtime.Planner (torch backend)",
        "checkpoint": {"run_dir": str(run_dir), "step": run.info.step, "weights": "EMA, last checkpoint",
                       "parameters": run.info.parameters, "key": run.cfg.drift.key.kind, "arch": run.cfg.model.arch}
                      | generator_info,
        "kdp": summarize(res) | {"plan_latency": latency},
    }
    refs = {}
    if references:
        for name, pol in reference_policies(maze, proto.seed).items():
            refs[name] = rollout(pol, proto, name, progress, sims=sims)
            report[name] = summarize(refs[name])
    if plot:
        from .plots import plot_rollouts

        plot_rollouts(plot, maze, res, snapshots, report, refs.get("expert"))
        report["plot"] = str(plot)
    return report


def format_eval_report(report: dict, header: str, names: tuple[str, ...], row: Callable[[dict], str]) -> str:
    """The markdown printed by ``kdp-edge eval``: protocol, one row per policy (``header`` names the
    columns after "policy", ``row`` formats a policy's summary), and the planner's latency."""
    cols = header.count("|") + 1
    lines = [f"protocol: {report['protocol_text']}", "", f"| policy | {header} |", "|---" * (cols + 1) + "|"]
    ck = report.get("checkpoint", {})
    # report["kdp"] holds the evaluated run whatever its method; the row says which method it was
    evaluated = "diffusion" if ck.get("method") == "diffusion" else "kdp"
    lines += [f"| {evaluated if name == 'kdp' else name} | {row(report[name])} |" for name in names if name in report]
    lat = report["kdp"]["plan_latency"]
    sampler = f", {ck['sampler']} T={ck['sample_steps']}" if "sampler" in ck else ""
    lines += ["", f"plan latency (K={report['protocol']['candidates']}{sampler}, torch, incl. scoring): "
                  f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms"]
    return "\n".join(lines)


def format_pointmaze_eval(report: dict) -> str:
    """The table ``kdp-edge eval`` prints for PointMaze."""
    return format_eval_report(report, "normalised score | success | return | stalled", ("kdp", "expert", "random"),
                              lambda r: (f"{r['normalized_score_mean']:.1f} ± {r['normalized_score_sem']:.1f} | "
                                         f"{100 * r['success_rate']:.0f}% | {r['return_mean']:.1f} | "
                                         f"{len(r.get('stalled_episodes', []))}"))


def evaluate_pointmaze(run_dir, env: str, o: dict, log=print) -> tuple[dict, str, str]:
    """``kdp-edge eval`` for PointMaze (the environment plug-in's evaluation hook): options ``o`` as the
    CLI gives them (None: the protocol's default). Returns (report, printed table, default report name)."""
    given = {k: o[k] for k in ("episodes", "seed", "candidates") if o.get(k) is not None}
    proto = EvalProtocol(env=env, protocol=o["protocol"], lookahead=o["lookahead"], goals=o.get("goals", "fixed"), **given)
    report = evaluate_run(run_dir, proto, progress=o["progress"], plot=o["plot"], references=o["references"],
                          threads=o["threads"], sampler=o["sampler"], sample_steps=o["sample_steps"], log=log)
    suffix = "-random-goals" if proto.goals == "random" else ""
    return report, format_pointmaze_eval(report), f"eval-{env}-{o['protocol']}{suffix}.json"


class PointMazeEpisodes(SimEpisodes):
    """``sim://pointmaze-<maze>``: D4RL's goal cell, the same seeded starts as ``kdp-edge eval``, rewards
    counted for the protocol's horizon, D4RL-normalised score per episode."""

    metric = "normalized_score"

    def __init__(self, env: str, episodes: int, seed: int):
        from .envs import env_for
        from .sim import PointMazePlant

        self.env = env
        self.maze = env_for(env).maze_name(env)
        p = D4RL_PROTOCOL[self.maze]
        self.plant = PointMazePlant(self.maze, seed=seed)
        self.horizon = self.plant.horizon = p["horizon"]
        self.starts = episode_starts(Maze.named(self.maze), p["goal_cell"], max(1, episodes), seed)
        self.goal = self.plant.goal.copy()

    def set_horizon(self, steps: int) -> None:
        self.horizon = self.plant.horizon = int(steps)  # rewards count for the episode's steps only

    def prepare(self, i: int) -> None:
        self.plant.next_start = self.starts[i % len(self.starts)]

    def result(self, i: int) -> dict:
        hits = self.plant.hits
        return {"episode": i, "return": hits, "success": hits > 0,
                "normalized_score": float(normalized_score(np.array([hits]), self.maze)[0]),
                "start": self.starts[i % len(self.starts)].tolist()}
