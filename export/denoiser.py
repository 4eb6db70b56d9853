"""``kdp-edge export`` for diffusion runs: a bundle whose graph is ONE denoiser pass (issues #4/#5).

The diffusion baseline needs T network evaluations per plan, so its bundle cannot be a single
obs/goal/noise -> window graph like a KDP bundle: the graph is
:meth:`kdp_edge.diffusion.DiffusionGenerator.denoise` and the device runtime
(:class:`kdp_edge.runtime.diffusion.DiffusionPlanner`) runs the sampler around it, T times per plan.

Graph (ONNX fp32, opset 18, dynamic candidate axis K; model file role ``denoiser``)::

    inputs   x_t   float32 [K, H, D]   noisy window in NORMALISED units (z-scores: (raw - win_mean) / win_std)
             t     int64   [K]         training timestep, 0 .. timesteps-1
             obs   float32 [K, O]      raw observation (normalised inside the graph)
             goal  float32 [K, G]      raw goal (absent when goal_dim == 0)
    output   x0    float32 [K, H, D]   clean-window estimate, NORMALISED units: an eps prediction is
                                       converted inside the graph, then clipped to +-clip_sample and
                                       its first state in-painted

Normalised units for x_t / x0 because the sampler's arithmetic (and the clipping) lives there;
``bundle.json``'s ``diffusion`` dict carries what the sampler needs outside the graph::

    units "normalized", timesteps, schedule, alphas_cumprod [timesteps] (float64 as JSON numbers),
    prediction (sample | epsilon; informative, the graph returns x0), sampler "ddim" (the default,
    deterministic), sample_steps (default T, ``--sample-steps``), spacing "trailing",
    clip_sample (applied in the graph), overwrite_first_state (false for action-only windows: no state
    to in-paint), win_mean / win_std [D],
    obs_mean / obs_std [O] (the in-painted first state is computed exactly as torch does)

Parity (the gate, like generator bundles' fp32 gate): the runtime's numpy sampler on the exported
graph against ``DiffusionGenerator.forward`` (DDIM) on the same conditions and initial noise x_T,
at T = 5, 20 and the bundle's T; one denoiser pass alone is compared too. ``manifest.parity[file]``
holds the report at the bundle's T plus ``by_sample_steps`` and ``denoiser_pass``. fp32 only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from kdp_edge.bundle import ModelFile

from .common import (
    FP32_TOLERANCE_FRAC,
    ExportError,
    ExportOptions,
    action_limits,
    data_path,
    finish_bundle,
    manifest_for_run,
    onnx_runner,
    parity_conditions,
    torch_reference,
    training_data,
)
from .onnx_export import DEFAULT_OPSET
from .parity import compare, parity_inputs

PARITY_STEPS = (5, 20)  # DDIM steps the sampler parity is always checked at (plus the bundle's T)
MODEL_FILE = "denoiser_fp32.onnx"


def _module(model):
    """``model.denoise`` as a module with positional inputs (x_t, t, obs[, goal])."""
    import torch

    class Denoiser(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x_t, t, obs, goal):
            return self.inner.denoise(x_t, t, obs, goal)

    class DenoiserNoGoal(Denoiser):
        def forward(self, x_t, t, obs):
            return self.inner.denoise(x_t, t, obs, obs[:, :0])

    return (Denoiser if model.goal_dim else DenoiserNoGoal)(model.eval()).eval()


def denoiser_inputs(model, k: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible feeds for one pass: x_t ~ N(0, 1), random timesteps, obs/goal around the data mean."""
    rng = np.random.default_rng(seed)
    nz = {n: getattr(model, n).numpy() for n in ("obs_mean", "obs_std", "goal_mean", "goal_std")}
    feeds = {"x_t": rng.standard_normal((k, model.horizon, model.window_dim), dtype=np.float32),
             "t": rng.integers(0, model.dcfg.timesteps, k).astype(np.int64),
             "obs": (nz["obs_mean"] + nz["obs_std"] * rng.standard_normal((k, model.obs_dim))).astype(np.float32)}
    if model.goal_dim:
        feeds["goal"] = (nz["goal_mean"] + nz["goal_std"] * rng.standard_normal((k, model.goal_dim))).astype(np.float32)
    return feeds


