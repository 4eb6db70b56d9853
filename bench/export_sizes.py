"""Export benchmark: file sizes fp32 vs int8 per format, parity with torch, closed-loop score.

    python bench/export_sizes.py                      # the default UMaze run, 50 episodes
    python bench/export_sizes.py --run RUN_DIR --data DATA.hdf5 --episodes 50 --variants 384 320

For the run (default bench/results/pointmaze/umaze-condition_descriptor: MLP 3x512, 0.73M
parameters, 10k steps on UMaze) it exports, through the real ``kdp-edge export`` pipeline:

* ONNX + TFLite, fp32 and static int8 (the defaults: U8 activations, weighted ops, auto float layers);
* the same int8 with the conditioning layer kept in float (``--keep-float conditioning``);
* ONNX + TFLite dynamic int8;

each with the parity report against torch and a closed-loop PointMaze score on the same episodes
as the torch model (own actions, K=16). Then, for the size target (int8 bundle <= 0.5 MB), it trains
quick MLPs with smaller hidden widths (``--variants``, ``--variant-steps`` steps each) and reports
their int8 sizes and parity (no closed loop: they are barely trained).

Writes <out>/export.json and <out>/export.md. Latency is not measured here (bench/runtime owns it).
The training data is needed for int8 calibration: the run's recorded path, else --data, else a
UMaze dataset generated the way bench/pointmaze.py does (noise 0.3, seed 0; 200k steps: the first
200k steps of the 1M-step training set).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdp_edge.provenance import provenance, provenance_line  # noqa: E402

TARGET_BYTES = 500_000  # "int8 bundle at most 0.5 MB" (decimal MB)


def kdp(*args: str) -> None:
    cmd = [sys.executable, "-m", "kdp_edge.cli", *args]
    print("+ kdp-edge", " ".join(shlex.quote(a) for a in cmd[3:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))


def find_data(run_dir: Path, given: str | None, tmp: Path, steps: int) -> Path:
    from kdp_edge.checkpoint import load_run

    if given:
        return Path(given)
    run = load_run(run_dir)
    for cand in (run.cfg.data.path, run.info.data):
        if cand and Path(cand).exists():
            return Path(cand)
    maze = run.info.env.removeprefix("pointmaze-") or "umaze"
    out = tmp / f"{maze}-{steps // 1000}k.hdf5"
    print(f"training data {run.cfg.data.path} is not here: generating {out} (noise 0.3, seed 0, {steps} steps)")
    kdp("data", "pointmaze", "--maze", maze, "--steps", str(steps), "--noise", "0.3", "--seed", "0", "--out", str(out))
    return out


def export(run_dir: Path, out: Path, data: Path, log_lines: list[str], **kw) -> dict:
    """Run the export pipeline in-process; returns bundle.json as a dict."""
    from export.pipeline import ExportOptions, export_bundle

    opts = ExportOptions(data=str(data), **kw)
    t0 = time.perf_counter()
    export_bundle(run_dir, out, opts, log=lambda m: (print(m, flush=True), log_lines.append(m)))
    m = json.loads((out / "bundle.json").read_text())
    m["_seconds"] = time.perf_counter() - t0
    return m


def rows_of(manifest: dict, label: str) -> list[dict]:
    rows = []
    for f in manifest["files"]:
        p = manifest["parity"][f["path"]]
        cl = p.get("closed_loop", {})
        rows.append({
            "variant": label, "file": f["path"], "format": f["format"], "precision": f["precision"],
            "candidates": f["candidates"], "bytes": f["bytes"],
            "notes": f["notes"], "float_layers": p.get("float_layers", []),
            "first_action_rms_frac": p["first_action_rms_frac"], "action_rms": p["action_rms"],
            "max_abs": p["max_abs"], "rel_max": p["rel_max"], "ranking_agreement": p["ranking_agreement"],
            "top1_in_top3": p["top1_in_top3"], "score_regret": p.get("score_regret"),
            "within_budget": p["within_budget"], "qdq_loss_debug": p.get("qdq_loss_debug"),
            "score": cl.get("score_mean"), "score_sem": cl.get("score_sem"), "success": cl.get("success_rate"),
            "torch_score": cl.get("torch_score_mean"), "torch_score_sem": cl.get("torch_score_sem"),
            "score_drop": cl.get("score_drop"), "episodes": cl.get("episodes"),
        })
    return rows


def train_variant(hidden: int, data: Path, steps: int, tmp: Path, base_cfg: dict) -> Path:
    run = tmp / f"mlp{hidden}"
    if (run / "checkpoint.pt").exists():
        return run
    cfg = tmp / f"mlp{hidden}.json"
    cfg.write_text(json.dumps({"model": {"mlp_hidden": hidden}, "data": {"horizon": base_cfg["data"]["horizon"]},
                               "drift": {"key": base_cfg["drift"]["key"]}, "log_every": 500,
                               "checkpoint_every": steps}))
    kdp("train", "--data", str(data), "--out", str(run), "--config", str(cfg), "--steps", str(steps),
        "--threads", "1", "--quiet")
    return run


def fmt_mb(b) -> str:
    return f"{b / 1e6:.3f}"


def markdown(res: dict) -> str:
    r = res["run"]
    lines = [
        "# Export: sizes, parity and closed-loop score (fp32 vs int8)", "",
        (provenance_line(res["provenance"]) if "provenance" in res else f"Command: `{res['command']}`") + "  ",
        f"Run: `{r['run_dir']}` ({r['arch']} hidden {r['mlp_hidden']} x {r['mlp_layers']}, {r['parameters']:,} "
        f"parameters, {r['step']} steps, env {r['env']}); calibration/parity data: `{res['data']}`  ",
        f"Closed loop: {res['protocol']}  ",
        f"Machine: {res['machine']}; {res['seconds']:.0f}s in all. Sizes in MB = 10^6 bytes.", "",
        "## Files (K = 16 for TFLite and for parity/closed loop)", "",
        "| variant | file | precision | size (MB) | first-action rms (% of range) | action rms | window max-abs "
        "| picks torch's best | regret (m) | closed-loop score | torch score | drop |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in res["rows"]:
        score = f"{x['score']:.1f} ± {x['score_sem']:.1f}" if x["score"] is not None else "-"
        torch_s = f"{x['torch_score']:.1f} ± {x['torch_score_sem']:.1f}" if x["torch_score"] is not None else "-"
        drop = f"{x['score_drop']:+.1f}" if x["score_drop"] is not None else "-"
        lines.append(
            f"| {x['variant']} | {x['file']} | {x['precision']} | {fmt_mb(x['bytes'])} | "
            f"{100 * x['first_action_rms_frac']:.3f} | {x['action_rms']:.4f} | {x['max_abs']:.3g} | "
            f"{100 * x['ranking_agreement']:.0f}% | {x['score_regret']:.3f} | {score} | {torch_s} | {drop} |")
    s = res["summary"]
    lines += ["", "## Size target: int8 bundle <= 0.5 MB", "",
              f"- Default model ({r['parameters']:,} parameters): int8 ONNX {fmt_mb(s['onnx_int8_bytes'])} MB, "
              f"int8 TFLite {fmt_mb(s['tflite_int8_bytes'])} MB; an int8-only bundle (`--int8-only`, one model file "
              f"+ bundle.json) is about {fmt_mb(s['int8_only_bundle_bytes'])} MB: target "
              f"{'met' if s['target_met'] else 'NOT met'} (int8 weights alone are ~1 byte per parameter).",
              "", "| MLP hidden | parameters | training steps | fp32 ONNX (MB) | int8 ONNX (MB) | int8 TFLite (MB) "
              "| int8-only bundle (MB) | <= 0.5 MB | int8 first-action rms (% of range) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for v in res["variants"]:
        lines.append(f"| {v['mlp_hidden']} | {v['parameters']:,} | {v['steps']} | {fmt_mb(v['onnx_fp32_bytes'])} | "
                     f"{fmt_mb(v['onnx_int8_bytes'])} | {fmt_mb(v['tflite_int8_bytes']) if v['tflite_int8_bytes'] else '-'} | "
                     f"{fmt_mb(v['int8_only_bundle_bytes'])} | {'yes' if v['target_met'] else 'no'} | "
                     f"{100 * v['first_action_rms_frac']:.3f} |")
    lines += ["", "## qdq_loss_debug (default model, ONNX static int8, all layers quantised)", "",
              "| layer | node | SQNR in (dB) | SQNR out (dB) | drop (dB) |", "|---|---|---|---|---|"]
    for e in res.get("qdq_loss_debug") or []:
        lines.append(f"| {e['layer']} | {e['node']} | {e['sqnr_in_db']} | {e['sqnr_out_db']} | {e['drop_db']} |")
    lines += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="bench/results/pointmaze/umaze-condition_descriptor")
    ap.add_argument("--data", default=None, help="training data for calibration (default: the run's, or generated)")
    ap.add_argument("--data-steps", type=int, default=200_000, help="steps to generate when no data is found")
    ap.add_argument("--episodes", type=int, default=50, help="closed-loop episodes (own actions)")
    ap.add_argument("--candidates", "-k", type=int, default=16)
    ap.add_argument("--variants", type=int, nargs="*", default=[384, 320], help="MLP hidden widths for the size study")
    ap.add_argument("--variant-steps", type=int, default=2000)
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--out", default="bench/results/export")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from kdp_edge.checkpoint import load_run

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kdp-export-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    run_dir = Path(args.run)
    run = load_run(run_dir)
    data = find_data(run_dir, args.data, tmp, args.data_steps)
    log: list[str] = []
    common = dict(candidates=args.candidates, closed_loop_episodes=args.episodes)

    print("== default export: ONNX + TFLite, fp32 + static int8 ==", flush=True)
    m_int8 = export(run_dir, tmp / "b_int8", data, log, formats=["onnx", "tflite"], quantize="int8", **common)
    rows = rows_of(m_int8, "default")
    sens = m_int8["parity"]["model_int8.onnx"].get("qdq_loss_debug")
    print("== int8 with the conditioning layer in float ==", flush=True)
    m_cond = export(run_dir, tmp / "b_cond", data, log, formats=["onnx", "tflite"], quantize="int8",
                    keep_float="conditioning", int8_only=True, **common)
    rows += rows_of(m_cond, "conditioning layer float")
    print("== dynamic int8 ==", flush=True)
    m_dyn = export(run_dir, tmp / "b_dyn", data, log, formats=["onnx", "tflite"], quantize="dynamic",
                   int8_only=True, **common)
    rows += rows_of(m_dyn, "dynamic")

    def one_file_bundle(m: dict, path: str) -> int:
        """int8-only bundle size: the model file plus a bundle.json listing just it."""
        keep = dict(m, files=[f for f in m["files"] if f["path"] == path],
                    parity={path: m["parity"][path]})
        keep.pop("_seconds", None)
        return next(f["bytes"] for f in m["files"] if f["path"] == path) + len(json.dumps(keep, indent=2))

    k = args.candidates
    onnx_int8 = next(r for r in rows if r["file"] == "model_int8.onnx" and r["variant"] == "default")
    tfl_int8 = next(r for r in rows if r["file"] == f"model_int8_k{k}.tflite" and r["variant"] == "default")
    bundle_int8 = min(one_file_bundle(m_int8, "model_int8.onnx"), one_file_bundle(m_int8, f"model_int8_k{k}.tflite"))
    summary = {"onnx_int8_bytes": onnx_int8["bytes"], "tflite_int8_bytes": tfl_int8["bytes"],
               "int8_only_bundle_bytes": bundle_int8, "target_bytes": TARGET_BYTES,
               "target_met": bundle_int8 <= TARGET_BYTES,
               "closed_loop_drop_target": 2.0,
               "closed_loop_drop_onnx_int8": onnx_int8["score_drop"],
               "closed_loop_drop_tflite_int8": tfl_int8["score_drop"]}

    variants = []
    base_cfg = run.cfg.to_dict()
    for hidden in args.variants:
        print(f"== size study: MLP hidden {hidden}, {args.variant_steps} training steps ==", flush=True)
        vrun = train_variant(hidden, data, args.variant_steps, tmp, base_cfg)
        mv = export(vrun, tmp / f"b_mlp{hidden}", data, log, formats=["onnx", "tflite"], quantize="int8",
                    candidates=args.candidates, closed_loop_episodes=0)
        files = {f["path"]: f for f in mv["files"]}
        b = one_file_bundle(mv, "model_int8.onnx")
        variants.append({
            "mlp_hidden": hidden, "parameters": load_run(vrun).info.parameters, "steps": args.variant_steps,
            "onnx_fp32_bytes": files["model_fp32.onnx"]["bytes"], "onnx_int8_bytes": files["model_int8.onnx"]["bytes"],
            "tflite_int8_bytes": files.get(f"model_int8_k{k}.tflite", {}).get("bytes"),
            "int8_only_bundle_bytes": b, "target_met": b <= TARGET_BYTES,
            "first_action_rms_frac": mv["parity"]["model_int8.onnx"]["first_action_rms_frac"],
            "tflite_first_action_rms_frac": mv["parity"].get(f"model_int8_k{k}.tflite", {}).get("first_action_rms_frac"),
            "float_layers": mv["parity"]["model_int8.onnx"].get("float_layers", []),
        })

    info = run.info
    notes = [
        "Static int8 = onnxruntime quant_pre_process + quantize_static (QDQ, S8 per-channel weights, U8 activations, "
        "MinMax over 256 calibration rows drawn from the training windows, Gemm/MatMul/Conv quantised) and "
        "ai-edge-quantizer's static_wi8_ai8 configuration on FULLY_CONNECTED/CONV ops with GLOBAL min/max "
        "calibration and float I/O. With the same ranges both quantise identically, hence identical numbers.",
        "Closed loop: torch and every exported model run the same episodes (same starts, same noise seed); "
        "fp32 files reproduce the torch score exactly.",
        "Default int8 keeps no layer in float when within budget (--keep-float auto); the 'conditioning layer "
        "float' rows keep the MLP's first Linear (it eats [condition, noise]) in float: more accurate, but "
        "~0.3 MB larger.",
        "The variants are trained only --variant-steps steps: their parity numbers say how int8 behaves on "
        "that width, not how good the policy is.",
    ]
    res = {
        "command": "python bench/export_sizes.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "provenance": provenance(),
        "run": {"run_dir": str(run_dir), "arch": run.cfg.model.arch, "mlp_hidden": run.cfg.model.mlp_hidden,
                "mlp_layers": run.cfg.model.mlp_layers, "parameters": info.parameters, "step": info.step,
                "env": info.env},
        "data": str(data), "protocol": f"{info.env}, {args.episodes} episodes (seed 0), K={k}, own actions, "
                                      "D4RL-normalised score",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, one thread, Python {platform.python_version()}",
        "rows": rows, "summary": summary, "variants": variants, "qdq_loss_debug": sens, "notes": notes,
        "log": log, "seconds": time.perf_counter() - t_start,
    }
    (out / "export.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "export.md").write_text(markdown(res))
    print((out / "export.md").read_text())


if __name__ == "__main__":
    main()
