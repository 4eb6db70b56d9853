"""The ``kdp-edge`` command line. Heavy imports (torch, mujoco) happen inside the commands."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from . import __version__
from .cli_policy import KDPGroup, fail  # noqa: F401  (the error policy; fail is re-exported)
from .envs import names as env_names
from .errors import KDPError


def friendly_errors(fn):
    """Turn user errors into one clear line on stderr and exit code 2 (no traceback).

    Kept for commands defined outside a :class:`KDPGroup`; inside one, the group applies the same policy."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KDPError as exc:
            fail(str(exc))

    return wrapper


@click.group(cls=KDPGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kdp-edge")
def cli() -> None:
    """kdp-edge: Keyed Drifting Policies, trained, exported and run on the edge."""


# ---- data -----------------------------------------------------------------------------------------
@cli.group()
def data() -> None:
    """Generate datasets locally, or convert them (to-lerobot); nothing is downloaded."""


@data.command("pointmaze")
@click.option("--maze", type=click.Choice(["umaze", "medium", "large"]), default="umaze", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option("--noise", type=click.FloatRange(min=0.0), default=0.5, show_default=True,
              help="std of Gaussian action noise (D4RL maze2d used noisy actions)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--arrive-radius", type=click.FloatRange(min=0.01), default=0.3, show_default=True,
              help="metres from the goal at which a new goal cell is drawn")
@click.option("--dwell", type=click.IntRange(min=0), default=0, show_default=True,
              help="hold at each reached goal for 0..N steps before the next goal (0: D4RL behaviour)")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="output .hdf5 (D4RL layout)")
@friendly_errors
def data_pointmaze(maze, steps, noise, seed, arrive_radius, dwell, out) -> None:
    """Waypoint-expert data in gymnasium-robotics PointMaze, D4RL maze2d layout."""
    from .data.pointmaze import PointMazeDataConfig, config_attrs, generate_pointmaze

    cfg = PointMazeDataConfig(maze=maze, steps=steps, noise=noise, seed=seed, arrive_radius=arrive_radius, dwell=dwell)
    _write_expert_data(out, f"pointmaze-{maze}", steps, lambda bar: generate_pointmaze(cfg, progress=bar.update),
                       config_attrs(cfg))


def _write_expert_data(out: str, label: str, steps: int, generate, attrs: dict) -> None:
    """Run ``generate(progress_bar)`` (arrays in the D4RL layout, goal-conditioned), write them to ``out`` with
    ``attrs`` and say how many goals the expert reached."""
    import time

    from .data.pointmaze import write_d4rl_hdf5
    from .progress import Progress

    t0 = time.perf_counter()
    with Progress(steps, label) as bar:
        arrays = generate(bar)
    write_d4rl_hdf5(out, arrays, attrs)
    goals = int((abs(arrays["infos/goal"][1:] - arrays["infos/goal"][:-1]).sum(1) > 0).sum())
    click.echo(f"wrote {out}: {steps:,} steps, {goals:,} goals reached, {time.perf_counter() - t0:.1f}s")


@data.command("arm")
@click.option("--steps", type=click.IntRange(min=1), default=200_000, show_default=True)
@click.option("--noise", type=click.FloatRange(min=0.0), default=0.02, show_default=True,
              help="std (rad) of Gaussian noise on the expert's commanded goal positions")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dwell", type=click.IntRange(min=0), default=10, show_default=True,
              help="hold at each reached goal pose for 0..N steps before the next goal")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="output .hdf5 (D4RL layout)")
@friendly_errors
def data_arm(steps, noise, seed, dwell, out) -> None:
    """Scripted-expert data for the arm task (6 joints around a forbidden region; kdp_edge/arm.py)."""
    from .data.arm import ArmDataConfig, config_attrs, generate_arm

    cfg = ArmDataConfig(steps=steps, noise=noise, seed=seed, dwell=dwell)
    _write_expert_data(out, "arm", steps, lambda bar: generate_arm(cfg, progress=bar.update), config_attrs(cfg))