def export_denoiser_onnx(model, path: str | Path, opset: int = DEFAULT_OPSET, check: bool = True) -> Path:
    """Write ``model.denoise`` (a DiffusionGenerator) as ONNX with a dynamic K axis."""
    import torch
    from torch.export import Dim

    from kdp_edge.errors import require

    require("onnx", "train", "ONNX export")
    require("onnxscript", "train", "ONNX export (torch's dynamo exporter)")
    path = Path(path)
    names = ["x_t", "t", "obs", "goal"] if model.goal_dim else ["x_t", "t", "obs"]
    feeds = denoiser_inputs(model)
    args = tuple(torch.from_numpy(feeds[n]) for n in names)
    k = Dim("K", min=1, max=4096)
    with torch.no_grad():
        prog = torch.onnx.export(_module(model), args, dynamo=True, opset_version=opset, input_names=names,
                                 output_names=["x0"], dynamic_shapes={n: {0: k} for n in names}, verbose=False)
    prog.save(str(path))
    if check:
        import onnx

        onnx.checker.check_model(str(path), full_check=True)
    return path


def diffusion_manifest_dict(model, sample_steps: int) -> dict:
    """``bundle.json``'s ``diffusion`` dict (see the module docstring)."""
    d = model.dcfg

    def vec(name):
        return [float(x) for x in getattr(model, name).numpy().reshape(-1)]

    return {
        "units": "normalized", "graph": "one denoiser pass: x_t (normalised), t, raw obs, raw goal -> x0 (normalised)",
        "timesteps": int(d.timesteps), "schedule": d.schedule,
        "alphas_cumprod": [float(x) for x in model.schedule.alphas_cumprod],
        "prediction": d.prediction, "sampler": "ddim", "sample_steps": int(sample_steps), "spacing": "trailing",
        "trained_sampler": d.sampler, "trained_sample_steps": int(d.sample_steps),
        "clip_sample": float(d.clip_sample), "clip_in_graph": True,
        "overwrite_first_state": bool(model.overwrites_first_state),  # false for action-only windows
        "win_mean": vec("win_mean"), "win_std": vec("win_std"), "obs_mean": vec("obs_mean"), "obs_std": vec("obs_std"),
    }


def validate_denoiser_options(opts: ExportOptions, timesteps: int, sample_steps: int) -> None:
    if opts.quantize != "none" or opts.int8_only:
        raise ExportError("diffusion runs export as an fp32 ONNX denoiser only: drop --quantize / --int8-only")
    if opts.formats != ["onnx"]:
        raise ExportError(f"diffusion runs export as an ONNX denoiser only (--format {','.join(opts.formats)} asked "
                          "for): use --format onnx")
    if not 1 <= sample_steps <= timesteps:
        raise ExportError(f"--sample-steps {sample_steps}: must be in 1..{timesteps} (the run's diffusion timesteps)")


