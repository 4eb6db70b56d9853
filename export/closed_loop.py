"""Closed-loop parity: run the torch model and each exported model through the same PointMaze
episodes (D4RL maze2d protocol, kdp_edge.evaluate) and compare D4RL-normalised scores.

Every policy gets the same episode starts, the same simulators (reset per rollout) and the same
noise seed, so a difference in score comes from the model's numbers alone (plus the chaos of a
closed loop: a tiny action difference can change an episode's route). Needs the ``sim`` extra and
a ``pointmaze-*`` env; :func:`available` says whether both hold.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

Generate = Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> windows [B, H, D]


@dataclass
class ClosedLoopScore:
    """One policy's result on the shared episodes (scores are D4RL-normalised, 0-100ish)."""

    score_mean: float
    score_sem: float
    success_rate: float
    return_mean: float
    episodes: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def available(env: str) -> tuple[bool, str]:
    """(True, "") when a closed-loop check can run for ``env``; else (False, why)."""
    if not env.startswith("pointmaze-"):
        return False, f"env {env or '(unknown)'} is not a pointmaze-* env"
    missing = [m for m in ("gymnasium", "gymnasium_robotics", "mujoco") if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"the sim extra is not installed ({', '.join(missing)} missing): pip install 'kdp-edge[sim]'"
    return True, ""


def closed_loop_scores(manifest, generators: dict[str, Generate], episodes: int = 10, seed: int = 0,
                       candidates: int | None = None, log=print) -> dict[str, ClosedLoopScore]:
    """Score each ``generators[name]`` (feeds -> raw windows) on the same ``episodes`` episodes of
    ``manifest.env`` with the bundle's protocol and scorer; K = ``candidates`` (default: the
    bundle's default K). Generators with a fixed K are fed batches of E*K rows they must split."""
    from kdp_edge.evaluate import EvalProtocol, GeneratorPolicy, make_sims, rollout, summarize
    from kdp_edge.planning import CandidateScorer, ScoringSpec

    proto = EvalProtocol(env=manifest.env, episodes=episodes, seed=seed, protocol=manifest.protocol,
                         lookahead=manifest.lookahead, candidates=candidates or manifest.default_candidates)
    scorer = CandidateScorer(ScoringSpec.from_dict(manifest.scoring))
    sims = make_sims(proto)
    out: dict[str, ClosedLoopScore] = {}
    for name, gen in generators.items():
        def generate(obs, goal, noise, gen=gen):
            feeds = {"obs": obs, "noise": noise}
            if manifest.goal_dim:
                feeds["goal"] = goal[:, :manifest.goal_dim]
            return np.asarray(gen(feeds), np.float32)

        policy = GeneratorPolicy(generate, manifest.horizon, manifest.window_dim, manifest.obs_dim, scorer, proto,
                                 seed=seed)
        t0 = time.perf_counter()
        s = summarize(rollout(policy, proto, name, progress=False, sims=sims))
        out[name] = ClosedLoopScore(s["normalized_score_mean"], s["normalized_score_sem"], s["success_rate"],
                                    s["return_mean"], s["episodes"], time.perf_counter() - t0)
        log(f"  closed loop {name}: score {s['normalized_score_mean']:.1f} ± {s['normalized_score_sem']:.1f}, "
            f"success {100 * s['success_rate']:.0f}% ({episodes} episodes, {out[name].seconds:.0f}s)")
    return out
