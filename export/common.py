"""What every exporter shares (the generator pipeline in pipeline.py and the diffusion baseline's
denoiser exporter in denoiser.py): options and their validation, the manifest of a run, where its
training data is, action limits, parity conditions and references, and finishing a bundle
atomically. Neither exporter imports the other.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdp_edge.bundle import BundleManifest, ModelFile, sha256_file, write_manifest
from kdp_edge.errors import KDPError

from .parity import ParityReport

Generate = Callable[[dict[str, np.ndarray]], np.ndarray]
FP32_TOLERANCE_FRAC = 1e-3  # fp32 exports must match torch to this fraction of the action range
CALIBRATION_FILE = "calibration.npz"


class ExportError(KDPError):
    pass


@dataclass
class ExportOptions:
    """Everything ``kdp-edge export`` can be told (CLI flags in brackets)."""

    formats: list[str] = field(default_factory=lambda: ["onnx"])  # onnx | tflite  [--format onnx|tflite|all]
    quantize: str = "none"  # none | int8 (static, calibrated) | dynamic (int8 weights only)  [--quantize]
    candidates: int = 16  # default K, the K of TFLite files and of parity checks  [--candidates]
    calib_samples: int = 256  # calibration rows (condition + noise) for static int8  [--calib-samples]
    parity_conditions: int = 64  # conditions x K candidates compared with torch
    budget_first_action_frac: float = 0.02  # gate: int8 first-action rms error / action range  [--budget]
    force: bool = False  # write a bundle that fails the gate anyway  [--force]
    control_rate_hz: float = 50.0  # [--rate]
    protocol: str = "own-actions"
    seed: int = 0
    activations: str = "u8"  # ONNX static int8 activation type: u8 | s8  [--activations]
    int8_ops: str = "weighted"  # weighted (Gemm/MatMul/Conv, FULLY_CONNECTED...) | all  [--int8-ops]
    keep_float: str = "auto"  # auto | none | conditioning | comma list of layers  [--keep-float]
    max_float_layers: int = 3  # auto: at most this many layers beyond the conditioning ones
    data: str | None = None  # training data path when not where the run recorded it  [--data]
    closed_loop_episodes: int = 10  # 0: skip the closed-loop check  [--closed-loop-episodes]
    save_calibration: bool = False  # write calibration.npz into the bundle  [--save-calibration]
    int8_only: bool = False  # leave the fp32 files out of the bundle (still exported for parity)  [--int8-only]
    sample_steps: int | None = None  # diffusion runs: the bundle's default T (None: the run's)  [--sample-steps]

    @property
    def precision(self) -> str:
        return {"none": "fp32", "int8": "int8", "dynamic": "int8-dynamic"}[self.quantize]


def validate_options(opts: ExportOptions) -> None:
    bad = sorted(set(opts.formats) - {"onnx", "tflite"})
    if bad or not opts.formats:
        raise ExportError(f"unknown format(s) {bad or opts.formats}: use onnx, tflite or all")
    if opts.quantize not in ("none", "int8", "dynamic"):
        raise ExportError(f"unknown --quantize {opts.quantize!r}: use none, int8 or dynamic")
    if opts.activations not in ("u8", "s8"):
        raise ExportError(f"unknown --activations {opts.activations!r}: use u8 or s8")
    if opts.int8_ops not in ("weighted", "all"):
        raise ExportError(f"unknown --int8-ops {opts.int8_ops!r}: use weighted or all")
    if opts.int8_only and opts.quantize == "none":
        raise ExportError("--int8-only needs --quantize int8 or dynamic (otherwise the bundle would be empty)")
    if opts.candidates < 1 or opts.parity_conditions < 1:
        raise ExportError("--candidates and the number of parity conditions must be at least 1")
    if opts.quantize == "int8" and opts.calib_samples < opts.candidates:
        raise ExportError(f"--calib-samples {opts.calib_samples} is smaller than one batch of K={opts.candidates}")


def manifest_for_run(run, model, opts: ExportOptions, action_low=None, action_high=None) -> BundleManifest:
    """The run's bundle manifest (no model files yet); an ExportError when its windows cannot be
    planned with the scoring and protocol (action-only windows: no position scoring, no tracker)."""
    from kdp_edge.planning import ScoringSpec, window_problems

    info = run.info
    scoring = ScoringSpec.for_run(info)
    problems = window_problems(info.layout, scoring, opts.protocol)
    if problems:
        raise ExportError(f"{run.run_dir}: windows of {info.layout.describe()}: " + "; ".join(problems))
    return BundleManifest(
        obs_dim=info.obs_dim, act_dim=info.act_dim, goal_dim=info.goal_dim, horizon=info.horizon,
        method=info.method, env=info.env, obs_history=info.obs_history, window=info.window,
        action_low=[float(x) for x in action_low] if action_low is not None else [],
        action_high=[float(x) for x in action_high] if action_high is not None else [],
        key=dict(run.cfg.drift.key.__dict__), scoring=scoring.to_dict(),
        default_candidates=opts.candidates, control_rate_hz=opts.control_rate_hz, protocol=opts.protocol,
        step_dt_s=info.step_dt_s or step_dt_for_env(info.env), obs_names=list(info.obs_names),
        act_names=list(info.act_names),
        inputs=["obs", "goal", "noise"] if info.goal_dim else ["obs", "noise"],
        source_checkpoint={"run_dir": str(run.run_dir), "sha256": sha256_file(run.run_dir / "checkpoint.pt"),
                           "step": info.step, "weights": "EMA"},
    )


def step_dt_for_env(env: str) -> float:
    """Seconds between window steps (the data's rate): PointMaze data steps are one 10 ms mujoco
    step, PushT's 0.1 s; 0 (unknown) makes the runtime assume one control period per step."""
    from kdp_edge.envs import env_for

    return env_for(env).step_dt_s


def check_out_dir(out: Path, run_dir: Path) -> None:
    """Refuse an ``--out`` that is not (or not yet) a bundle: export replaces it, so it must never be
    the run, a folder holding the run, or a non-empty folder of something else."""
    out_r, run_r = out.resolve(), Path(run_dir).resolve()
    if out_r == run_r or out_r in run_r.parents:
        raise ExportError(f"--out {out} is (or contains) the run directory {run_dir}; the export would replace it. "
                          "Choose a separate bundle directory, e.g. --out bundles/NAME")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "bundle.json").exists())):
        raise ExportError(f"--out {out} exists and is not a kdp-edge bundle (no bundle.json); the export replaces "
                          "its target, so it refuses to touch this one. Choose a new or empty directory")