def export_denoiser_bundle(run, out: str | Path, opts: ExportOptions, log=print) -> Path:
    """Export the diffusion run ``run`` (a LoadedRun) into the bundle directory ``out``.

    ``opts.sample_steps`` (default the run's ``diffusion.sample_steps``) is the bundle's default T.
    Raises ExportError (nothing written) for int8/TFLite options or a parity failure.
    """
    import torch

    from kdp_edge.planning import CandidateScorer, ScoringSpec
    from kdp_edge.runtime.diffusion import DenoiserSampler, DenoiserSchedule

    t0 = time.perf_counter()
    model = run.build_model(ema=True)
    steps = int(opts.sample_steps or model.dcfg.sample_steps)
    validate_denoiser_options(opts, model.dcfg.timesteps, steps)
    traj = training_data(run, opts.data)
    if traj is None:
        log(f"export: training data {data_path(run, opts.data) or '(no path recorded)'} not found here; "
            "parity uses synthetic conditions")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(work, 0o755)
    try:
        low, high = action_limits(run, traj)
        m = manifest_for_run(run, model, opts, low, high)
        m.inputs, m.outputs = (["x_t", "t", "obs", "goal"] if m.goal_dim else ["x_t", "t", "obs"]), ["x0"]
        m.diffusion = diffusion_manifest_dict(model, steps)
        m.source_checkpoint["data"] = data_path(run, opts.data) if traj is not None else ""
        schedule = DenoiserSchedule.from_manifest(m)

        log(f"export: ONNX fp32 denoiser (dynamic K; the runtime runs it T={steps} times per plan) ...")
        f = ModelFile(MODEL_FILE, "onnx", "fp32", role="denoiser",
                      notes=f"dynamo export, opset {DEFAULT_OPSET}; one denoiser pass in normalised units, "
                            f"x0 clipped to +-{model.dcfg.clip_sample:g} in the graph")
        export_denoiser_onnx(model, work / f.path)
        denoise = onnx_runner(work / f.path)

        # one pass against torch
        feeds = denoiser_inputs(model, k=opts.candidates, seed=opts.seed + 7)
        with torch.no_grad():
            ref = model.denoise(*(torch.from_numpy(feeds[n]) for n in ("x_t", "t", "obs")),
                                torch.from_numpy(feeds.get("goal", feeds["obs"][:, :0]))).numpy()
        e = denoise(feeds) - ref
        one_pass = {"max_abs": float(np.abs(e).max()), "rms": float(np.sqrt(np.mean(e ** 2))), "units": "normalized",
                    "rows": int(len(e))}
        log(f"  one denoiser pass vs torch: max-abs {one_pass['max_abs']:.2e} (normalised units)")

        # the whole sampler against DiffusionGenerator.forward (DDIM), on the same initial noise
        scorer = CandidateScorer(ScoringSpec.from_dict(m.scoring))
        pfeeds = parity_inputs(m, parity_conditions(run, traj, opts.parity_conditions, opts.seed), opts.candidates)
        reference = torch_reference(model)
        by_steps, runners = {}, {}
        for t_steps in sorted({*(s for s in PARITY_STEPS if s <= model.dcfg.timesteps), steps}):
            model.set_sampler("ddim", t_steps)
            sampler = DenoiserSampler(schedule, m.obs_dim, m.goal_dim, t_steps, "ddim")
            runners[t_steps] = (lambda fd, s=sampler: s(denoise, fd))
            rep = compare(reference, runners[t_steps], pfeeds, m, scorer)
            by_steps[str(t_steps)] = rep.to_dict()
            log(f"  sampler DDIM T={t_steps} vs torch forward: window max-abs {rep.max_abs:.2e}, rms {rep.rms:.2e}, "
                f"first-action rms {100 * rep.first_action_rms_frac:.4f}% of range, picks torch's best "
                f"{100 * rep.ranking_agreement:.0f}%")
        main = by_steps[str(steps)]
        ok = all(r["first_action_rms_frac"] <= FP32_TOLERANCE_FRAC and r["rel_max"] <= FP32_TOLERANCE_FRAC
                 for r in by_steps.values())
        m.files.append(f)
        m.parity[f.path] = main | {
            "sample_steps": steps, "sampler": "ddim", "reference": "DiffusionGenerator.forward (torch, DDIM)",
            "budget_first_action_frac": FP32_TOLERANCE_FRAC, "within_budget": bool(ok),
            "by_sample_steps": by_steps, "denoiser_pass": one_pass}
        if not ok:
            msg = (f"{f.path}: the runtime sampler on the exported denoiser does not match the torch model "
                   f"(T={steps}: window max-abs {main['max_abs']:.2e}, rel {main['rel_max']:.2e}; an export bug: "
                   "please report it)")
            if not opts.force:
                raise ExportError(msg + ". Nothing was written to the output; re-run with --force to inspect it")
            f.notes += " | FORCED past the fp32 parity gate"
            log(f"  warning: {msg}; written anyway (--force)")

        _closed_loop(m, reference, runners[steps], opts, model, steps, log)
        finish_bundle(work, m, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    log(f"bundle: {out} (diffusion denoiser, DDIM T={steps} by default, {m.files[0].bytes / 1e6:.2f} MB, "
        f"{time.perf_counter() - t0:.0f}s)")
    return out


def _closed_loop(m, reference, exported, opts: ExportOptions, model, steps: int, log) -> None:
    """torch (DDIM T) and the runtime sampler on the exported denoiser through the same PointMaze episodes."""
    from .closed_loop import available, closed_loop_scores

    n = opts.closed_loop_episodes
    if n <= 0:
        return
    ok, why = available(m.env)
    if not ok:
        log(f"export: closed-loop check skipped: {why}")
        return
    model.set_sampler("ddim", steps)
    path = m.files[0].path
    log(f"export: closed loop on {m.env}, {n} episodes, K={opts.candidates}, DDIM T={steps} (torch and {path}) ...")
    scores = closed_loop_scores(m, {"torch": reference, path: exported}, episodes=n, seed=opts.seed,
                                candidates=opts.candidates, log=log)
    ref, s = scores["torch"], scores[path]
    m.parity[path]["closed_loop"] = s.to_dict() | {
        "env": m.env, "protocol": m.protocol, "seed": opts.seed, "sample_steps": steps,
        "torch_score_mean": ref.score_mean, "torch_score_sem": ref.score_sem,
        "torch_success_rate": ref.success_rate, "score_drop": ref.score_mean - s.score_mean}
