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
    """Runs the demo's commands; each command's own wall time is kept in ``OUT/stage-times.json`` (a
    reused stage keeps the time it took when it ran, so the report's times survive a re-run)."""

    def __init__(self, out: Path, n_total: int, log):
        self.out, self.n_total, self.log, self.i = out, n_total, log, 0
        self.times_path = out / "stage-times.json"
        self.stored: dict[str, float] = _load(self.times_path)  # label -> seconds, from every run so far
        self.times: dict[str, float] = {}  # label -> seconds, run by this invocation
        self.reused: list[str] = []
        self.commands: dict[str, list[str]] = {}

    def run(self, name: str, *args: str, label: str | None = None, done=None, env: dict | None = None) -> None:
        """Run ``kdp-edge args`` unless ``done`` (a path that exists, or a callable returning True)
        says the stage is finished; the command's own progress goes to stderr. ``label`` names this
        command in the stage times (default ``name``)."""
        self.i += 1
        label = label or name
        cmd = [sys.executable, "-m", "kdp_edge.cli", *args]
        shown = "kdp-edge " + shlex.join(args)
        self.commands.setdefault(name, []).append(shown)
        finished = done() if callable(done) else (done is not None and done.exists())
        if finished:
            self.reused.append(label)
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
            try:
                for line in proc.stderr:
                    sys.stderr.write(line)
                    fh.write(line)
                proc.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached the whole process group: the stage saves its work (training writes a
                # checkpoint) and exits; wait for it, keep what it printed, then stop with 130
                self._interrupted(proc, fh, name, label, t0)
        self._add_time(label, time.perf_counter() - t0)
        if proc.returncode != 0:
            raise KDPError(f"demo stage '{name}' failed (exit {proc.returncode}): {shown}\n"
                           f"its output is in {self.out / 'logs' / (name + '.txt')}; fix the cause and re-run "
                           "kdp-edge demo (finished stages are kept)")
        self.log(f"    done in {self.times[label]:.0f} s")

    def _interrupted(self, proc, fh, name: str, label: str, t0: float) -> None:
        import signal

        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # a SIGINT sent to the demo alone (kill -INT) reaches the stage too
        while True:
            try:
                rest = proc.stderr.read()
                proc.wait()
                break
            except KeyboardInterrupt:  # a second Ctrl-C: keep waiting, the stage is saving
                continue
        sys.stderr.write(rest)
        fh.write(rest)
        self._add_time(label, time.perf_counter() - t0)
        self.log(f"interrupted during stage '{name}'; finished stages are kept: re-run the same command to resume")
        raise SystemExit(130)

    def _add_time(self, label: str, seconds: float) -> None:
        from .fileio import atomic_write_json

        self.times[label] = self.times.get(label, 0.0) + seconds
        self.stored[label] = self.stored.get(label, 0.0) + seconds  # an interrupted stage's time counts too
        atomic_write_json(self.times_path, self.stored)


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
                           "mode). fix: start over with `kdp-edge demo --fresh` (scripts/main_job.sh: FRESH=1 bash "
                           "scripts/main_job.sh), or pass another --out (main_job.sh: OUT=...)")
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
        st.run("train", "train", "--resume", "--out", str(run_dir), "--steps", str(cfg.train_steps),
               done=lambda: _trained(run_dir, cfg.train_steps), env=env)
    else:
        st.run("train", "train", "--data", str(data), "--out", str(run_dir), "--steps", str(cfg.train_steps),
               "--threads", th, env=env)
    st.run("eval", "eval", str(run_dir), "--env", "pointmaze-umaze", "--episodes", str(cfg.episodes),
           "--protocol", "own-actions", "--threads", th, "--out", str(out / "eval.json"),
           "--plot", str(out / "rollouts.png"), done=out / "eval.json", env=env)
    st.run("export", "export", str(run_dir), "--format", "all", "--quantize", "int8", "--out", str(bundle),
           "--closed-loop-episodes", str(cfg.closed_loop_episodes), "--rate", str(cfg.run_rate_hz),
           done=bundle / "bundle.json", env=env)
    if (diff_run / "checkpoint.pt").exists():
        st.run("diffusion", "train", "--resume", "--out", str(diff_run), "--steps", str(cfg.diffusion_steps),
               label="diffusion train", done=lambda: _trained(diff_run, cfg.diffusion_steps), env=env)
    else:
        st.run("diffusion", "train", "--method", "diffusion", "--data", str(data), "--out", str(diff_run),
               "--steps", str(cfg.diffusion_steps), "--threads", th, label="diffusion train", env=env)
    st.run("diffusion", "export", str(diff_run), "--out", str(diff_bundle), "--sample-steps", str(cfg.diffusion_T),
           "--closed-loop-episodes", "0", label="diffusion export", done=diff_bundle / "bundle.json", env=env)
    st.run("bench", "bench", str(bundle), "--backend", "onnx,tflite", "-k", "16", "--runs", str(cfg.bench_runs),
           "--threads", "1", "--out", str(out / "bench.json"), done=out / "bench.json", env=env)
    st.run("bench", "bench", str(bundle), "--backend", "onnx", "--precision", "fp32", "-k", "16", "--runs",
           str(max(50, cfg.bench_runs // 10)), "--threads", "1", "--compare", str(diff_bundle),
           "--out", str(out / "bench-vs-diffusion.json"), label="bench vs diffusion",
           done=out / "bench-vs-diffusion.json", env=env)
    st.run("run", "run", str(bundle), "--port", "sim://pointmaze-umaze", "--rate", str(cfg.run_rate_hz),
           "--episodes", str(cfg.run_episodes), "--log", str(out / "run.jsonl"), "--summary", str(out / "run-summary.json"),
           done=lambda: _load(out / "run-summary.json").get("stopped_by") == "end", env=env)
    from export.quiet import third_party_output_to

    with third_party_output_to(out / "logs" / "plots.txt", log):  # LiteRT's "INFO: Created ... delegate" lines
        parity_plot(bundle, out / "parity.png")
        latency_plot(out, cfg, out / "latency.png")
    report = write_report(out, cfg, st, time.perf_counter() - t_start)
    log(f"report: {report}")
    return report


def parity_plot(bundle: Path, path: Path, n: int = 64) -> None:
    """int8 vs fp32 first actions on the same inputs, for every int8 model in the bundle, in % of the
    action range and clipped to the action limits (what the controller receives), like the table's
    error column (which is measured on the unclipped outputs)."""
    from .errors import require
    from .plots import save_fig
    from .runtime import Planner
    from .runtime.bench import bench_conditions

    require("matplotlib", "plot", "The demo's parity plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [("onnx", None), ("tflite", 16)]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.6))
    for ax, (backend, k) in zip(axes, pairs, strict=True):
        try:
            ref = Planner.load(bundle, backend=backend, precision="fp32", candidates=k, warmup=1)
            q = Planner.load(bundle, backend=backend, precision="int8", candidates=k, warmup=1)
        except KDPError as exc:
            ax.set_title(f"{backend}: {exc}"[:60], fontsize=8)
            continue
        conds = bench_conditions(ref.manifest, n)
        lo, hi = ref.act_slice
        a_ref, a_q = [], []
        for obs, goal in conds:
            noise = ref.sample_noise()
            a_ref.append(ref.generate(obs, goal, noise)[:, 0, lo:hi])
            a_q.append(q.generate(obs, goal, noise)[:, 0, lo:hi])
        raw_ref, raw_q = np.concatenate(a_ref), np.concatenate(a_q)  # [N, A] raw units
        low, high = _limits(ref.manifest, raw_ref)
        width = np.maximum(high - low, 1e-9)
        outside = int(((raw_ref < low) | (raw_ref > high) | (raw_q < low) | (raw_q > high)).sum())
        pct = lambda a, low=low, high=high, width=width: 100.0 * (np.clip(a, low, high) - low) / width  # noqa: E731  (0 % = low limit)
        p_ref, p_q = pct(raw_ref).ravel(), pct(raw_q).ravel()
        rms = float(np.sqrt(np.mean((p_q - p_ref) ** 2)))
        raw_rms = float(np.sqrt(np.mean(((raw_q - raw_ref) / width) ** 2))) * 100
        ax.scatter(p_ref, p_q, s=3, alpha=0.4)
        ax.plot([0, 100], [0, 100], "k--", lw=0.8)
        ax.set_xlim(-2, 102)
        ax.set_ylim(-2, 102)
        ax.set_aspect("equal")
        ax.set_xlabel("fp32 first action (% of the action range, clipped to the limits)", fontsize=8)
        ax.set_ylabel("int8 first action (% of range, clipped)", fontsize=8)
        ax.set_title(f"{backend} int8 vs fp32, K = {ref.k}: rms error {rms:.2f} % of range\n"
                     f"(unclipped {raw_rms:.2f} %; {outside} of {raw_ref.size} raw outputs past the limits)",
                     fontsize=8)
    fig.tight_layout()
    save_fig(fig, path)


def _limits(manifest, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if manifest.action_low and manifest.action_high:
        return np.asarray(manifest.action_low, np.float64), np.asarray(manifest.action_high, np.float64)
    return raw.min(axis=0), raw.max(axis=0)  # no limits in the bundle: the observed range


def latency_plot(out: Path, cfg: DemoConfig, path: Path) -> None:
    """Plan latency per configuration (p50 bar, p99 and max markers), each series named by model,
    backend, precision and K, against the control period; from bench.json and bench-vs-diffusion.json."""
    from .errors import require
    from .plots import save_fig

    require("matplotlib", "plot", "The demo's latency plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name in ("bench.json", "bench-vs-diffusion.json"):
        for r in _load(out / name).get("results", []):
            label = _series_label(r, cfg)
            if label not in [x[0] for x in rows]:
                rows.append((label, r["plan"]))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6))
    y = np.arange(len(rows))
    ax.barh(y, [p["p50_ms"] for _, p in rows], color="C0", alpha=0.6, label="p50")
    ax.plot([p["p99_ms"] for _, p in rows], y, "o", color="C1", label="p99")
    ax.plot([p["max_ms"] for _, p in rows], y, "x", color="C3", label="max")
    period = 1e3 / cfg.run_rate_hz
    ax.axvline(period, color="red", ls="--", lw=1, label=f"period at {cfg.run_rate_hz:g} Hz ({period:g} ms)")
    ax.set_yticks(y)
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("whole plan (checks, noise, model, scoring, selection), ms, log scale; one thread")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Plan latency on this machine (kdp-edge bench)", fontsize=9)
    fig.tight_layout()
    save_fig(fig, path)


def _series_label(r: dict, cfg: DemoConfig) -> str:
    model = f"diffusion T={cfg.diffusion_T}" if r.get("which") == "compare" else "KDP"
    return f"{model} {r.get('backend', '?')} {r.get('precision', '?')}, K={r.get('k', '?')}"


def _trained(run_dir: Path, steps: int) -> bool:
    info = _load(run_dir / "run.json")
    return (run_dir / "checkpoint.pt").exists() and info.get("step", 0) >= steps


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def write_report(out: Path, cfg: DemoConfig, st: Stage, seconds: float) -> Path:
    from .fileio import atomic_write_text

    ev, man = _load(out / "eval.json"), _load(out / "bundle" / "bundle.json")
    bench, vs, run = _load(out / "bench.json"), _load(out / "bench-vs-diffusion.json"), _load(out / "run-summary.json")
    total = sum(st.stored.values())
    if st.times:
        ran = ", ".join(f"{k} {v:.0f} s" for k, v in st.times.items())
        this_time = f"this invocation ran {ran} and took {seconds / 60:.1f} min"
    else:
        this_time = f"this invocation reused every stage ({seconds:.0f} s to re-check them and write the report)"
    per_stage = ", ".join(f"{k} {v:.0f} s" for k, v in st.stored.items())
    L = [f"# kdp-edge demo report{' (quick mode: tiny sizes, numbers are a smoke test)' if cfg.quick_mode else ''}", "",
         f"Generated by `kdp-edge demo --out {out}{' --quick' if cfg.quick_mode else ''}`. The stages took "
         f"{total / 60:.1f} min when they ran ({per_stage}; each command's own time, stored in `stage-times.json`); "
         f"{this_time}.", ""]
    L += ["## Closed loop (PointMaze UMaze)", "", f"Protocol: {ev.get('protocol_text', '?')}", "",
          "| policy | normalised score | success |", "|---|---|---|"]
    for name in ("kdp", "expert", "random"):
        if name in ev:
            r = ev[name]
            L.append(f"| {name} | {r['normalized_score_mean']:.1f} ± {r['normalized_score_sem']:.1f} | "
                     f"{100 * r['success_rate']:.0f}% |")
    L += ["", "![rollouts](rollouts.png)", ""]
    L += _three_scores(cfg, ev, man, run)
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
        from .runtime.bench_report import format_markdown

        L += ["## On-device latency (this machine, one thread)", "", format_markdown(bench), "", "![latency](latency.png)", ""]
    if vs:
        L += ["### KDP vs diffusion, timed in the same run", "",
              f"Diffusion: the baseline's denoiser bundle, T = {cfg.diffusion_T} denoising steps per plan "
              f"({cfg.diffusion_steps} training steps: this row is about latency, not plan quality).", ""]
        L += _ratio_lines(vs, cfg)
        L.append("")
    if run:
        from .app.run import format_summary

        L += ["## Closed loop over the serial link (virtual motor controller on a pty)", "", "```", format_summary(run),
              "```", "", "Per-cycle log: `run.jsonl` (one JSON object per cycle: t_state_rx, t_plan_start, t_plan_end, "
              "t_action_tx, seq, plan_ms, jitter_ms, deadline_miss, source, link counters).", ""]
    L += ["## Commands", ""] + [f"- {name}: `{c}`" for name, cs in st.commands.items() for c in cs]
    return atomic_write_text(out / "report.md", "\n".join(L) + "\n")


def _three_scores(cfg: DemoConfig, ev: dict, man: dict, run: dict) -> list[str]:
    """Why the same model gets three UMaze scores in this report (episodes and path differ)."""
    cl = [(f, p["closed_loop"]) for f, p in man.get("parity", {}).items()
          if isinstance(p, dict) and "score_mean" in p.get("closed_loop", {})]
    sim = run.get("sim", {})
    kdp = ev.get("kdp", {})
    L = ["**Three scores for one model, and why they differ.** The same trained model is scored three times "
         "below, on different episodes and through different paths, so the numbers are not expected to agree "
         "beyond their noise (a 5- or 10-episode mean moves by several points with the start positions):", ""]
    if kdp:
        L.append(f"- evaluation (above): {kdp.get('episodes', cfg.episodes)} episodes, the device planner with the "
                 f"torch model as its backend, in this process, simulator stepped as fast as it plans: {kdp['normalized_score_mean']:.1f} ± "
                 f"{kdp['normalized_score_sem']:.1f}")
    if cl:
        txt = ", ".join(f"{f} {c['score_mean']:.1f}" for f, c in cl)
        c0 = cl[0][1]
        torch_txt = f" (torch on the same episodes: {c0['torch_score_mean']:.1f})" if "torch_score_mean" in c0 else ""
        L.append(f"- export check: {c0.get('episodes', cfg.closed_loop_episodes)} episodes with each exported file "
                 f"(ONNX / TFLite, fp32 / int8) on the same noise, in process: {txt}{torch_txt}; it asks whether int8 "
                 "changes the score, not what the score is")
    if sim.get("episodes"):
        L.append(f"- serial run: {sim['episodes']} episode{'s' if sim['episodes'] != 1 else ''} in real time at {cfg.run_rate_hz:g} Hz, the int8 ONNX "
                 "bundle streaming ACTIONs over a pseudo-terminal to the virtual controller (STATE-paced, watchdog, "
                 f"the GIL shared with the simulated robot): {sim['normalized_score_mean']:.1f} ± "
                 f"{sim['normalized_score_sem']:.1f}")
    L += ["", "All three draw their start positions from seed 0 but with different episode counts, so even the "
          "first starts differ (the offsets inside a cell are drawn after the cells); the noise draws differ too.", ""]
    return L


def _ratio_lines(vs: dict, cfg: DemoConfig) -> list[str]:
    lines = ["| configuration | K | plan p50 (ms) | plan p99 (ms) |", "|---|---|---|---|"]
    for r in vs.get("results", []):
        lines.append(f"| {_series_label(r, cfg)} | {r['k']} | {r['plan']['p50_ms']:.3f} | {r['plan']['p99_ms']:.3f} |")
    lines += ["", "| ratio (other / reference) | K | p50 | p99 |", "|---|---|---|---|"]
    for r in vs.get("ratios", []):
        names = {x["label"]: _series_label(x, cfg) for x in vs.get("results", [])}
        lines.append(f"| {names.get(r['other'], r['other'])} / {names.get(r['reference'], r['reference'])} | "
                     f"{r['k']} | x{r['latency_ratio_p50']:.1f} | "
                     f"x{r['latency_ratio_p99']:.1f} |")
    return lines
