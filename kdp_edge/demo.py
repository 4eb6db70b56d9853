"""``kdp-edge demo``: the whole product on one machine, with a report a person wants to read.

Stages (each one a ``kdp-edge`` command, run as a subprocess and shown with its progress):

1. data      PointMaze UMaze demonstrations (waypoint expert, action noise 0.3, dwell at goals)
2. train     the KDP generator (default config)
3. eval      closed loop on the D4RL UMaze protocol with the random / expert reference pair
4. export    ONNX and TFLite, fp32 and int8 (calibrated), parity-gated bundle
5. diffusion the diffusion baseline on the same data and backbone, exported as a denoiser bundle
6. bench     on-device plan latency: fp32 vs int8, and KDP vs diffusion (T denoising steps)
7. run       the closed loop over a pseudo-terminal against the virtual motor controller

Everything lands in ``--out`` (default ``out/demo``): the dataset, the run, the bundles, JSON
reports, plots, the per-cycle serial log and ``report.md``, regenerated from those files by every
invocation. A stage whose outputs exist is skipped (delete them or pass ``--fresh``), so an
interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import KDPError


@dataclass
class DemoConfig:
    """Sizes of every stage; ``quick()`` is the CI-sized version (under 3 minutes on 2 cores)."""

    data_steps: int = 200_000
    noise: float = 0.3
    dwell: int = 100
    train_steps: int = 4000
    episodes: int = 30
    diffusion_steps: int = 2000
    diffusion_T: int = 20
    bench_runs: int = 1000
    run_episodes: int = 5
    run_rate_hz: float = 100.0
    closed_loop_episodes: int = 10
    threads: int = 2
    quick_mode: bool = False

    @staticmethod
    def quick() -> DemoConfig:
        return DemoConfig(data_steps=30_000, train_steps=300, episodes=4, diffusion_steps=100, bench_runs=200,
                          run_episodes=1, closed_loop_episodes=2, quick_mode=True)


class Stage:
    def __init__(self, out: Path, n_total: int, log):
        self.out, self.n_total, self.log, self.i = out, n_total, log, 0
        self.times: dict[str, float] = {}
        self.commands: dict[str, list[str]] = {}

    def run(self, name: str, *args: str, done=None, env: dict | None = None) -> None:
        """Run ``kdp-edge args`` unless ``done`` (a path that exists, or a callable returning True)
        says the stage is finished; the command's own progress goes to stderr."""
        self.i += 1
        cmd = [sys.executable, "-m", "kdp_edge.cli", *args]
        shown = "kdp-edge " + shlex.join(args)
        self.commands.setdefault(name, []).append(shown)
        finished = done() if callable(done) else (done is not None and done.exists())
        if finished:
            self.log(f"[{self.i}/{self.n_total}] {name}: already done, skipping")
            return
        self.log(f"[{self.i}/{self.n_total}] {name}: {shown}")
        t0 = time.perf_counter()
        (self.out / "logs").mkdir(exist_ok=True)
        with open(self.out / "logs" / f"{name}.txt", "a", encoding="utf-8") as fh:
            fh.write(f"$ {shown}\n")
            fh.flush()
            # stdout (results) to the log; stderr (progress, errors) to the terminal and the log
            proc = subprocess.Popen(cmd, env=env or os.environ.copy(), stdout=fh, stderr=subprocess.PIPE, text=True)
            for line in proc.stderr:
                sys.stderr.write(line)
                fh.write(line)
            proc.wait()
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
        if proc.returncode != 0:
            raise KDPError(f"demo stage '{name}' failed (exit {proc.returncode}): {shown}\n"
                           f"its output is in {self.out / 'logs' / (name + '.txt')}; fix the cause and re-run "
                           "kdp-edge demo (finished stages are kept)")
        self.log(f"    done in {self.times[name]:.0f} s")