@data.command("pusht-synthetic")
@click.option("--episodes", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--steps", type=click.IntRange(min=2), default=60, show_default=True, help="steps per episode")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="output .npz (PushT low-dim layout)")
@friendly_errors
def data_pusht_synthetic(episodes, steps, seed, out) -> None:
    """A tiny made-up dataset in the PushT low-dim layout (for trying the pipeline; not demonstrations).
    The real 206 human demonstrations: ../shared/datasets/pusht/pusht_lowdim.npz."""
    from .data.pusht import write_synthetic_pusht

    write_synthetic_pusht(out, episodes=episodes, steps=steps, seed=seed)
    click.echo(f"wrote {out}: {episodes} episodes x {steps} steps (synthetic, PushT layout)")


@data.command("to-lerobot")
@click.argument("src", metavar="IN", type=click.Path(exists=True))
@click.argument("out", metavar="OUT", type=click.Path(file_okay=False))
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="the data's rate (default: PushT 10, PointMaze 100; required for other data)")
@click.option("--task", type=str, default=None, help="task description stored in meta/tasks.parquet")
@click.option("--episodes-per-file", type=click.IntRange(min=0), default=0, show_default=True,
              help="episodes per data file (0: LeRobot's rule, a new file every --file-mb)")
@click.option("--file-mb", type=click.IntRange(min=1), default=100, show_default=True, help="data file size limit")
@click.option("--chunks-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="data files per chunk-NNN folder")
@friendly_errors
def data_to_lerobot(src, out, fps, task, episodes_per_file, file_mb, chunks_size) -> None:
    """Convert a dataset kdp-edge reads (PointMaze .hdf5, PushT .npz, ...) into a LeRobot v3.0 folder."""
    from .data.lerobot import write_lerobot_v30
    from .data.readers import load_trajectories

    traj = load_trajectories(src, goal="auto")
    write_lerobot_v30(traj, out, fps=fps, task=task, episodes_per_file=episodes_per_file, chunks_size=chunks_size,
                      data_files_size_in_mb=file_mb)
    files = sorted(p.relative_to(out).as_posix() for p in Path(out).glob("data/*/*.parquet"))
    click.echo(f"wrote {out}: LeRobot v3.0, {int(traj.episode_ends.sum())} episodes, {len(traj.observations):,} frames, "
               f"{len(files)} data file(s) ({files[0]}{' ...' if len(files) > 1 else ''})")


# ---- train ----------------------------------------------------------------------------------------
@cli.command()
@click.option("--data", "data_path", type=click.Path(), help="dataset (.hdf5 D4RL, .npz OGBench, Minari dir)")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="run directory")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML/JSON config overrides")
@click.option("--recipe", "recipe_name", type=str, default=None,
              help="start a new run from a measured task recipe of kdp_edge.config.RECIPES (e.g. pusht); "
                   "--config and flags override it")
@click.option("--method", type=click.Choice(["drift", "diffusion"]), default=None,
              help="drift: one-step KDP generator; diffusion: trajectory diffusion baseline (same backbone)")
@click.option("--key", type=str, default=None,
              help="drift key: full | condition | condition+descriptor | two-factor")
@click.option("--arch", type=click.Choice(["mlp", "unet"]), default=None)
@click.option("--steps", type=click.IntRange(min=1), default=None)
@click.option("--horizon", type=click.IntRange(min=2), default=None)
@click.option("--obs-history", type=click.IntRange(min=1), default=None,
              help="observations stacked into the condition (PushT / Diffusion Policy: 2)")
@click.option("--seed", type=int, default=None)
@click.option("--threads", type=click.IntRange(min=0), default=None, help="torch threads (0: default)")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None,
              help="training device [default: cpu]; cuda: one GPU per process (cuda:LOCAL_RANK), DDP over nccl")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--quiet", is_flag=True, help="no progress line")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="data-parallel processes on this machine (launches torch.distributed.run; optim.conditions "
                   "is per process). Multi-node: run torchrun yourself, see docs/ddp.md")
