"""``kdp-edge export``: run directory -> parity-checked bundle directory (see kdp_edge.bundle).

Stages (each logged through ``log``):

1. load the EMA generator; find the training data (``--data`` or the run's recorded path);
2. int8 only: draw the calibration set (conditions from the training windows, standard-normal
   noise; calibration/int8.py);
3. ONNX: fp32 graph (dynamic K) -> parity; then int8 static QDQ or dynamic -> parity, with the
   float-layer policy below; qdq_loss_debug's per-layer SQNR goes into the manifest;
4. TFLite: fp32 .tflite for K -> parity; then int8 / dynamic -> parity (same policy);
5. closed loop (pointmaze-* runs with the sim extra): torch and every exported model on the same
   PointMaze episodes (export/closed_loop.py);
6. ``bundle.json`` last, then the finished directory is moved into place: an interrupted or refused
   export never leaves a half bundle behind, and never touches an existing ``--out``.

Error budget (the gate): an int8 model whose first-action rms error exceeds
``budget_first_action_frac`` of the action range (default 2%) is refused with ExportError (exit
code 2, nothing written) unless ``force``; an fp32 model off by more than 1e-3 of the range means a
broken export and is refused the same way.

Float-layer policy (``keep_float``): ``auto`` quantises everything first; over budget, it keeps the
conditioning layers in float (the MLP's first Linear; the U-Net's condition MLP and FiLM Linears),
then, one at a time, the layers qdq_loss_debug ranks worst, up to ``max_float_layers`` more (and
never more than half of the weighted layers in float); the most accurate try is kept.
``none`` never falls back; ``conditioning`` or a comma list of layer names (torch module paths,
e.g. ``net.net.0``) fixes the set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdp_edge.bundle import ModelFile, sha256_file

from .common import (  # noqa: F401  (re-exported: export.pipeline is the public entry point)
    CALIBRATION_FILE,
    FP32_TOLERANCE_FRAC,
    ExportError,
    ExportOptions,
    Generate,
    action_limits,
    add_model,
    check_out_dir,
    data_path,
    finish_bundle,
    manifest_for_run,
    onnx_runner,
    parity_conditions,
    replace_dir,
    step_dt_for_env,
    torch_reference,
    training_data,
    validate_options,
)
from .parity import ParityReport, compare, parity_inputs


@dataclass
class _Attempt:
    float_layers: list[str]
    report: ParityReport

    def to_dict(self) -> dict:
        return {"float_layers": self.float_layers, "first_action_rms_frac": self.report.first_action_rms_frac}


class _Exporter:
    """One export: shared state of the stages (see module docstring)."""

    def __init__(self, run, model, opts: ExportOptions, traj, work: Path, scratch: Path, log):
        from kdp_edge.planning import CandidateScorer, ScoringSpec

        from .layers import conditioning_layers, weighted_layers

        self.run, self.model, self.opts, self.traj, self.work, self.scratch, self.log = (
            run, model, opts, traj, work, scratch, log)
        low, high = action_limits(run, traj)
        self.manifest = manifest_for_run(run, model, opts, low, high)
        self.manifest.source_checkpoint["data"] = data_path(run, opts.data) if traj is not None else ""
        self.scorer = CandidateScorer(ScoringSpec.from_dict(self.manifest.scoring))
        self.feeds = parity_inputs(self.manifest, parity_conditions(run, traj, opts.parity_conditions, opts.seed),
                                   opts.candidates)
        self.reference = torch_reference(model)
        self.layers = weighted_layers(model)
        self.conditioning = conditioning_layers(model)
        self.sensitivity: list = []  # export.int8_onnx.LayerError, worst first (ONNX static only)
        self.runners: dict[str, Generate] = {}  # bundle file -> feeds -> windows
        self.calib = None

    # -- helpers -----------------------------------------------------------------------------------
    def check(self, f: ModelFile, runner: Generate) -> ParityReport:
        rep = compare(self.reference, runner, self.feeds, self.manifest, self.scorer)
        self.runners[f.path] = runner
        return rep

    def add(self, f: ModelFile, rep: ParityReport, extra: dict | None = None) -> None:
        budget = self.opts.budget_first_action_frac if f.precision != "fp32" else FP32_TOLERANCE_FRAC
        ok = rep.first_action_rms_frac <= budget and (f.precision != "fp32" or rep.rel_max <= FP32_TOLERANCE_FRAC)
        entry = rep.to_dict() | {"budget_first_action_frac": budget, "within_budget": bool(ok)} | (extra or {})
        self.manifest.files.append(f)
        self.manifest.parity[f.path] = entry
        self.log(f"  {f.path}: max-abs {rep.max_abs:.2e}, first-action rms {100 * rep.first_action_rms_frac:.3f}% "
                 f"of range (budget {100 * budget:g}%), picks torch's best {100 * rep.ranking_agreement:.0f}% "
                 f"(regret {rep.score_regret:.3f}), {(self.work / f.path).stat().st_size / 1e6:.2f} MB")
        if not ok:
            what = ("int8 model exceeds the error budget" if f.precision != "fp32"
                    else "fp32 model does not match the torch model (an export bug: please report it)")
            tried = extra.get("attempts") if extra else None
            msg = (f"{f.path}: {what}: first-action rms error {100 * rep.first_action_rms_frac:.2f}% of the action "
                   f"range > budget {100 * budget:g}% (action rms {rep.action_rms:.4f}, window max-abs {rep.max_abs:.4f} "
                   f"raw units, picks torch's best candidate {100 * rep.ranking_agreement:.0f}%)")
            if tried:
                msg += "; float layers tried: " + "; ".join(
                    f"[{', '.join(a['float_layers']) or 'none'}] -> {100 * a['first_action_rms_frac']:.2f}%" for a in tried)
            if self.opts.force:
                f.notes += f" | FORCED past the error budget ({100 * rep.first_action_rms_frac:.2f}% > {100 * budget:g}%)"
                self.log(f"  warning: {msg}; written anyway (--force)")
            else:
                fix = ("use --keep-float LAYERS (e.g. " + ",".join(self.conditioning or self.layers[:1]) + "), more "
                       "--calib-samples, --quantize dynamic, a larger --budget, or --force to write it anyway"
                       if f.precision != "fp32" else "re-run with --force to inspect it")
                raise ExportError(f"{msg}. Nothing was written to the output. Fix: {fix}")

    def float_layer_plan(self) -> list[list[str]]:
        """Float-layer sets to try in order (see module docstring)."""
        kf = self.opts.keep_float.strip()
        if kf == "none":
            return [[]]
        if kf == "conditioning":
            return [list(self.conditioning)]
        if kf == "auto":
            return [[], list(self.conditioning)] if self.conditioning else [[]]
        names = [x.strip() for x in kf.split(",") if x.strip()]
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise ExportError(f"--keep-float: {unknown} are not weighted layers of this model; use auto, none, "
                              f"conditioning or some of: {', '.join(self.layers)}")
        return [names]

    def fit_budget(self, name: str, quantize: Callable[[list[str]], Generate]) -> tuple[list[str], ParityReport, list]:
        """Quantise with each float-layer set of the plan until one is within budget; with
        ``auto``, extend the plan with the layers qdq_loss_debug ranks worst."""
        plan, attempts, i = self.float_layer_plan(), [], 0
        while True:
            fl = plan[i]
            runner = quantize(fl)
            rep = compare(self.reference, runner, self.feeds, self.manifest, self.scorer)
            attempts.append(_Attempt(fl, rep))
            self.log(f"  {name} with float layers [{', '.join(fl) or 'none'}]: first-action rms "
                     f"{100 * rep.first_action_rms_frac:.3f}% of range")
            if rep.first_action_rms_frac <= self.opts.budget_first_action_frac or self.opts.keep_float.strip() != "auto":
                break
            if i + 1 == len(plan):
                extra = [e.layer for e in self.sensitivity if e.layer not in plan[-1]]
                if (not extra or len(plan[-1]) - len(self.conditioning) >= self.opts.max_float_layers
                        or len(plan[-1]) + 1 > len(self.layers) // 2):  # at least half the layers stay int8
                    break
                plan.append(plan[-1] + extra[:1])
            i += 1
        best = min(attempts, key=lambda a: a.report.first_action_rms_frac)
        if best is not attempts[-1]:  # the last try was not the best: redo the best one
            quantize(best.float_layers)
        return best.float_layers, best.report, [a.to_dict() for a in attempts]

    # -- stages ------------------------------------------------------------------------------------
    def onnx(self) -> None:
        from .onnx_export import export_onnx

        self.log("export: ONNX fp32 (dynamic K) ...")
        f = ModelFile("model_fp32.onnx", "onnx", "fp32", notes="dynamo export, opset 18, normalisation in graph")
        export_onnx(self.model, self.work / f.path)
        self.add(f, self.check(f, onnx_runner(self.work / f.path)))
        if self.opts.quantize == "int8":
            self.onnx_int8_static(self.work / f.path)
        elif self.opts.quantize == "dynamic":
            self.onnx_int8_dynamic(self.work / f.path)

    def onnx_int8_static(self, fp32: Path) -> None:
        from .int8_onnx import OnnxInt8Config, layer_sensitivity, preprocess, quantize_static

        self.log(f"export: ONNX int8 static QDQ ({self.opts.activations.upper()} activations, "
                 f"{len(self.calib)} calibration rows) ...")
        pre = preprocess(fp32, self.scratch / "model_fp32_pre.onnx")
        f = ModelFile("model_int8.onnx", "onnx", "int8")
        out = self.work / f.path

        def cfg(fl):
            return OnnxInt8Config(activations=self.opts.activations, ops=self.opts.int8_ops, float_layers=fl,
                                  batch=self.opts.candidates)

        def quantize(fl):
            try:
                quantize_static(pre, out, self.calib, cfg(fl))
            except ValueError as exc:
                raise ExportError(f"int8 quantisation failed: {exc}") from exc
            if not self.sensitivity:  # once, on the first (most quantised) model
                self.log("  qdq_loss_debug: per-layer SQNR against the float model ...")
                self.sensitivity = layer_sensitivity(pre, out, self.calib, batch=self.opts.candidates)
                worst = ", ".join(f"{e.layer} {e.drop_db:+.1f} dB" for e in self.sensitivity[:3] if e.drop_db is not None)
                self.log(f"  largest SQNR drops: {worst}")
            return onnx_runner(out)

        fl, rep, attempts = self.fit_budget(f.path, quantize)
        f.notes = cfg(fl).describe() + f"; calibration: {len(self.calib)} rows from the training windows"
        self.add(f, self.check(f, onnx_runner(out)), {
            "attempts": attempts, "float_layers": fl,
            "qdq_loss_debug": [e.to_dict() for e in self.sensitivity],
        })

    def onnx_int8_dynamic(self, fp32: Path) -> None:
        from .int8_onnx import preprocess, quantize_dynamic

        self.log("export: ONNX int8 dynamic (int8 weights, activations quantised at run time) ...")
        pre = preprocess(fp32, self.scratch / "model_fp32_pre.onnx")
        f = ModelFile("model_int8_dynamic.onnx", "onnx", "int8-dynamic")
        out = self.work / f.path

        def quantize(fl):
            quantize_dynamic(pre, out, fl)
            return onnx_runner(out)

        fl, rep, attempts = self.fit_budget(f.path, quantize)
        f.notes = ("onnxruntime dynamic int8: weights S8 per-channel, activations U8 quantised per call; "
                   f"float layers: {', '.join(fl) or 'none'}")
        self.add(f, self.check(f, onnx_runner(out)), {"attempts": attempts, "float_layers": fl})

    def tflite(self) -> None:
        from .tflite_export import (
            TFLiteInt8Config,
            TFLiteRunner,
            export_tflite_fp32,
            quantize_tflite_dynamic,
            quantize_tflite_int8,
            tflite_name,
        )

        k = self.opts.candidates
        self.log(f"export: TFLite fp32 for K={k} (litert-torch) ...")
        f = ModelFile(tflite_name("fp32", k), "tflite", "fp32", candidates=k,
                      notes=f"litert-torch, fixed K={k}, signature serving_default")
        export_tflite_fp32(self.model, self.work / f.path, k)
        self.add(f, self.check(f, TFLiteRunner(self.work / f.path)))
        fp32 = self.work / f.path
        if self.opts.quantize == "int8":
            self.log(f"export: TFLite int8 (ai-edge-quantizer, global min/max over {len(self.calib)} rows) ...")
            q = ModelFile(tflite_name("int8", k), "tflite", "int8", candidates=k)
            out = self.work / q.path

            def cfg(fl):
                return TFLiteInt8Config(ops=self.opts.int8_ops, float_layers=fl)

            def quantize(fl):
                quantize_tflite_int8(fp32, out, self.calib, k, cfg(fl))
                return TFLiteRunner(out)

            fl, rep, attempts = self.fit_budget(q.path, quantize)
            q.notes = cfg(fl).describe() + f"; calibration: {len(self.calib)} rows from the training windows"
            self.add(q, self.check(q, TFLiteRunner(out)), {"attempts": attempts, "float_layers": fl})
        elif self.opts.quantize == "dynamic":
            self.log("export: TFLite int8 dynamic-range (dynamic_wi8_afp32) ...")
            q = ModelFile(tflite_name("int8-dynamic", k), "tflite", "int8-dynamic", candidates=k,
                          notes="ai-edge-quantizer dynamic_wi8_afp32: int8 weights, activations quantised at run time")
            quantize_tflite_dynamic(fp32, self.work / q.path)
            self.add(q, self.check(q, TFLiteRunner(self.work / q.path)))

    def closed_loop(self) -> None:
        from .closed_loop import available, closed_loop_scores

        n = self.opts.closed_loop_episodes
        if n <= 0:
            return
        ok, why = available(self.manifest.env)
        if not ok:
            self.log(f"export: closed-loop check skipped: {why}")
            return
        files = [f for f in self.manifest.files if not (self.opts.int8_only and f.precision == "fp32")]
        gens = {"torch": self.reference} | {f.path: self.runners[f.path] for f in files}
        self.log(f"export: closed loop on {self.manifest.env}, {n} episodes, K={self.opts.candidates}, "
                 f"{self.manifest.protocol} (torch and {len(gens) - 1} exported models) ...")
        scores = closed_loop_scores(self.manifest, gens, episodes=n, seed=self.opts.seed,
                                    candidates=self.opts.candidates, log=self.log)
        ref = scores.pop("torch")
        for path, s in scores.items():
            self.manifest.parity[path]["closed_loop"] = s.to_dict() | {
                "env": self.manifest.env, "protocol": self.manifest.protocol, "seed": self.opts.seed,
                "torch_score_mean": ref.score_mean, "torch_score_sem": ref.score_sem,
                "torch_success_rate": ref.success_rate, "score_drop": ref.score_mean - s.score_mean}

    def finish(self) -> None:
        m = self.manifest
        if self.calib is not None:
            info = {"samples": len(self.calib), "seed": self.calib.seed, "source": self.calib.source,
                    "conditions": "uniform over the training windows' start steps", "noise": "standard normal"}
            if self.opts.save_calibration:
                self.calib.save(self.work / CALIBRATION_FILE)
                info |= {"file": CALIBRATION_FILE, "sha256": sha256_file(self.work / CALIBRATION_FILE)}
            m.source_checkpoint["calibration"] = info
        if self.opts.int8_only:
            for f in [f for f in m.files if f.precision == "fp32"]:
                m.files.remove(f)
                m.parity.pop(f.path, None)
                (self.work / f.path).unlink()
            self.log("export: fp32 files left out of the bundle (--int8-only)")


def export_bundle(run_dir: str | Path, out: str | Path, opts: ExportOptions, log=print, verbose: bool = False) -> Path:
    """Export ``run_dir`` into the bundle directory ``out`` (replaced atomically if it exists).

    What the exporting libraries print on their own (torchao / absl / TFLite C++ lines, "torchvision is
    not installed", their FutureWarnings) goes to ``out/export.log`` (``OUT-export.log`` beside it when
    the export fails), not to the terminal; ``verbose`` shows it instead. Our own lines and warnings
    are shown either way (:mod:`export.quiet`).

    Raises ExportError (a KDPError: the CLI exits with code 2) for bad options, missing
    calibration data, or a model over its error budget; nothing is written to ``out`` then.
    """
    from .quiet import third_party_output_to

    out = Path(out)
    tmp_log = out.parent / f".{out.name}.export.log.{os.getpid()}"
    try:
        with third_party_output_to(tmp_log, log, verbose) as ours:
            result = _export_bundle(run_dir, out, opts, ours)
    except BaseException:
        noise = tmp_log.exists() and any(not ln.startswith("[kdp-edge] ") and ln.strip()
                                         for ln in tmp_log.read_text(errors="replace").splitlines())
        if noise:
            failed = out.parent / f"{out.name}-export.log"
            os.replace(tmp_log, failed)
            log(f"export: the exporting libraries' own output is in {failed}")
        else:
            tmp_log.unlink(missing_ok=True)
        raise
    if tmp_log.exists():
        os.replace(tmp_log, out / "export.log")
        log(f"export: the exporting libraries' own output (warnings, C++ log lines) is in {out / 'export.log'} "
            "(--verbose shows it here)")
    return result


def _export_bundle(run_dir: str | Path, out: str | Path, opts: ExportOptions, log=print) -> Path:
    """:func:`export_bundle` without the capture of third-party output: checks, then the run's method
    plug-in's exporter (:mod:`kdp_edge.methods`: generators here, denoisers in :mod:`export.denoiser`)."""
    from kdp_edge.checkpoint import load_run
    from kdp_edge.methods import method_for

    validate_options(opts)
    check_out_dir(Path(out), Path(run_dir))
    if "tflite" in opts.formats:
        from .tflite_export import require_tflite_export

        require_tflite_export()  # MissingExtraError naming the tflite extra, before any work
    run = load_run(run_dir)
    return method_for(run.info.method).export_function()(run, out, opts, log=log)


