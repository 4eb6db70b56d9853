"""How much a PushT planner depends on its input noise (issue #8 diagnostics).

    python bench/pusht_noise.py bench/results/pusht/pusht-kdp bench/results/pusht/pusht-diffusion

For each run (drift or diffusion; diffusion samples with DDIM T=20):
- closed loop, K = 1, 8 actions executed per plan, 200 gym-pusht episodes, with the noise
  (a) drawn afresh for every plan (the normal protocol), (b) drawn once per episode and held for all
  its plans (a deterministic policy), (c) zero (the generator's "centre");
- open loop on 64 dataset states x 32 noise draws: the per-state spread of the planned actions
  (mean distance to the per-state mean, pixels) at each planned step, and the distance of the mean
  first action from the recorded one.
Writes <out>/pusht-noise.json and .md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdp_edge.checkpoint import load_run  # noqa: E402
from kdp_edge.data.pusht import default_pusht_path  # noqa: E402
from kdp_edge.data.readers import load_trajectories  # noqa: E402
from kdp_edge.evaluate import torch_generate  # noqa: E402
from kdp_edge.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from kdp_edge.pusht import PushTProtocol, rollout, summarize  # noqa: E402
from kdp_edge.windows import WindowSet  # noqa: E402

NOISE_MODES = ("fresh", "held", "zero")


def noise_plan_fn(generate, horizon: int, window_dim: int, mode: str, seed: int):
    """K = 1 plans [E, H, D] from stacked observations [E, O] with the noise of ``mode``."""
    rng = np.random.default_rng(seed)
    held: dict[int, np.ndarray] = {}

    def plan(obs: np.ndarray) -> np.ndarray:
        shape = (len(obs), horizon, window_dim)
        if mode == "zero":
            noise = np.zeros(shape, np.float32)
        elif mode == "held":
            noise = held.setdefault(len(obs), rng.standard_normal(shape).astype(np.float32))
        else:
            noise = rng.standard_normal(shape).astype(np.float32)
        return generate(obs.astype(np.float32), np.zeros((len(obs), 0), np.float32), noise)

    return plan


def action_spread(model, ws: WindowSet, act: slice, states: int = 64, draws: int = 32) -> dict:
    """Per-state spread (px) of the planned actions at each step, and the mean first-action error (px)."""
    q = ws.starts[np.random.default_rng(0).choice(len(ws), states, replace=False)]
    data = ws.norm.denorm_window(ws.windows(q))
    obs = torch.from_numpy(np.repeat(ws.traj.observations[q], draws, 0).astype(np.float32))
    noise = torch.randn(len(obs), ws.horizon, model.window_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        win = model(obs, torch.zeros(len(obs), 0), noise).numpy().reshape(states, draws, ws.horizon, -1)
    a = win[..., act]  # [S, draws, H, 2]
    spread = np.linalg.norm(a - a.mean(1, keepdims=True), axis=-1).mean((0, 1))
    first_err = np.linalg.norm(a[:, :, 0].mean(1) - data[:, 0, act], axis=-1).mean()
    return {"spread_px": spread.round(2).tolist(), "first_action_mean_error_px": round(float(first_err), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", default=None)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--out", default="bench/results/pusht")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data) if args.data else default_pusht_path()
    if not data.exists():
        print(f"bench/pusht_noise.py: skipped: PushT demonstrations not found at {data}; nothing is downloaded")
        return
    report = {"command": "python bench/pusht_noise.py " + " ".join(sys.argv[1:]), "episodes": args.episodes, "runs": {}}
    proto = PushTProtocol(episodes=args.episodes, candidates=1, action_steps=8)
    for run_dir in args.runs:
        run = load_run(run_dir)
        model = run.build_model(ema=True)
        if run.cfg.method == "diffusion":
            model.set_sampler("ddim", 20)
        o = run.info.obs_dim
        row = {"method": run.cfg.method}
        for mode in NOISE_MODES:
            plan = noise_plan_fn(torch_generate(model), run.info.horizon, model.window_dim, mode, proto.seed)
            s = summarize(rollout(plan, proto, o, run.info.obs_history, mode, progress=False))
            row[mode] = {k: s[k] for k in ("mean_max_coverage", "max_coverage_sem", "success_rate")}
            print(f"{run_dir} noise {mode}: {s['mean_max_coverage']:.3f} ± {s['max_coverage_sem']:.3f}", flush=True)
        traj = load_trajectories(data, goal="none", obs_history=run.info.obs_history)
        row |= action_spread(model, WindowSet(traj, run.info.horizon, run.normalizer), slice(o, o + 2))
        report["runs"][run_dir] = row
    out = Path(args.out)
    atomic_write_json(out / "pusht-noise.json", report)
    lines = [f"Command: `{report['command']}`", "",
             f"Closed loop: K = 1, 8 of 16 actions executed, {args.episodes} gym-pusht episodes (seeds 100000..), "
             "mean max coverage ± SEM. Open loop: 64 dataset states x 32 noise draws.", "",
             "| run | method | fresh noise per plan | noise held per episode | zero noise | "
             "spread of action 0 / 7 / 15 (px) | mean action 0 error (px) |", "|---|---|---|---|---|---|---|"]
    for name, r in report["runs"].items():
        cells = [f"{r[m]['mean_max_coverage']:.3f} ± {r[m]['max_coverage_sem']:.3f}" for m in NOISE_MODES]
        sp = r["spread_px"]
        lines.append(f"| {name} | {r['method']} | {' | '.join(cells)} | {sp[0]:.1f} / {sp[7]:.1f} / {sp[-1]:.1f} | "
                     f"{r['first_action_mean_error_px']:.1f} |")
    atomic_write_text(out / "pusht-noise.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