@friendly_errors
def train(data_path, out, config_file, recipe_name, method, key, arch, steps, horizon, obs_history, seed, threads,
          device, resume, quiet, nproc) -> None:
    """Train a KDP generator (or the diffusion baseline); writes checkpoint, config and metrics to --out."""
    import os

    from .checkpoint import load_run
    from .config import TrainConfig, load_config_file, merge, recipe
    from .drift import KEY_KINDS
    from .train import Trainer

    if key is not None and key not in KEY_KINDS:
        raise click.BadParameter(f"unknown key '{key}'; choose one of {', '.join(KEY_KINDS)}", param_hint="--key")
    if resume and recipe_name:
        raise click.BadParameter("a resumed run keeps the config saved with it; drop --recipe (or start a new --out)",
                                 param_hint="--recipe")
    prior = load_run(out) if resume else None
    if prior is not None:
        base = prior.cfg.to_dict()
    else:
        if (Path(out) / "checkpoint.pt").exists():
            raise KDPError(f"{out} already holds a run; use --resume to continue it or choose another --out")
        base = TrainConfig().to_dict()
        if recipe_name:
            base = merge(base, recipe(recipe_name))
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        _launch_ddp(nproc, data=data_path, out=out, config=config_file, recipe=recipe_name, method=method, key=key,
                    arch=arch, steps=steps, horizon=horizon, obs_history=obs_history, seed=seed, threads=threads, device=device,
                    resume=resume, quiet=quiet)
    if config_file:
        base = merge(base, load_config_file(config_file))
    over: dict = {}
    if data_path:
        over.setdefault("data", {})["path"] = str(data_path)
    if horizon:
        over.setdefault("data", {})["horizon"] = horizon
    if obs_history:
        over.setdefault("data", {})["obs_history"] = obs_history
    if key:
        over.setdefault("drift", {}).setdefault("key", {})["kind"] = key
    if arch:
        over.setdefault("model", {})["arch"] = arch
    if steps:
        over.setdefault("optim", {})["steps"] = steps
    for name, val in (("method", method), ("seed", seed), ("threads", threads), ("device", device)):
        if val is not None:
            over[name] = val
    cfg = TrainConfig.from_dict(merge(base, over))
    Trainer(cfg, out, prior=prior, log=lambda m: click.echo(m, err=True)).run(progress=not quiet)


def _launch_ddp(nproc: int, **opts) -> None:
    """Re-run this ``train`` command under ``python -m torch.distributed.run --standalone``; exits with its code."""
    import signal
    import subprocess

    args = []
    for name, val in opts.items():
        flag = "--" + name.replace("_", "-")
        if val is True:
            args.append(flag)
        elif val is not None and val is not False:  # (0 is a value: --seed 0)
            args += [flag, str(val)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "kdp_edge.train", *args]
    click.echo(f"launching: {' '.join(cmd[1:])}", err=True)
    proc = subprocess.Popen(cmd)
    old = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                sys.exit(proc.wait())
            except KeyboardInterrupt:  # the terminal's SIGINT reached the workers too: wait for their checkpoint
                continue
    finally:
        signal.signal(signal.SIGTERM, old)


# ---- eval -----------------------------------------------------------------------------------------
@cli.command("eval")
@click.argument("run_dir", type=click.Path())
@click.option("--env", type=click.Choice(env_names()),
              default=None, help="default: the run's env (pointmaze-umaze when it has none)")
@click.option("--episodes", type=click.IntRange(min=1), default=None, help="[default: 50; pusht: 200]")
@click.option("--seed", type=int, default=None, help="first episode seed [default: 0; pusht: 100000]")
@click.option("--action-steps", type=click.IntRange(min=1), default=8, show_default=True,
              help="pusht: planned actions executed per plan")
@click.option("--demos", type=click.Path(dir_okay=False), default=None,
              help="pusht: the demonstrations file replayed as a reference [default: the run's data]")
