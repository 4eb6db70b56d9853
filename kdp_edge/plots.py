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
    """Left: KDP rollouts with candidate plans (grey) and the chosen plan (colour) at a few steps.
    Right: the expert's rollouts from the same starts."""
    plt = _plt()
    ncols = 2 if expert is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 5.4), squeeze=False)
    ax = axes[0, 0]
    draw_maze(ax, maze)
    colors = plt.cm.tab10(np.arange(10))
    n_show = min(4, len(res["trajectories"]))
    for _t, _obs, plans, choice in snapshots:
        for e in range(min(n_show, len(plans))):
            for k in range(plans.shape[1]):
                ax.plot(plans[e, k, :, 0], plans[e, k, :, 1], color="0.6", lw=0.6, alpha=0.5)
            ax.plot(plans[e, choice[e], :, 0], plans[e, choice[e], :, 1], color=colors[e], lw=1.8)
    for e in range(n_show):
        tr = res["trajectories"][e]
        ax.plot(tr[:, 0], tr[:, 1], color=colors[e], lw=1.0, ls="--")
        ax.plot(*tr[0], "o", color=colors[e])
    ax.plot(*res["goal"], marker="*", color="gold", ms=18, mec="k")
    k = report["kdp"]
    ax.set_title(f"KDP: score {k['normalized_score_mean']:.1f} ± {k['normalized_score_sem']:.1f}, "
                 f"success {100 * k['success_rate']:.0f}%\n(dashed: executed; grey: candidates; bold: chosen)",
                 fontsize=9)
    if expert is not None:
        ax = axes[0, 1]
        draw_maze(ax, maze)
        for e in range(n_show):
            tr = expert["trajectories"][e]
            ax.plot(tr[:, 0], tr[:, 1], color=colors[e], lw=1.0)
            ax.plot(*tr[0], "o", color=colors[e])
        ax.plot(*res["goal"], marker="*", color="gold", ms=18, mec="k")
        ex = report.get("expert", {})
        ax.set_title(f"scripted expert: score {ex.get('normalized_score_mean', float('nan')):.1f}", fontsize=9)
    fig.suptitle(report.get("protocol_text", ""), fontsize=7, wrap=True)
    return save_fig(fig, path)
