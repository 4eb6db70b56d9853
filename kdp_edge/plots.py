"""PNG figures (needs matplotlib: the ``plot`` extra). Written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import require
from .fileio import atomic_write
from .mazes import Maze


def _plt():
    mpl = require("matplotlib", "plot", "Plotting")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_maze(ax, maze: Maze) -> None:
    from matplotlib.patches import Rectangle

    for r, c in zip(*np.nonzero(maze.grid == 1), strict=True):
        x, y = maze.cell_to_xy((r, c))
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, color="0.25"))
    ax.set_xlim(-maze.cols / 2, maze.cols / 2)
    ax.set_ylim(-maze.rows / 2, maze.rows / 2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def save_fig(fig, path) -> Path:
    plt = _plt()
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return out


def plot_rollouts(path, maze: Maze, res: dict, snapshots, report: dict, expert: dict | None = None) -> Path:
    """Left: the first few KDP episodes: executed path (solid, on top), and at every snapshot step the
    candidate plans (grey) and the chosen plan (thin, dotted, under the path). Right: the expert's rollouts
    from the same starts. The titles say which episodes of how many are shown."""
    plt = _plt()
    ncols = 2 if expert is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 5.6), squeeze=False)
    ax = axes[0, 0]
    draw_maze(ax, maze)
    colors = plt.cm.tab10(np.arange(10))
    n_eps = len(res["trajectories"])
    n_plans = min((len(plans) for _t, _obs, plans, _c in snapshots), default=n_eps)
    n_show = max(1, min(4, n_eps, n_plans))
    for _t, _obs, plans, choice in snapshots:
        for e in range(n_show):
            for k in range(plans.shape[1]):
                ax.plot(plans[e, k, :, 0], plans[e, k, :, 1], color="0.65", lw=0.5, alpha=0.45, zorder=1)
            ax.plot(plans[e, choice[e], :, 0], plans[e, choice[e], :, 1], color=colors[e], lw=1.0, ls=":",
                    alpha=0.9, zorder=2)
    for e in range(n_show):
        tr = res["trajectories"][e]
        ax.plot(tr[:, 0], tr[:, 1], color=colors[e], lw=2.0, zorder=3, label=f"episode {e}")
        ax.plot(*tr[0], "o", color=colors[e], mec="k", zorder=4)
    goals = res.get("goals", [res["goal"]] * n_eps)  # per episode (random goals) or D4RL's fixed one
    for e in range(n_show):
        ax.plot(*goals[e], marker="*", color=colors[e] if "goals" in res and len({tuple(g) for g in goals[:n_show]}) > 1
                else "gold", ms=18, mec="k", zorder=5)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    k = report["kdp"]
    shown = f"episodes 0-{n_show - 1}" if n_show > 1 else "episode 0"
    seed = report.get("protocol", {}).get("seed")
    seed_txt = f", starts from seed {seed}" if seed is not None else ""
    ax.set_title(f"KDP: score {k['normalized_score_mean']:.1f} ± {k['normalized_score_sem']:.1f}, "
                 f"success {100 * k['success_rate']:.0f}% over {n_eps} episodes\n"
                 f"shown: {shown} of {n_eps}{seed_txt}\n(solid: executed path; dotted: chosen plan; grey: candidates; "
                 f"plans every {_snapshot_every(snapshots)} steps)", fontsize=8)
    if expert is not None:
        ax = axes[0, 1]
        draw_maze(ax, maze)
        for e in range(n_show):
            tr = expert["trajectories"][e]
            ax.plot(tr[:, 0], tr[:, 1], color=colors[e], lw=2.0, label=f"episode {e}")
            ax.plot(*tr[0], "o", color=colors[e], mec="k")
        for e in range(n_show):
            ax.plot(*goals[e], marker="*", color=colors[e] if len({tuple(g) for g in goals[:n_show]}) > 1 else "gold",
                    ms=18, mec="k")
        ex = report.get("expert", {})
        ax.set_title(f"scripted expert: score {ex.get('normalized_score_mean', float('nan')):.1f} over "
                     f"{len(expert['trajectories'])} episodes\nshown: {shown}, the same starts", fontsize=8)
    fig.suptitle(report.get("protocol_text", ""), fontsize=7, wrap=True)
    return save_fig(fig, path)


def _snapshot_every(snapshots) -> str:
    steps = [int(t) for t, *_ in snapshots]
    return str(steps[1] - steps[0]) if len(steps) > 1 else "?"