@click.option("--protocol", type=click.Choice(["own-actions", "tracker"]), default="own-actions", show_default=True,
              help="own-actions: execute the plan's first action; tracker: PD toward the planned position")
@click.option("--lookahead", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--candidates", "-k", type=click.IntRange(min=1), default=None,
              help="candidates per plan [default: 16; pusht: 1, where the consensus choice measured worse]")
@click.option("--no-references", is_flag=True, help="skip the random / expert reference pair")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="write a PNG of rollouts and plans")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="JSON report (default RUN_DIR/eval-<env>-<protocol>.json)")
@click.option("--threads", type=click.IntRange(min=0), default=0)
@click.option("--sampler", type=click.Choice(["ddim", "ddpm"]), default=None,
              help="diffusion runs: sampler (default: the run's diffusion.sampler); ignored for drift runs")
@click.option("--sample-steps", type=click.IntRange(min=1), default=None,
              help="diffusion runs: denoising steps T (default: the run's diffusion.sample_steps); ignored for drift runs")
@click.option("--goals", type=click.Choice(["fixed", "random"]), default="fixed", show_default=True,
              help="PointMaze: D4RL's fixed goal cell, or a seeded random goal and start cell per episode")
@click.option("--quiet", is_flag=True)
@friendly_errors
def eval_cmd(run_dir, env, episodes, seed, action_steps, demos, protocol, lookahead, candidates, no_references, plot,
             out, threads, sampler, sample_steps, goals, quiet) -> None:
    """Closed-loop evaluation: the D4RL maze2d protocol with the reference pair (PointMaze), or
    gym-pusht with the random and replayed-demonstration references (PushT)."""
    from .envs import env_for
    from .fileio import atomic_write_json, read_json
    from .provenance import provenance

    run_json = Path(run_dir) / "run.json"
    run_info = read_json(run_json) if run_json.exists() else {}  # a missing run is reported by the evaluator
    if env is None:
        run_env = run_info.get("env", "")
        env = run_env if run_env in env_names() else "pointmaze-umaze"
    evaluate = env_for(env).load("evaluate")
    options = {"episodes": episodes, "seed": seed, "candidates": candidates, "action_steps": action_steps,
               "demos": demos, "protocol": protocol, "lookahead": lookahead, "references": not no_references,
               "plot": plot, "threads": threads, "sampler": sampler, "sample_steps": sample_steps,
               "goals": goals, "progress": not quiet, "run_info": run_info}
    report, text, name = evaluate(run_dir, env, options, log=lambda m: click.echo(m, err=True))
    report["provenance"] = provenance()  # the command and commit that evaluated it
    prov = Path(run_dir) / "provenance.json"
    report["trained_by"] = read_json(prov) if prov.exists() else None  # ... and that trained it
    out = out or str(Path(run_dir) / name)
    atomic_write_json(out, report)
    click.echo(text)
    click.echo(f"report: {out}")


# ---- export ---------------------------------------------------------------------------------------
@cli.command("export")
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True, help="bundle directory (replaced atomically)")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite", "all"]), default="onnx", show_default=True)
@click.option("--quantize", type=click.Choice(["none", "int8", "dynamic"]), default="none", show_default=True,
              help="int8: static int8 calibrated on the training data; dynamic: int8 weights, activations "
                   "quantised at run time (no calibration)")
@click.option("--candidates", "-k", type=click.IntRange(min=1), default=16, show_default=True,
              help="default candidate count K (TFLite files are exported for this K)")
@click.option("--calib-samples", type=click.IntRange(min=8), default=256, show_default=True,
              help="calibration rows (training-window condition + standard-normal noise) for --quantize int8")
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="training dataset, when it is no longer where the run recorded it (int8 calibration, parity)")
@click.option("--activations", type=click.Choice(["u8", "s8"]), default="u8", show_default=True,
              help="ONNX int8 activation type (u8 ran ~3x faster than s8 on x86 here; measure per board)")
