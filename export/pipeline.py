"""``kdp-edge export``: run directory -> parity-checked bundle directory (see kdp_edge.bundle).

Stages: load the EMA generator; write each requested model file into a temporary directory next to
the output; compare each with the torch model (export.parity); write ``bundle.json`` last; then
move the finished bundle into place, so an interrupted export never leaves a half bundle behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdp_edge.bundle import BundleManifest, ModelFile, sha256_file, write_manifest
from kdp_edge.errors import KDPError

from .parity import ParityReport, compare, parity_inputs


class ExportError(KDPError):
    pass


@dataclass
class ExportOptions:
    formats: list[str] = field(default_factory=lambda: ["onnx"])  # onnx | tflite
    quantize: str = "none"  # none | int8 | dynamic
    candidates: int = 16  # default K (and the K of TFLite files)
    calib_samples: int = 256  # calibration conditions for int8
    parity_conditions: int = 64
    budget_first_action_frac: float = 0.02  # int8 gate: first-action rms error / action range
    force: bool = False  # write a bundle that fails the gate anyway
    control_rate_hz: float = 50.0
    protocol: str = "own-actions"
    seed: int = 0


def manifest_for_run(run, model, opts: ExportOptions, action_low=None, action_high=None) -> BundleManifest:
    from kdp_edge.planning import ScoringSpec

    info = run.info
    return BundleManifest(
        obs_dim=info.obs_dim, act_dim=info.act_dim, goal_dim=info.goal_dim, horizon=info.horizon,
        method=info.method, env=info.env,
        action_low=[float(x) for x in action_low] if action_low is not None else [],
        action_high=[float(x) for x in action_high] if action_high is not None else [],
        key=dict(run.cfg.drift.key.__dict__), scoring=ScoringSpec.for_env(info.env).to_dict(),
        default_candidates=opts.candidates, control_rate_hz=opts.control_rate_hz, protocol=opts.protocol,
        step_dt_s=0.01 if info.env.startswith("pointmaze") else 0.0,  # PointMaze data: one mujoco step = 10 ms
        inputs=["obs", "goal", "noise"] if info.goal_dim else ["obs", "noise"],
        source_checkpoint={"run_dir": str(run.run_dir), "sha256": sha256_file(run.run_dir / "checkpoint.pt"),
                           "step": info.step, "weights": "EMA"},
    )


def training_data(run):
    """The run's training trajectories when the data file is still on this machine, else None."""
    from kdp_edge.data.readers import load_trajectories

    path = run.cfg.data.path or run.info.data
    if path and Path(path).exists():
        return load_trajectories(path, goal=run.cfg.data.goal)
    return None


def action_limits(run, traj) -> tuple[np.ndarray, np.ndarray]:
    """Action limits for the runtime: the training data's min/max when the data file is still
    there, else PointMaze's [-1, 1] for pointmaze runs, else mean +- 4 std of the window stats."""
    if traj is not None:
        return traj.actions.min(0), traj.actions.max(0)
    if run.info.env.startswith("pointmaze"):
        return -np.ones(run.info.act_dim), np.ones(run.info.act_dim)
    n = run.normalizer
    mean, std = n.win_mean[n.obs_dim:], n.win_std[n.obs_dim:]
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
    free = None
    if run.info.env.startswith("pointmaze-"):
        from kdp_edge.mazes import Maze

        maze = Maze.named(run.info.env.removeprefix("pointmaze-"))
        free = [maze.cell_to_xy(c) for c in maze.free_cells()]
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


def torch_reference(model):
    import torch

    def _gen(feeds):
        with torch.no_grad():
            goal = feeds.get("goal", feeds["obs"][:, :0])
            return model(torch.from_numpy(feeds["obs"]), torch.from_numpy(goal), torch.from_numpy(feeds["noise"])).numpy()

    return _gen


def onnx_runner(path: Path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return lambda feeds: sess.run(None, {n: feeds[n] for n in names})[0]


def export_bundle(run_dir: str | Path, out: str | Path, opts: ExportOptions, log=print) -> Path:
    """Export ``run_dir`` into the bundle directory ``out`` (replaced atomically if it exists)."""
    from kdp_edge.checkpoint import load_run
    from kdp_edge.planning import CandidateScorer, ScoringSpec

    from .onnx_export import export_onnx

    bad = sorted(set(opts.formats) - {"onnx", "tflite"})
    if bad:
        raise ExportError(f"unknown format(s) {bad}: use onnx, tflite or all")
    if opts.quantize not in ("none", "int8", "dynamic"):
        raise ExportError(f"unknown --quantize {opts.quantize!r}: use none, int8 or dynamic")
    run = load_run(run_dir)
    model = run.build_model(ema=True)
    traj = training_data(run)
    if traj is None:
        log(f"export: training data {run.cfg.data.path or run.info.data} not found here; parity uses synthetic "
            "conditions (int8 calibration needs the data)")
    low, high = action_limits(run, traj)
    manifest = manifest_for_run(run, model, opts, low, high)
    scorer = CandidateScorer(ScoringSpec.from_dict(manifest.scoring))
    feeds = parity_inputs(manifest, parity_conditions(run, traj, opts.parity_conditions, opts.seed), opts.candidates)
    reference = torch_reference(model)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(work, 0o755)
    try:
        if "onnx" in opts.formats:
            log("export: ONNX fp32 (dynamic K) ...")
            f = ModelFile("model_fp32.onnx", "onnx", "fp32")
            export_onnx(model, work / f.path)
            rep = compare(reference, onnx_runner(work / f.path), feeds, manifest, scorer)
            add_model(manifest, f, rep, log)
            if opts.quantize != "none":
                raise ExportError("int8 export is not implemented yet in this build")
        if "tflite" in opts.formats:
            raise ExportError("TFLite export is not implemented yet in this build")
        write_manifest(work, manifest)
        replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(f"bundle: {out}")
    return out


def add_model(manifest: BundleManifest, f: ModelFile, rep: ParityReport, log=print) -> None:
    manifest.files.append(f)
    manifest.parity[f.path] = rep.to_dict()
    log(f"  {f.path}: max-abs {rep.max_abs:.2e}, first-action rms {100 * rep.first_action_rms_frac:.3f}% of range, "
        f"ranking agreement {100 * rep.ranking_agreement:.0f}%")


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished bundle ``src`` onto ``dst``; an existing ``dst`` is swapped out, then removed."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