def run_demo(out: str | Path, cfg: DemoConfig, fresh: bool = False, log=print) -> Path:
    """Run every stage into ``out`` and write ``out/report.md``; returns its path."""
    out = Path(out)
    marker = out / "demo-config.json"
    if fresh and out.exists():
        if any(out.iterdir()) and not marker.exists():
            raise KDPError(f"--fresh would delete {out}, which is not a demo output folder (no demo-config.json); "
                           "pass another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    want = {k: v for k, v in asdict(cfg).items() if k != "threads"}
    if marker.exists():
        have = {k: v for k, v in json.loads(marker.read_text()).items() if k != "threads"}
        if have != want:
            raise KDPError(f"{out} holds a demo made with other settings ({'quick' if have.get('quick_mode') else 'full'} "
                           "mode); re-run with --fresh to start over, or pass another --out")
    marker.write_text(json.dumps(asdict(cfg), indent=2))
    env = os.environ.copy()
    env.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    st = Stage(out, 9, log)
    t_start = time.perf_counter()
    data, run_dir, bundle = out / "data" / "umaze.hdf5", out / "run", out / "bundle"
    diff_run, diff_bundle = out / "diffusion-run", out / "diffusion-bundle"
    th = str(cfg.threads)

    st.run("data", "data", "pointmaze", "--maze", "umaze", "--steps", str(cfg.data_steps), "--noise", str(cfg.noise),
           "--dwell", str(cfg.dwell), "--out", str(data), done=data, env=env)
    if (run_dir / "checkpoint.pt").exists():  # an interrupted demo: continue training where it stopped
        st.run("train", "train", "--resume", "--out", str(run_dir), "--steps", str(cfg.train_steps), "--quiet",
               done=lambda: _trained(run_dir, cfg.train_steps), env=env)
    else:
        st.run("train", "train", "--data", str(data), "--out", str(run_dir), "--steps", str(cfg.train_steps),
               "--threads", th, "--quiet", env=env)
    st.run("eval", "eval", str(run_dir), "--env", "pointmaze-umaze", "--episodes", str(cfg.episodes),
           "--protocol", "own-actions", "--threads", th, "--quiet", "--out", str(out / "eval.json"),
           "--plot", str(out / "rollouts.png"), done=out / "eval.json", env=env)
    st.run("export", "export", str(run_dir), "--format", "all", "--quantize", "int8", "--out", str(bundle),
           "--closed-loop-episodes", str(cfg.closed_loop_episodes), "--rate", str(cfg.run_rate_hz),
           done=bundle / "bundle.json", env=env)
    if (diff_run / "checkpoint.pt").exists():
        st.run("diffusion", "train", "--resume", "--out", str(diff_run), "--steps", str(cfg.diffusion_steps), "--quiet",
               done=lambda: _trained(diff_run, cfg.diffusion_steps), env=env)
    else:
        st.run("diffusion", "train", "--method", "diffusion", "--data", str(data), "--out", str(diff_run),
               "--steps", str(cfg.diffusion_steps), "--threads", th, "--quiet", env=env)
    st.run("diffusion", "export", str(diff_run), "--out", str(diff_bundle), "--sample-steps", str(cfg.diffusion_T),
           "--closed-loop-episodes", "0", done=diff_bundle / "bundle.json", env=env)
    st.run("bench", "bench", str(bundle), "--backend", "onnx,tflite", "-k", "16", "--runs", str(cfg.bench_runs),
           "--threads", "1", "--out", str(out / "bench.json"), "--plot", str(out / "latency.png"), "--quiet",
           done=out / "bench.json", env=env)
    st.run("bench", "bench", str(bundle), "--backend", "onnx", "--precision", "fp32", "-k", "16", "--runs",
           str(max(50, cfg.bench_runs // 10)), "--threads", "1", "--compare", str(diff_bundle),
           "--out", str(out / "bench-vs-diffusion.json"), "--quiet", done=out / "bench-vs-diffusion.json", env=env)
    st.run("run", "run", str(bundle), "--port", "sim://pointmaze-umaze", "--rate", str(cfg.run_rate_hz),
           "--episodes", str(cfg.run_episodes), "--log", str(out / "run.jsonl"), "--summary", str(out / "run-summary.json"),
           done=lambda: _load(out / "run-summary.json").get("stopped_by") == "end", env=env)
    parity_plot(bundle, out / "parity.png")
    report = write_report(out, cfg, st, time.perf_counter() - t_start)
    log(f"report: {report}")
    return report


def parity_plot(bundle: Path, path: Path, n: int = 64) -> None:
    """Scatter of int8 vs fp32 first actions on the same inputs, for every int8 model in the bundle."""
    from .errors import require
    from .runtime import Planner
    from .runtime.bench import bench_conditions

    require("matplotlib", "plot", "The demo's parity plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [("onnx", None), ("tflite", 16)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, (backend, k) in zip(axes, pairs, strict=True):
        try:
            ref = Planner.load(bundle, backend=backend, precision="fp32", candidates=k, warmup=1)
            q = Planner.load(bundle, backend=backend, precision="int8", candidates=k, warmup=1)
        except KDPError as exc:
            ax.set_title(f"{backend}: {exc}"[:60])
            continue
        conds = bench_conditions(ref.manifest, n)
        a_ref, a_q = [], []
        lo, hi = ref.act_slice
        for obs, goal in conds:
            noise = ref.sample_noise()
            a_ref.append(ref.generate(obs, goal, noise)[:, 0, lo:hi])
            a_q.append(q.generate(obs, goal, noise)[:, 0, lo:hi])
        a_ref, a_q = np.concatenate(a_ref).ravel(), np.concatenate(a_q).ravel()
        rms = float(np.sqrt(np.mean((a_q - a_ref) ** 2)))
        ax.scatter(a_ref, a_q, s=3, alpha=0.4)
        lim = [min(a_ref.min(), a_q.min()), max(a_ref.max(), a_q.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("fp32 first action")
        ax.set_ylabel("int8 first action")
        ax.set_title(f"{backend} int8 vs fp32 (rms {rms:.4f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _trained(run_dir: Path, steps: int) -> bool:
    info = _load(run_dir / "run.json")
    return (run_dir / "checkpoint.pt").exists() and info.get("step", 0) >= steps


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def write_report(out: Path, cfg: DemoConfig, st: Stage, seconds: float) -> Path:
    from .fileio import atomic_write_text

    ev, man = _load(out / "eval.json"), _load(out / "bundle" / "bundle.json")
    bench, vs, run = _load(out / "bench.json"), _load(out / "bench-vs-diffusion.json"), _load(out / "run-summary.json")
    L = [f"# kdp-edge demo report{' (quick mode: tiny sizes, numbers are a smoke test)' if cfg.quick_mode else ''}", "",
         f"Generated by `kdp-edge demo --out {out}{' --quick' if cfg.quick_mode else ''}` in {seconds / 60:.1f} min "
         f"(stages run this time: {', '.join(f'{k} {v:.0f} s' for k, v in st.times.items()) or 'none, all reused'}).", ""]
    L += ["## Closed loop (PointMaze UMaze)", "", f"Protocol: {ev.get('protocol_text', '?')}", "",
          "| policy | normalised score | success |", "|---|---|---|"]
    for name in ("kdp", "expert", "random"):
        if name in ev:
            r = ev[name]
            L.append(f"| {name} | {r['normalized_score_mean']:.1f} ± {r['normalized_score_sem']:.1f} | "
                     f"{100 * r['success_rate']:.0f}% |")
    L += ["", "![rollouts](rollouts.png)", ""]
    L += ["## Export: fp32 vs int8 parity", "",
          "| file | size (MB) | first-action rms (% of range) | max-abs error | ranking agreement | closed-loop score |",
          "|---|---|---|---|---|---|"]
    for f in man.get("files", []):
        p = man.get("parity", {}).get(f["path"], {})
        cl = p.get("closed_loop", {})
        cl_txt = (f"{cl['score_mean']:.1f} (torch {cl['torch_score_mean']:.1f}, {cl['episodes']} episodes)"
                  if "score_mean" in cl and "torch_score_mean" in cl else "-")
        L.append(f"| {f['path']} | {f['bytes'] / 1e6:.2f} | {100 * p.get('first_action_rms_frac', float('nan')):.3f} | "
                 f"{p.get('max_abs', float('nan')):.2e} | {100 * p.get('ranking_agreement', float('nan')):.0f}% | {cl_txt} |")
    L += ["", "![parity](parity.png)", ""]
    if bench:
        from .runtime.bench import format_markdown

        L += ["## On-device latency (this machine, one thread)", "", format_markdown(bench), "", "![latency](latency.png)", ""]
    if vs:
        L += ["### KDP vs diffusion, timed in the same run", "",
              f"Diffusion: the baseline's denoiser bundle, T = {cfg.diffusion_T} denoising steps per plan "
              f"({cfg.diffusion_steps} training steps: this row is about latency, not plan quality).", ""]
        L += [ln for ln in _ratio_lines(vs)]
        L.append("")
    if run:
        from firmware_bridge.run import format_summary

        L += ["## Closed loop over the serial link (virtual motor controller on a pty)", "", "```", format_summary(run),
              "```", "", "Per-cycle log: `run.jsonl` (one JSON object per cycle: t_state_rx, t_plan_start, t_plan_end, "
              "t_action_tx, seq, plan_ms, jitter_ms, deadline_miss, source, link counters).", ""]
    L += ["## Commands", ""] + [f"- {name}: `{c}`" for name, cs in st.commands.items() for c in cs]
    return atomic_write_text(out / "report.md", "\n".join(L) + "\n")


def _ratio_lines(vs: dict) -> list[str]:
    lines = ["| configuration | K | plan p50 (ms) | plan p99 (ms) |", "|---|---|---|---|"]
    for r in vs.get("results", []):
        lines.append(f"| {r['label']} | {r['k']} | {r['plan']['p50_ms']:.3f} | {r['plan']['p99_ms']:.3f} |")
    lines += ["", "| ratio (other / reference) | K | p50 | p99 |", "|---|---|---|---|"]
    for r in vs.get("ratios", []):
        lines.append(f"| {r['other']} / {r['reference']} | {r['k']} | x{r['latency_ratio_p50']:.1f} | "
                     f"x{r['latency_ratio_p99']:.1f} |")
    return lines