@click.option("--keep-float", default="auto", show_default=True,
              help="int8 layers kept in float: auto (fall back to the conditioning layers, then the worst "
                   "qdq_loss_debug layers, only when over budget), none, conditioning, or a comma list of "
                   "layer names such as net.net.0")
@click.option("--int8-ops", type=click.Choice(["weighted", "all"]), default="weighted", show_default=True,
              help="quantise only the weighted ops (Gemm/Conv: more accurate, same speed) or all supported ops")
@click.option("--budget", "budget_first_action_frac", type=click.FloatRange(min=0.0, min_open=True), default=0.02,
              show_default=True, help="int8 error budget: first-action rms error as a fraction of the action range")
@click.option("--closed-loop-episodes", type=click.IntRange(min=0), default=10, show_default=True,
              help="PointMaze episodes for the closed-loop parity check (0: skip; pointmaze runs with the sim extra)")
@click.option("--save-calibration", is_flag=True, help="also write the calibration inputs as calibration.npz")
@click.option("--int8-only", is_flag=True, help="leave the fp32 files out of the bundle (smaller; still checked)")
@click.option("--rate", "control_rate_hz", type=click.FloatRange(min=1.0), default=50.0, show_default=True,
              help="control rate the bundle is meant for (Hz)")
@click.option("--force", is_flag=True, help="write the bundle even if int8 exceeds the error budget")
@click.option("--sample-steps", type=click.IntRange(min=1), default=None,
              help="diffusion runs: the bundle's default denoising steps T (default: the run's "
                   "diffusion.sample_steps); ignored for drift runs")
@click.option("--verbose", "-v", is_flag=True,
              help="show the exporting libraries' own output (torch, litert, absl warnings) here instead of "
                   "writing it to OUT/export.log")
@friendly_errors
def export_cmd(run_dir, out, fmt, quantize, candidates, calib_samples, data_path, activations, keep_float, int8_ops,
               budget_first_action_frac, closed_loop_episodes, save_calibration, int8_only, control_rate_hz,
               force, sample_steps, verbose) -> None:
    """Export a trained run to a parity-checked bundle (ONNX / TFLite, fp32 / int8)."""
    from export.pipeline import ExportOptions, export_bundle

    formats = ["onnx", "tflite"] if fmt == "all" else [fmt]
    opts = ExportOptions(formats=formats, quantize=quantize, candidates=candidates, calib_samples=calib_samples,
                         control_rate_hz=control_rate_hz, force=force, data=data_path, activations=activations,
                         keep_float=keep_float, int8_ops=int8_ops, budget_first_action_frac=budget_first_action_frac,
                         closed_loop_episodes=closed_loop_episodes, save_calibration=save_calibration,
                         int8_only=int8_only, sample_steps=sample_steps)
    export_bundle(run_dir, out, opts, log=lambda m: click.echo(m, err=True), verbose=verbose)


# ---- bench ----------------------------------------------------------------------------------------
def _int_list(ctx, param, value: str) -> list[int]:
    try:
        out = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,16,64, got {value!r}") from None
    if not out or min(out) < 1:
        raise click.BadParameter("every candidate count must be at least 1")
    return out


def _backend_list(ctx, param, value: str) -> list[str]:
    out = [x.strip() for x in value.split(",") if x.strip()]
    bad = [x for x in out if x not in ("onnx", "tflite", "torch")]
    if bad or not out:
        raise click.BadParameter(f"unknown backend(s) {bad}: use onnx, tflite, torch (comma-separated for several)")
    return out


@cli.command("bench")
@click.argument("bundle", type=click.Path())
@click.option("--backend", default="onnx", show_default=True, callback=_backend_list,
              help="onnx | tflite | torch (the source checkpoint, for reference); comma-separated times several "
                   "in the same run, e.g. onnx,torch")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True, help="model threads (0: runtime default)")
@click.option("--candidates", "-k", default="1,16,64", show_default=True, callback=_int_list,
              help="candidate counts K, comma-separated")
