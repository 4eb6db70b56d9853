"""Plan-quality metrics shared by training logs, evaluation and benchmarks (numpy only).

All take raw (de-normalised) windows ``[B, K, H, D]``: B conditions, K candidates each.
``pos_dims`` selects the position dimensions used for motion (x, y for PointMaze).
"""

from __future__ import annotations

import numpy as np


def mean_sem(x) -> tuple[float, float]:
    """Mean of per-episode numbers ``x`` [n] and its standard error (sample std / sqrt n; 0 for n < 2)."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def candidate_diversity(plans: np.ndarray, pos_dims=(0, 1)) -> float:
    """Mean pairwise distance between candidates of one condition, averaged over positions in the
    window (metres for PointMaze)."""
    p = plans[..., list(pos_dims)]  # [B, K, H, 2]
    k = p.shape[1]
    if k < 2:
        return 0.0
    diff = p[:, :, None] - p[:, None, :]  # [B, K, K, H, 2]
    d = np.linalg.norm(diff, axis=-1).mean(-1)  # [B, K, K]
    return float(d.sum((1, 2)).mean() / (k * (k - 1)))


def mean_step_length(windows: np.ndarray, pos_dims=(0, 1)) -> float:
    """Mean per-step displacement of the positions in the windows."""
    p = windows[..., list(pos_dims)]
    return float(np.linalg.norm(np.diff(p, axis=-2), axis=-1).mean())


def staticness(plans: np.ndarray, data_windows: np.ndarray, pos_dims=(0, 1)) -> float:
    """Plan speed relative to the data's: 1 = moves like the data, 0 = static plans."""
    data = mean_step_length(data_windows, pos_dims)
    return mean_step_length(plans, pos_dims) / max(data, 1e-9)


def percentiles_ms(times_s, qs=(50, 95, 99)) -> dict[str, float]:
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    out = {f"p{q}_ms": float(np.percentile(t, q)) for q in qs}
    out["max_ms"] = float(t.max())
    out["mean_ms"] = float(t.mean())
    out["n"] = int(len(t))
    return out