def data_path(run, override: str | None = None) -> str:
    return str(override or run.cfg.data.path or run.info.data or "")


def training_data(run, override: str | None = None):
    """The run's training trajectories when the data file is on this machine (``override`` first),
    else None."""
    from kdp_edge.data.readers import load_trajectories

    path = data_path(run, override)
    if override and not Path(override).exists():
        raise ExportError(f"--data {override}: no such file or directory")
    if path and Path(path).exists():
        return load_trajectories(path, goal=run.cfg.data.goal, obs_history=run.cfg.data.obs_history)
    return None


def action_limits(run, traj) -> tuple[np.ndarray, np.ndarray]:
    """Action limits for the runtime: the training data's min/max when the data file is still
    there, else PointMaze's [-1, 1] for pointmaze runs, else mean +- 4 std of the window stats."""
    if traj is not None:
        return traj.actions.min(0), traj.actions.max(0)
    from kdp_edge.envs import env_for

    known = env_for(run.info.env).fallback_action_limits(run.info.act_dim)
    if known is not None:
        return known
    n = run.normalizer
    lo, hi = n.layout.action_slice
    mean, std = n.win_mean[lo:hi], n.win_std[lo:hi]
    return mean - 4 * std, mean + 4 * std


def parity_conditions(run, traj, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Conditions for parity checks: random training steps (obs, goal) when the data is here; else
    mean + std * N(0, 1) from the normaliser (PointMaze: positions in free cells, so that maze
    scoring is defined)."""
    rng = np.random.default_rng(seed)
    if traj is not None:
        idx = rng.integers(len(traj.observations), size=n)
        return [(traj.observations[i].astype(np.float32),
                 traj.goals[i].astype(np.float32) if traj.goals is not None else None) for i in idx]
    nz = run.normalizer
    from kdp_edge.envs import env_for

    free = env_for(run.info.env).free_positions(run.info.env)
    out = []
    for _ in range(n):
        obs = (nz.obs_mean + nz.obs_std * rng.standard_normal(nz.obs_dim)).astype(np.float32)
        goal = (nz.goal_mean + nz.goal_std * rng.standard_normal(nz.goal_dim)).astype(np.float32) if nz.goal_dim else None
        if free is not None:
            obs[:2] = free[rng.integers(len(free))] + rng.uniform(-0.3, 0.3, 2)
            if goal is not None:
                goal[:2] = free[rng.integers(len(free))]
        out.append((obs, goal))
    return out


def torch_reference(model) -> Generate:
    """The torch model behind the runtime's backend contract (feeds -> windows [K, H, D])."""
    from kdp_edge.torch_planner import TorchBackend

    return TorchBackend(model, threads=0)  # 0: leave torch's thread count as the export set it


def onnx_runner(path: Path, threads: int = 1) -> Generate:
    """The device runtime's onnxruntime backend, so parity is measured through the code that plans."""
    from kdp_edge.runtime.planner import OnnxBackend

    return OnnxBackend(path, threads)


def add_model(manifest: BundleManifest, f: ModelFile, rep: ParityReport, log=print) -> None:
    """Append ``f`` with its parity report (kept for callers outside the pipeline)."""
    manifest.files.append(f)
    manifest.parity[f.path] = rep.to_dict()
    log(f"  {f.path}: max-abs {rep.max_abs:.2e}, first-action rms {100 * rep.first_action_rms_frac:.3f}% of range, "
        f"ranking agreement {100 * rep.ranking_agreement:.0f}%")


def finish_bundle(work: Path, manifest: BundleManifest, out: Path) -> None:
    """Plain file modes, ``bundle.json`` last (hashes every file), then swap ``work`` onto ``out``."""
    for f in work.iterdir():  # quantisers and mkstemp leave odd modes (0600, 0755): plain files
        os.chmod(f, 0o644)
    write_manifest(work, manifest)
    os.chmod(work / "bundle.json", 0o644)
    replace_dir(work, out)


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished bundle ``src`` onto ``dst``. An existing bundle at ``dst`` is renamed aside
    first, restored if the move fails, and removed only after the new bundle is in place."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