def export_generator_bundle(run, out: str | Path, opts: ExportOptions, log=print) -> Path:
    """A one-pass generator's bundle (ONNX / TFLite, fp32 / int8, parity, closed-loop check) for a loaded,
    validated run."""
    import torch

    from calibration.int8 import draw_calibration

    t0 = time.perf_counter()
    model = run.build_model(ema=True)
    traj = training_data(run, opts.data)
    if traj is None:
        where = data_path(run, opts.data) or "(no path recorded)"
        if opts.quantize == "int8":
            raise ExportError(f"--quantize int8 needs calibration data from the run's training set, and {where} is "
                              "not on this machine. Pass --data PATH (the training dataset, or one generated the same "
                              "way, e.g. kdp-edge data pointmaze --maze umaze --out PATH), or use --quantize dynamic "
                              "(no calibration) or none")
        log(f"export: training data {where} not found here; parity uses synthetic conditions")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # parity references on one thread, like every other stage here

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    scratch = Path(tempfile.mkdtemp(prefix="kdp-export-"))
    os.chmod(work, 0o755)
    try:
        ex = _Exporter(run, model, opts, traj, work, scratch, log)
        if opts.quantize == "int8":
            ex.calib = draw_calibration(traj, run.info.horizon, ex.manifest.window_dim, opts.calib_samples,
                                        seed=opts.seed + 1)
            log(f"export: calibration set: {len(ex.calib)} conditions from {traj.source} + standard-normal noise")
        if "onnx" in opts.formats:
            ex.onnx()
        if "tflite" in opts.formats:
            ex.tflite()
        ex.closed_loop()
        ex.finish()
        finish_bundle(work, ex.manifest, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        torch.set_num_threads(threads)
    total = sum(f.bytes for f in ex.manifest.files)
    log(f"bundle: {out} ({len(ex.manifest.files)} model files, {total / 1e6:.2f} MB, {time.perf_counter() - t0:.0f}s)")
    return out


