"""Bimodal toy: mode shares, obstacle crossings and plan speed per key and temperature set.

    python bench/toy_modes.py --out bench/results/toy_modes

Writes toy_modes.json and toy_modes.md. Data step length is 0.067; a static plan has ~0.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from kdp_edge.config import TrainConfig
from kdp_edge.provenance import provenance, provenance_line
from kdp_edge.toy import bimodal_demos, mode_report
from kdp_edge.train import Trainer

DEFAULT_TEMPS = [0.05, 0.2, 0.5]
SETTINGS = [  # (key, temperatures, positive source: kdp_edge/positives.py)
    ("full", [0.02, 0.05, 0.2], "knn"),
    ("full", DEFAULT_TEMPS, "knn"),
    ("condition", DEFAULT_TEMPS, "knn"),
    ("condition+descriptor", [0.02, 0.05, 0.2], "knn"),
    ("condition+descriptor", DEFAULT_TEMPS, "knn"),
    ("two-factor", DEFAULT_TEMPS, "knn"),
    ("full", DEFAULT_TEMPS, "own"),
    ("condition+descriptor", DEFAULT_TEMPS, "own"),
    ("full", DEFAULT_TEMPS, "pooled"),
    ("condition+descriptor", DEFAULT_TEMPS, "pooled"),
]


def run(key: str, temps: list[float], positives: str, steps: int, seed: int, tmp: Path) -> dict:
    cfg = TrainConfig(seed=seed)
    cfg.optim.positive_source = positives
    cfg.data.horizon = 16
    cfg.drift.key.kind = key
    cfg.drift.temperatures = temps
    cfg.model.mlp_hidden = 256
    cfg.optim.steps, cfg.optim.warmup, cfg.optim.lr = steps, 100, 1e-3
    t0 = time.perf_counter()
    tr = Trainer(cfg, tmp, trajectories=bimodal_demos(seed=seed), log=lambda *a: None)
    for _ in range(steps):
        tr.train_step()
    noise = torch.randn(256, 16, 4, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        plans = tr.ema(torch.zeros(256, 2), torch.zeros(256, 0), noise).numpy()
    return mode_report(plans) | {"train_seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default="bench/results/toy_modes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for key, temps, positives in SETTINGS:
        for seed in args.seeds:
            r = run(key, temps, positives, args.steps, seed, out / "tmp")
            rows.append({"key": key, "temperatures": temps, "positives": positives, "seed": seed, **r})
            print(rows[-1], flush=True)
    prov = provenance()
    (out / "toy_modes.json").write_text(json.dumps({"provenance": prov, "steps": args.steps, "rows": rows}, indent=2))
    lines = [provenance_line(prov), "",
             "| key | temperatures | positives | seed | above | below | through obstacle | step length (data 0.067) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['key']} | {r['temperatures']} | {r['positives']} | {r['seed']} | {100 * r['above']:.0f}% | {100 * r['below']:.0f}% | "
                     f"{100 * r['through_obstacle']:.0f}% | {r['step_length']:.3f} |")
    (out / "toy_modes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
