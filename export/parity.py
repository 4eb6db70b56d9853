"""Parity of an exported model against the PyTorch model it came from, on fixed seeds.

Errors are in action units (raw, as the robot sees them) and relative to the action range:
``first_action_rms_frac = rms(first action error) / (action_high - action_low)``, the number the
int8 error budget is stated in. Ranking agreement: how often the candidate picked from the exported
model's windows (scored by the bundle's scorer) is one the torch model's windows on the same noise
rank best (ties count as agreement); score regret: how much torch score that choice gives up, on
average (scorer units: metres of geodesic distance in a maze). Near-ties between candidates make
the agreement look worse than the regret says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

Generate = Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> windows [K, H, D]


@dataclass
class ParityReport:
    conditions: int
    candidates: int
    max_abs: float  # max |window error| over every dim (raw units)
    rms: float  # rms window error (raw units)
    action_max_abs: float  # actions only, raw units
    action_rms: float
    first_action_rms: float  # first step's action (what is executed) rms error, raw units
    first_action_rms_frac: float  # ... / action range
    rel_max: float  # max |error| / max |reference|
    ranking_agreement: float  # fraction of conditions where the exported choice is torch's best (ties count)
    top1_in_top3: float  # fraction where the exported choice scores among torch's best three
    score_regret: float = float("nan")  # mean torch-score loss of the exported choice (scorer units,
    # metres of geodesic distance for mazes): near-ties make ranking agreement look worse than it is

    def to_dict(self) -> dict:
        return asdict(self)


def parity_inputs(manifest, conditions: list[tuple[np.ndarray, np.ndarray | None]], k: int, seed: int = 1234):
    """Feeds for each condition: obs/goal repeated K times plus fixed-seed noise."""
    rng = np.random.default_rng(seed)
    feeds = []
    for obs, goal in conditions:
        f = {"obs": np.repeat(np.asarray(obs, np.float32)[None], k, 0),
             "noise": rng.standard_normal((k, manifest.horizon, manifest.window_dim), dtype=np.float32)}
        if manifest.goal_dim:
            f["goal"] = np.repeat(np.asarray(goal, np.float32)[None], k, 0)
        feeds.append(f)
    return feeds


def compare(reference: Generate, exported: Generate, feeds: list[dict[str, np.ndarray]], manifest,
            scorer=None) -> ParityReport:
    """Run both on the same feeds and summarise the errors (see module docstring)."""
    lo, hi = manifest.action_slice
    rng_width = (np.asarray(manifest.action_high, np.float64) - np.asarray(manifest.action_low, np.float64)
                 if manifest.action_low else np.ones(manifest.act_dim))
    rng_width = np.maximum(rng_width, 1e-6)  # a constant action dimension must not divide by zero
    errs, act_errs, first_errs, refmax = [], [], [], 0.0
    same, top3, regret = 0, 0, 0.0
    for f in feeds:
        ref = np.asarray(reference(f), np.float64)
        out = np.asarray(exported(f), np.float64)
        e = out - ref
        errs.append(e.reshape(-1))
        act_errs.append(e[..., lo:hi].reshape(-1))
        first_errs.append(e[:, 0, lo:hi])  # [K, A] raw units
        refmax = max(refmax, float(np.abs(ref).max()))
        if scorer is not None:
            goal = f.get("goal", np.zeros((1, 0)))[0]
            s_ref, s_out = scorer(ref, goal), scorer(out, goal)
            pick = int(np.argmax(s_out))
            best = s_ref[pick] >= np.max(s_ref)  # a torch-best candidate (ties count as agreement)
            same += int(best)
            top3 += int(best or s_ref[pick] >= np.sort(s_ref)[-min(3, len(s_ref))])
            regret += float(np.max(s_ref) - s_ref[pick])
    e, a, first_raw = np.concatenate(errs), np.concatenate(act_errs), np.concatenate(first_errs)
    fa = first_raw / rng_width
    n = len(feeds)
    return ParityReport(
        conditions=n, candidates=len(feeds[0]["noise"]) if feeds else 0,
        max_abs=float(np.abs(e).max()), rms=float(np.sqrt(np.mean(e ** 2))),
        action_max_abs=float(np.abs(a).max()), action_rms=float(np.sqrt(np.mean(a ** 2))),
        first_action_rms=float(np.sqrt(np.mean(first_raw ** 2))),
        first_action_rms_frac=float(np.sqrt(np.mean(fa ** 2))),
        rel_max=float(np.abs(e).max() / max(refmax, 1e-12)),
        ranking_agreement=same / n if scorer is not None else float("nan"),
        top1_in_top3=top3 / n if scorer is not None else float("nan"),
        score_regret=regret / n if scorer is not None else float("nan"),
    )
