"""The device runtime's :class:`~kdp_edge.runtime.planner.Planner` with a torch model behind it
(training side: imports torch). Evaluation, export parity and ``kdp-edge bench --backend torch``
plan through this, so every closed-loop score comes from the planning code the robot runs: the same
input checks, noise layout, candidate scoring, action selection and clipping; only the backend
differs (torch here, onnxruntime / LiteRT on the device).

    planner = run_planner(load_run("runs/umaze"), candidates=16, scoring=ScoringSpec.for_env(env))
    batch = planner.plan_batch(obs [E, O], goal [E, G])     # E environments, K candidates each

A diffusion run's torch model runs its whole sampling loop inside one backend call (T denoiser
passes), so the generator planner serves both methods here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import BundleError, BundleManifest, ModelFile, load_bundle
from .errors import require
from .planning import ScoringSpec
from .runtime.planner import Planner


class TorchBackend:
    """A torch generator behind the runtime's backend contract: feeds (obs [B, O], goal [B, G],
    noise [B, H, D], float32 raw units) -> raw windows [B, H, D]."""

    def __init__(self, model, threads: int = 0):
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.torch, self.model = torch, model.eval()

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        t = self.torch
        obs = np.ascontiguousarray(feeds["obs"], np.float32)
        goal = np.ascontiguousarray(feeds.get("goal", obs[:, :0]), np.float32)
        noise = np.ascontiguousarray(feeds["noise"], np.float32)
        with t.inference_mode():
            return self.model(t.from_numpy(obs), t.from_numpy(goal), t.from_numpy(noise)).numpy()


def plan_manifest(info, scoring: ScoringSpec, candidates: int, protocol: str = "own-actions", lookahead: int = 8,
                  action_low=None, action_high=None) -> BundleManifest:
    """The planning part of a bundle manifest for a trained run (``info``: its RunInfo): dims, window
    content, horizon, method, env, observation history, scoring, K, protocol and (optional) action limits.
    No model files: the caller supplies the backend."""
    return BundleManifest(
        obs_dim=info.obs_dim, act_dim=info.act_dim, goal_dim=info.goal_dim, horizon=info.horizon,
        method=info.method, env=info.env, obs_history=info.obs_history, window=info.window, scoring=scoring.to_dict(),
        default_candidates=candidates, protocol=protocol, lookahead=lookahead,
        action_low=[float(x) for x in action_low] if action_low is not None else [],
        action_high=[float(x) for x in action_high] if action_high is not None else [],
        inputs=["obs", "goal", "noise"] if info.goal_dim else ["obs", "noise"])


def run_planner(run, candidates: int, scoring: ScoringSpec | None = None, seed: int = 0, protocol: str = "own-actions",
                lookahead: int = 8, threads: int = 0, model=None) -> Planner:
    """The planner of a loaded run (:class:`~kdp_edge.checkpoint.LoadedRun`) on its EMA torch model
    (or ``model``, e.g. one whose diffusion sampler was reconfigured). ``scoring`` defaults to the
    run's (:meth:`ScoringSpec.for_run`). No action limits: the simulators clip to their own."""
    model = model if model is not None else run.build_model(ema=True)
    m = plan_manifest(run.info, scoring or ScoringSpec.for_run(run.info), candidates, protocol, lookahead)
    ckpt = Path(run.run_dir) / "checkpoint.pt"
    f = ModelFile(path="checkpoint.pt", format="torch", precision="fp32",
                  bytes=ckpt.stat().st_size if ckpt.exists() else 0, role="generator", notes="EMA weights")
    return Planner.over(m, TorchBackend(model, threads), candidates, seed, run.run_dir, f)


def torch_planner(bundle_dir: str | Path, k: int, threads: int = 1, seed: int = 0, warmup: int = 20) -> Planner:
    """A :class:`Planner` for ``bundle_dir`` whose model is the bundle's source checkpoint in torch (EMA
    weights): the bundle's manifest (scoring, protocol, limits), torch as the backend.

    Needs torch (``kdp-edge[train]``) and the run directory named in ``bundle.json``
    ``source_checkpoint.run_dir`` (as written at export, or relative to the bundle's parent).
    """
    require("torch", "train", "--backend torch (timing the source checkpoint)")
    from .checkpoint import load_run

    bundle = load_bundle(bundle_dir)
    src = bundle.manifest.source_checkpoint.get("run_dir", "")
    cands = [Path(src), bundle.root.parent / src, bundle.root / src] if src else []
    run_dir = next((p for p in cands if (p / "checkpoint.pt").is_file()), None)
    if run_dir is None:
        raise BundleError(f"{bundle.root}: --backend torch needs the source run directory "
                          f"{src or '(not recorded)'} (bundle.json source_checkpoint.run_dir), which is not here; "
                          "run the benchmark where the bundle was exported, or drop torch from --backend")
    model = load_run(run_dir).build_model(ema=True)
    ckpt = run_dir / "checkpoint.pt"
    f = ModelFile(path=str(ckpt), format="torch", precision="fp32", bytes=ckpt.stat().st_size,
                  notes="source checkpoint (optimiser state included in the size)")
    d = bundle.manifest.diffusion
    if d and hasattr(model, "set_sampler"):  # diffusion bundle: torch runs the bundle's sampler and T
        model.set_sampler(d.get("sampler"), d.get("sample_steps"))
        f.role = "denoiser"
    planner = Planner(bundle, f, TorchBackend(model, threads), k, seed)
    planner.passes = d.get("sample_steps", 1) if d else 1
    planner.warm_up(warmup)
    return planner


def load_any_planner(bundle_dir: str | Path, backend: str, precision: str | None, k: int, threads: int = 1,
                     seed: int = 0):
    """:func:`kdp_edge.runtime.bench.load_planner` plus ``backend='torch'`` (the source checkpoint)."""
    from .runtime.bench import load_planner

    if backend == "torch":
        return torch_planner(bundle_dir, k, threads, seed)
    return load_planner(bundle_dir, backend, precision, k, threads, seed)


__all__ = ["TorchBackend", "load_any_planner", "plan_manifest", "run_planner", "torch_planner"]
