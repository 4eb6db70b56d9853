"""How much a PushT planner depends on its input noise (issue #8 diagnostics).

    python bench/pusht_noise.py bench/results/pusht/pusht-kdp bench/results/pusht/pusht-diffusion

For each run (drift or diffusion; diffusion samples with DDIM T=20):
- closed loop, K = 1, 8 actions executed per plan, 200 gym-pusht episodes, with the noise
  (a) drawn afresh for every plan (the normal protocol), (b) drawn once per episode and held for all
  its plans (a deterministic policy), (c) zero (the generator's "centre"), (d) drawn afresh and
  halved (truncation), (e) the plan averaged over 16 fresh draws (the cloud's centre, as sampled);
- open loop on 64 dataset states x 32 noise draws: the per-state spread of the planned actions
  (mean distance to the per-state mean, pixels) at each planned step, and the distance of the mean
  first action from the recorded one;
- for drift runs, who each generated window's neighbours are in one training batch (32 dataset
  conditions x the run's N generated x its P kNN positives): mean-scaled key distances to the other
  generated windows, to the condition's own window and to the other positives, and at each
  temperature the share of a row's affinity that goes to negatives and to positives.
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
from kdp_edge.drift import affinity, key_distances  # noqa: E402
from kdp_edge.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from kdp_edge.planning import ScoringSpec  # noqa: E402
from kdp_edge.provenance import provenance, provenance_line  # noqa: E402
from kdp_edge.pusht import PushTProtocol, planner_plan_fn, rollout, summarize  # noqa: E402
from kdp_edge.runtime.planner import Planner  # noqa: E402
from kdp_edge.torch_planner import TorchBackend, plan_manifest  # noqa: E402
from kdp_edge.windows import WindowSet  # noqa: E402

NOISE_MODES = {"fresh": "fresh noise per plan", "held": "noise held per episode", "zero": "zero noise",
               "half": "noise x 0.5", "mean16": "mean of 16 plans"}  # mode -> table column
MEAN_DRAWS = 16


def with_noise(backend, mode: str):
    """A planner backend (feeds -> windows) with its noise replaced per ``mode`` (a key of
    :data:`NOISE_MODES`): as drawn, the first draw held, zero, halved, or the window averaged over
    MEAN_DRAWS draws (the given one first)."""
    held: dict[tuple, np.ndarray] = {}
    rng = np.random.default_rng(1)

    def gen(feeds: dict[str, np.ndarray]) -> np.ndarray:
        noise = feeds["noise"]
        if mode == "zero":
            noise = np.zeros_like(noise)
        elif mode == "held":
            noise = held.setdefault(noise.shape, noise)
        elif mode == "half":
            noise = 0.5 * noise
        elif mode == "mean16":
            more = rng.standard_normal((MEAN_DRAWS - 1, *noise.shape)).astype(noise.dtype)
            draws = np.concatenate([noise[None], more]).reshape(-1, *noise.shape[1:])  # draw-major
            tiled = {n: np.tile(v, (MEAN_DRAWS, 1)) for n, v in feeds.items() if n != "noise"}
            wins = backend(tiled | {"noise": draws})
            return wins.reshape(MEAN_DRAWS, len(noise), *wins.shape[1:]).mean(0)
        return backend(feeds | {"noise": noise})

    return gen


def action_spread(model, ws: WindowSet, act: slice, states: int = 64, draws: int = 32) -> dict:
    """Per-state spread (px) of the planned actions at each step, and the mean first-action error (px)."""
    q = ws.starts[np.random.default_rng(0).choice(len(ws), states, replace=False)]
    obs = torch.from_numpy(np.repeat(ws.traj.observations[q], draws, 0).astype(np.float32))
    noise = torch.randn(len(obs), ws.horizon, model.window_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        win = model(obs, torch.zeros(len(obs), 0), noise).numpy().reshape(states, draws, ws.horizon, -1)
    a = win[..., act]  # [S, draws, H, 2]
    spread = np.linalg.norm(a - a.mean(1, keepdims=True), axis=-1).mean((0, 1))
    first_err = np.linalg.norm(a[:, :, 0].mean(1) - ws.traj.actions[q], axis=-1).mean()
    return {"spread_px": spread.round(2).tolist(), "first_action_mean_error_px": round(float(first_err), 2)}


def drift_neighbourhoods(model, ws: WindowSet, cfg, groups: int = 32) -> dict:
    """Key-space neighbourhoods of generated windows in a training-like batch (drift runs only).

    Distances are the mean-scaled key distances of :func:`kdp_edge.drift.key_distances`; the row
    affinity shares are the weights of :func:`kdp_edge.drift.affinity` summed over the negatives
    and over the positives of each row (self excluded), averaged over rows.
    """
    samples = cfg.optim.samples
    rng = np.random.default_rng(0)
    starts = ws.starts[rng.choice(len(ws), groups, replace=False)]
    pos_starts = ws.knn(starts, cfg.optim.positives)  # column 0 is the condition's own window
    cond = torch.from_numpy(ws.conditions(starts))
    pos, pos_cond = torch.from_numpy(ws.windows(pos_starts)), torch.from_numpy(ws.conditions(pos_starts))
    noise = torch.randn(groups * samples, ws.horizon, model.window_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gen = model.generate_normalized(cond.repeat_interleave(samples, 0), noise).reshape(groups, samples, ws.horizon, -1)
    gen_cond = cond[:, None].expand(groups, samples, cond.shape[-1])
    d_neg, d_pos = key_distances(gen, gen_cond, pos, pos_cond, cfg.drift.key)
    off = ~torch.eye(samples, dtype=torch.bool)
    out = {"gen_to_gen": float(d_neg[:, off].mean()), "gen_to_own_window": float(d_pos[..., 0].mean()),
           "gen_to_other_positives": float(d_pos[..., 1:].mean()), "affinity": {}}
    for tau in cfg.drift.temperatures:
        a_neg, a_pos = affinity(d_neg, d_pos, tau)
        out["affinity"][f"{tau:g}"] = {"negatives": round(float(a_neg.sum(-1).mean()), 3),
                                       "positives": round(float(a_pos.sum(-1).mean()), 3)}
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


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
    report = {"command": "python bench/pusht_noise.py " + " ".join(sys.argv[1:]), "provenance": provenance(),
              "episodes": args.episodes, "runs": {}}
    proto = PushTProtocol(episodes=args.episodes, candidates=1, action_steps=8)
    window_sets: dict[tuple[int, int, str], WindowSet] = {}  # (obs_history, horizon, window) -> the data's windows
    for run_dir in args.runs:
        run = load_run(run_dir)
        model = run.build_model(ema=True)
        if run.cfg.method == "diffusion":
            model.set_sampler("ddim", 20)
        o = run.info.obs_dim
        row = {"method": run.cfg.method}
        manifest = plan_manifest(run.info, ScoringSpec.for_run(run.info, proto.action_steps), 1)  # K = 1
        for mode in NOISE_MODES:
            plan = planner_plan_fn(Planner.over(manifest, with_noise(TorchBackend(model), mode), 1, proto.seed))
            s = summarize(rollout(plan, proto, o, run.info.obs_history, mode, progress=False))
            row[mode] = {k: s[k] for k in ("mean_max_coverage", "max_coverage_sem", "success_rate")}
            print(f"{run_dir} noise {mode}: {s['mean_max_coverage']:.3f} ± {s['max_coverage_sem']:.3f}", flush=True)
        key = (run.info.obs_history, run.info.horizon, run.info.window)
        if key not in window_sets:
            window_sets[key] = WindowSet(load_trajectories(data, goal="none", obs_history=key[0]), key[1], window=key[2])
        row |= action_spread(model, window_sets[key], slice(*run.info.layout.action_slice))
        if run.cfg.method == "drift":
            row["neighbourhoods"] = drift_neighbourhoods(model, window_sets[key], run.cfg)
        report["runs"][run_dir] = row
    out = Path(args.out)
    atomic_write_json(out / "pusht-noise.json", report)
    lines = [provenance_line(report["provenance"]), "",
             f"Closed loop: K = 1, 8 of 16 actions executed, {args.episodes} gym-pusht episodes (seeds 100000..), "
             "mean max coverage ± SEM. Open loop: 64 dataset states x 32 noise draws.", "",
             f"| run | method | {' | '.join(NOISE_MODES.values())} | "
             "spread of action 0 / 7 / 15 (px) | mean action 0 error (px) |",
             "|---|---|" + "---|" * len(NOISE_MODES) + "---|---|"]
    for name, r in report["runs"].items():
        cells = [f"{r[m]['mean_max_coverage']:.3f} ± {r[m]['max_coverage_sem']:.3f}" for m in NOISE_MODES]
        sp = r["spread_px"]
        lines.append(f"| {name} | {r['method']} | {' | '.join(cells)} | {sp[0]:.1f} / {sp[7]:.1f} / {sp[-1]:.1f} | "
                     f"{r['first_action_mean_error_px']:.1f} |")
    drift_runs = {n: r["neighbourhoods"] for n, r in report["runs"].items() if "neighbourhoods" in r}
    if drift_runs:
        lines += ["", "Drift runs, one training-like batch (32 conditions x N generated x P kNN positives): mean-scaled "
                  "key distances, and per temperature the share of a generated window's affinity that goes to the "
                  "other generated windows (negatives) / to the positives.", "",
                  "| run | generated to generated | to own window | to other positives | affinity negatives / positives per tau |",
                  "|---|---|---|---|---|"]
        for name, nb in drift_runs.items():
            aff = "; ".join(f"{t}: {v['negatives']:.2f} / {v['positives']:.2f}" for t, v in nb["affinity"].items())
            lines.append(f"| {name} | {nb['gen_to_gen']:.2f} | {nb['gen_to_own_window']:.2f} | "
                         f"{nb['gen_to_other_positives']:.2f} | {aff} |")
    atomic_write_text(out / "pusht-noise.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