@click.option("--runs", type=click.IntRange(min=1), default=2000, show_default=True, help="timed plans per configuration")
@click.option("--warmup", type=click.IntRange(min=0), default=100, show_default=True, help="untimed plans first")
@click.option("--rate", "rate_hz", type=click.FloatRange(min=0.1), default=None,
              help="control rate for deadline misses (Hz; default: the bundle's control_rate_hz)")
@click.option("--compare", type=click.Path(), default=None, help="another bundle timed in the same run (latency ratio)")
@click.option("--precision", type=click.Choice(["fp32", "int8", "int8-dynamic", "all"]), default="all",
              show_default=True, help="which of the bundle's precisions to time (all: fp32 and int8 side by side)")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON report (a markdown table is written next to it as .md)")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="latency histogram PNG (needs the plot extra)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="no progress line")
@friendly_errors
def bench_cmd(bundle, backend, threads, candidates, runs, warmup, rate_hz, compare, precision, out, plot, seed,
              quiet) -> None:
    """Time on-device planning of a bundle: p50/p95/p99/max, throughput, deadline misses, int8 vs fp32."""
    import shlex

    from .fileio import atomic_write_json, atomic_write_text
    from .runtime.bench import BenchOptions, run_bench
    from .runtime.bench_report import format_markdown, plot_histograms

    if plot:
        from .errors import require

        require("matplotlib", "plot", "The latency histogram (--plot)")
    load = None
    if "torch" in backend:  # the source checkpoint: the training side's planner (the runtime imports no torch)
        from .torch_planner import load_any_planner as load
    opts = BenchOptions(backends=backend, precision=precision, candidates=candidates, runs=runs, warmup=warmup,
                        rate_hz=rate_hz, threads=threads, compare=compare, seed=seed, progress=not quiet,
                        load_planner=load)
    report, subjects = run_bench(bundle, opts)
    report["command"] = shlex.join(["kdp-edge", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else None
    text = format_markdown(report)
    click.echo(text)
    if plot:
        plot_histograms(plot, subjects, 1e3 / report["options"]["rate_hz"])
        report["plot"] = str(plot)
        click.echo(f"plot: {plot}")
    if out:
        atomic_write_json(out, report)
        md = Path(out).with_suffix(".md")
        cmd = f"Command: `{report['command']}`\n\n" if report["command"] else ""
        atomic_write_text(md, cmd + text + "\n")
        click.echo(f"report: {out} (table: {md})")


# ---- pareto (issue #29): latency of a K / T grid against control-rate budgets, scores optional --------
def _float_list(ctx, param, value: str | None) -> list[float]:
    try:
        out = [float(x) for x in (value or "").split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 50,100,200, got {value!r}") from None
    if any(not x > 0 for x in out):
        raise click.BadParameter("every value must be positive")
    return out


@cli.command("pareto")
@click.argument("bundles", nargs=-1, required=True, type=click.Path())
@click.option("--candidates", "-k", default="1,2,4,8,16,32,64", show_default=True, callback=_int_list,
              help="K grid of generator (KDP) bundles")
@click.option("--sample-steps", "-t", default="2,5,10,20", show_default=True, callback=_int_list,
              help="T grid (denoiser passes per plan) of diffusion bundles")
@click.option("--diffusion-candidates", default="1,4,16", show_default=True, callback=_int_list,
              help="K grid of diffusion bundles")
@click.option("--backend", default="onnx,tflite", show_default=True, help="onnx and/or tflite, comma-separated")
@click.option("--precision", type=click.Choice(["fp32", "int8", "all"]), default="all", show_default=True)
@click.option("--rate", "rates", default=None, callback=_float_list,
              help="control rates (Hz) whose periods are the budgets [default: the bundle's rate, 50, 100, 200]")
@click.option("--budget-ms", default="1,2,5", show_default=True, callback=_float_list, help="more budgets (ms)")
@click.option("--scores", type=click.Path(dir_okay=False), default=None,
              help="JSON written by bench/pareto.py: plot score against latency (a robot has no simulator)")
@click.option("--runs", type=click.IntRange(min=1), default=300, show_default=True, help="timed plans per configuration")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="JSON report (.md written beside it)")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="PNG: latency (or score vs latency) per config")
@click.option("--quiet", is_flag=True, help="no progress line")
@friendly_errors
def pareto_cmd(bundles, candidates, sample_steps, diffusion_candidates, backend, precision, rates, budget_ms, scores,
               runs, warmup, threads, seed, out, plot, quiet) -> None:
    """Time every K (and T x K for diffusion bundles) of BUNDLES interleaved, one thread; mark which
    configurations fit each control period; with --scores, the best configuration per budget."""
    from .bundle import load_bundle
    from .fileio import atomic_write_json, atomic_write_text, read_json
    from .provenance import provenance, provenance_line
    from .runtime import pareto as P

    backends = [x.strip() for x in backend.split(",") if x.strip()]
    if not backends or set(backends) - {"onnx", "tflite"}:
        raise click.BadParameter(f"{backend!r}: use onnx, tflite (comma-separated)", param_hint="--backend")
    if plot:
        from .errors import require

        require("matplotlib", "plot", "The pareto plot (--plot)")
    env = P.bundle_env(list(bundles))
    if not rates:
        rates = sorted({load_bundle(bundles[0], verify=False).manifest.control_rate_hz, 50.0, 100.0, 200.0})
    budget_list = P.budgets(budget_ms, rates)
    score_report = None
    if scores:
        try:
            score_report = read_json(scores)
        except (OSError, ValueError) as exc:
            raise KDPError(f"--scores {scores}: cannot read it ({exc}); pass the JSON bench/pareto.py wrote") from exc
        if not isinstance(score_report, dict):
            raise KDPError(f"--scores {scores}: not a bench/pareto.py report")
    opts = P.GridOptions(kdp_k=candidates, diffusion_t=sample_steps, diffusion_k=diffusion_candidates, backends=backends,
                         precision=precision, runs=runs, warmup=warmup, threads=threads, seed=seed, progress=not quiet)
    report = P.time_grid(list(bundles), opts)
    report["env"] = env
    if score_report is not None:
        report["notes"] += P.attach_scores(report["rows"], score_report, env)
    report["budgets"] = budget_list
    report["provenance"] = provenance()
    text = P.format_report(report, budget_list)
    click.echo(text)
    if plot:
        P.plot_frontier(plot, report["rows"], budget_list, title=f"{env or 'bundle'}: {report['host']['model']}, "
                        f"{threads} thread(s)", score_name=(score_report or {}).get("score_metric", "score"))
        report["plot"] = str(plot)
        click.echo(f"plot: {plot}")
    if out:
        atomic_write_json(out, report)
        md = Path(out).with_suffix(".md")
        atomic_write_text(md, provenance_line(report["provenance"]) + "\n\n" + text + "\n")
        click.echo(f"report: {out} (table: {md})")


# ---- demo -----------------------------------------------------------------------------------------
@cli.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="out/demo", show_default=True)
@click.option("--quick", is_flag=True, help="tiny sizes (under 3 minutes; what CI runs): a smoke test, not results")
@click.option("--fresh", is_flag=True, help="delete --out first (otherwise finished stages are reused)")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@friendly_errors
def demo_cmd(out, quick, fresh, threads) -> None:
    """The whole product end to end: data, train, eval, int8 export, latency, serial closed loop, report."""
    from .demo import DemoConfig, run_demo

    cfg = DemoConfig.quick() if quick else DemoConfig()
    cfg.threads = threads
    run_demo(out, cfg, fresh=fresh, log=lambda m: click.echo(m, err=True))


def main(argv=None) -> None:
    from .app.bridge_commands import register

    register(cli)
    cli.main(args=argv, prog_name="kdp-edge")


if __name__ == "__main__":
    main()


__all__ = ["cli", "main"]
