"""Export pipeline: fp32/int8 ONNX and TFLite parity with torch, the error-budget gate, bundle
round trip through the runtime Planner, corrupted bundles, and the CLI.

Uses the session ``tiny_run`` (conftest.py: PointMaze UMaze, 20k steps of data, 200 training steps).
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import kdp_cmd

from calibration.int8 import CalibrationSet, OnnxCalibrationReader, calibration_for_run, draw_calibration
from export.pipeline import ExportError, ExportOptions, export_bundle
from kdp_edge.bundle import BundleError, load_bundle
from kdp_edge.errors import DataError, MissingExtraError

K = 8  # candidates for every bundle here (small: fast)


def quiet(_msg):
    pass


def torch_windows(run_dir, feeds):
    import torch

    from kdp_edge.checkpoint import load_run

    model = load_run(run_dir).build_model(ema=True)
    with torch.no_grad():
        return model(*(torch.from_numpy(feeds[n]) for n in ("obs", "goal", "noise"))).numpy()


def feeds_for(run_dir, k=K, seed=5):
    info = json.loads((run_dir / "run.json").read_text())
    rng = np.random.default_rng(seed)
    obs = np.array([1.0, 1.5, 0.1, -0.2], np.float32)
    goal = np.array([1.0, 1.0], np.float32)
    return {"obs": np.repeat(obs[None], k, 0), "goal": np.repeat(goal[None], k, 0),
            "noise": rng.standard_normal((k, info["horizon"], info["obs_dim"] + info["act_dim"]), dtype=np.float32)}


def first_action_rms_frac(bundle, out, ref) -> float:
    """RMS of the first planned action's error, as a fraction of the bundle's action range (the gate's
    measure), taken here on fresh inputs instead of read from the exporter's own report."""
    lo, hi = bundle.manifest.action_slice
    span = np.asarray(bundle.manifest.action_high) - np.asarray(bundle.manifest.action_low)
    return float(np.sqrt(np.mean(((out - ref)[:, 0, lo:hi] / span) ** 2)))


@pytest.fixture(scope="module")
def onnx_bundle(tiny_run, tmp_path_factory):
    """ONNX fp32 + static int8 bundle, with a 2-episode closed-loop check."""
    out = tmp_path_factory.mktemp("export") / "bundle"
    export_bundle(tiny_run, out, ExportOptions(formats=["onnx"], quantize="int8", candidates=K, calib_samples=64,
                                               parity_conditions=16, closed_loop_episodes=2, save_calibration=True),
                  log=quiet)
    return out


# ---- calibration ----------------------------------------------------------------------------------
def test_calibration_draws_training_conditions_and_standard_noise(tiny_run, tmp_path):
    from kdp_edge.checkpoint import load_run
    from kdp_edge.data.readers import load_trajectories

    run = load_run(tiny_run)
    traj = load_trajectories(run.cfg.data.path)
    cal = draw_calibration(traj, run.info.horizon, 6, 200, seed=3)
    assert cal.obs.shape == (200, 4) and cal.goal.shape == (200, 2) and cal.noise.shape == (200, run.info.horizon, 6)
    # every condition is a training step
    rows = {tuple(r) for r in np.concatenate([traj.observations, traj.goals], 1).round(5)}
    assert all(tuple(r) in rows for r in np.concatenate([cal.obs, cal.goal], 1).round(5))
    assert abs(cal.noise.mean()) < 0.05 and abs(cal.noise.std() - 1) < 0.05
    batches = list(cal.batches(64))
    assert len(batches) == 3 and all(len(b["noise"]) == 64 for b in batches)  # partial batch dropped
    reader = OnnxCalibrationReader(cal, ["obs", "goal", "noise"], batch=64)
    assert sum(len(f["obs"]) for f in iter(reader.get_next, None)) == 200
    reader.rewind()
    assert reader.get_next() is not None
    cal.save(tmp_path / "calibration.npz")
    back = CalibrationSet.load(tmp_path / "calibration.npz")
    np.testing.assert_array_equal(back.noise, cal.noise)
    assert back.source == cal.source and back.seed == 3
    with pytest.raises(DataError, match="--data"):
        calibration_for_run(run, 16, data=tmp_path / "missing.hdf5")


# ---- ONNX ------------------------------------------------------------------------------------------
def test_fp32_onnx_matches_torch(onnx_bundle, tiny_run):
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(onnx_bundle / "model_fp32.onnx"), full_check=True)
    m = load_bundle(onnx_bundle).manifest
    assert m.parity["model_fp32.onnx"]["rel_max"] <= 1e-4 and m.parity["model_fp32.onnx"]["within_budget"]
    sess = ort.InferenceSession(str(onnx_bundle / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    for k in (1, 5):  # dynamic K axis
        feeds = feeds_for(tiny_run, k)
        ref = torch_windows(tiny_run, feeds)
        out = sess.run(None, feeds)[0]
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-4


def test_int8_onnx_within_budget(onnx_bundle, tiny_run):
    b = load_bundle(onnx_bundle)
    f = b.select("onnx", "int8")
    rep = b.manifest.parity[f.path]
    # the gate's number, measured again here: could fail if quantisation went wrong
    assert 0 < rep["first_action_rms_frac"] <= 0.02 and rep["within_budget"]
    assert rep["ranking_agreement"] >= 0.5
    assert f.bytes < 0.4 * b.select("onnx", "fp32").bytes  # int8 weights: ~4x smaller
    assert "activations U8" in f.notes and "float layers" in f.notes
    assert [e["layer"] for e in rep["qdq_loss_debug"]]  # qdq_loss_debug ran and named layers
    # independent check of the int8 graph on fresh inputs, in action units
    import onnxruntime as ort

    feeds = feeds_for(tiny_run, K, seed=11)
    out = ort.InferenceSession(str(b.path(f)), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert 0 < first_action_rms_frac(b, out, torch_windows(tiny_run, feeds)) <= 0.02
    cal_info = b.manifest.source_checkpoint["calibration"]
    assert cal_info["samples"] == 64 and cal_info["file"] == "calibration.npz"
    from kdp_edge.bundle import sha256_file

    assert sha256_file(onnx_bundle / "calibration.npz") == cal_info["sha256"]
    assert len(CalibrationSet.load(onnx_bundle / "calibration.npz")) == 64


def test_closed_loop_parity_recorded(onnx_bundle):
    from export.closed_loop import available

    if not available("pointmaze-umaze")[0]:
        pytest.skip("sim extra not installed: closed-loop parity is skipped by the exporter too")
    m = load_bundle(onnx_bundle).manifest
    for name in ("model_fp32.onnx", "model_int8.onnx"):
        cl = m.parity[name]["closed_loop"]
        assert cl["episodes"] == 2 and cl["env"] == "pointmaze-umaze" and cl["protocol"] == "own-actions"
        assert {"score_mean", "torch_score_mean", "score_drop", "success_rate"} <= set(cl)
    fp32 = m.parity["model_fp32.onnx"]["closed_loop"]
    assert fp32["score_mean"] == pytest.approx(fp32["torch_score_mean"], abs=1e-6)  # same episodes, same noise


def test_bundle_round_trip_planner_matches_torch(onnx_bundle, tiny_run):
    from kdp_edge.runtime import Planner

    feeds = feeds_for(tiny_run, K, seed=7)
    ref = torch_windows(tiny_run, feeds)
    p = Planner.load(onnx_bundle, precision="fp32", warmup=1)
    plan = p.plan(feeds["obs"][0], feeds["goal"][0], noise=feeds["noise"])
    np.testing.assert_allclose(plan.candidates, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(plan.window, ref[plan.choice], rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    q = Planner.load(onnx_bundle, warmup=1)  # prefers int8
    assert q.model_file.precision == "int8"
    qplan = q.plan(feeds["obs"][0], feeds["goal"][0], noise=feeds["noise"])
    assert np.abs(qplan.candidates - ref).max() < 0.25 * np.abs(ref).max()


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-manifest", "schema"])
def test_corrupted_bundle_is_refused(onnx_bundle, tmp_path, damage):
    b = tmp_path / "b"
    shutil.copytree(onnx_bundle, b)
    model = b / "model_int8.onnx"
    if damage == "flip":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
        match = "sha256"
    elif damage == "truncate":
        model.write_bytes(model.read_bytes()[:1000])
        match = "truncated"
    elif damage == "no-manifest":
        (b / "bundle.json").unlink()
        match = "bundle.json is missing"
    else:
        m = json.loads((b / "bundle.json").read_text())
        m["schema_version"] = 99
        (b / "bundle.json").write_text(json.dumps(m))
        match = "schema version 99"
    with pytest.raises(BundleError, match=match) as exc:
        load_bundle(b)
    assert any(fix in str(exc.value) for fix in ("re-export", "re-run kdp-edge export", "copy"))  # names the fix


def test_gate_refuses_over_budget_and_force_writes(tiny_run, tmp_path):
    out = tmp_path / "refused"
    opts = ExportOptions(formats=["onnx"], quantize="int8", candidates=K, calib_samples=32, parity_conditions=8,
                         closed_loop_episodes=0, budget_first_action_frac=1e-7, keep_float="net.net.0")
    with pytest.raises(ExportError) as exc:
        export_bundle(tiny_run, out, opts, log=quiet)
    msg = str(exc.value)
    assert "exceeds the error budget" in msg and "% of the action range" in msg and "--force" in msg
    assert "[net.net.0]" in msg  # the float layers tried
    assert not out.exists() and not list(tmp_path.glob(".refused*"))  # nothing written, no temp dirs left
    # --force with the auto policy: tries all-int8, then the conditioning layer, then the worst
    # qdq_loss_debug layers one by one (at most max_float_layers more, at most half of the layers in
    # float: 2 of the MLP's 4), and keeps the best
    opts.force, opts.keep_float = True, "auto"
    export_bundle(tiny_run, out, opts, log=quiet)
    b = load_bundle(out)
    f = b.select("onnx", "int8")
    rep = b.manifest.parity[f.path]
    assert not rep["within_budget"] and "FORCED" in f.notes
    tried = [a["float_layers"] for a in rep["attempts"]]
    worst = [e["layer"] for e in rep["qdq_loss_debug"] if e["layer"] != "net.net.0"]
    assert tried == [[], ["net.net.0"], ["net.net.0", worst[0]]]
    best = min(rep["attempts"], key=lambda a: a["first_action_rms_frac"])
    assert rep["float_layers"] == best["float_layers"]
    assert rep["first_action_rms_frac"] == pytest.approx(best["first_action_rms_frac"], rel=1e-6)
    assert "float layers: " + (", ".join(best["float_layers"]) or "none") in f.notes


def test_dynamic_int8_and_int8_only(tiny_run, tmp_path):
    out = tmp_path / "dyn"
    export_bundle(tiny_run, out, ExportOptions(formats=["onnx"], quantize="dynamic", candidates=K, parity_conditions=8,
                                               closed_loop_episodes=0, int8_only=True), log=quiet)
    b = load_bundle(out)
    assert [(f.path, f.precision) for f in b.manifest.files] == [("model_int8_dynamic.onnx", "int8-dynamic")]
    assert b.manifest.parity["model_int8_dynamic.onnx"]["first_action_rms_frac"] <= 0.02
    import onnxruntime as ort  # the gate's number, measured again on fresh inputs

    feeds = feeds_for(tiny_run, K, seed=13)
    sess = ort.InferenceSession(str(out / "model_int8_dynamic.onnx"), providers=["CPUExecutionProvider"])
    assert 0 < first_action_rms_frac(b, sess.run(None, feeds)[0], torch_windows(tiny_run, feeds)) <= 0.02
    # (export.log: the exporting libraries' own output, kept out of the terminal; not a model file)
    assert sorted(p.name for p in out.iterdir() if p.name != "export.log") == ["bundle.json", "model_int8_dynamic.onnx"]


def test_unet_int8_keeps_conditioning_layers_float(tiny_run, tmp_path, monkeypatch):
    """U-Net graphs: pre-processing falls back when symbolic shape inference gives up (leaving no
    temp files behind), and the FiLM / condition-MLP Linears are found and kept float."""
    import onnx
    import onnxruntime as ort

    from export.int8_onnx import OnnxInt8Config, preprocess, quantize_static
    from export.layers import conditioning_layers
    from export.onnx_export import export_onnx
    from kdp_edge.checkpoint import load_run
    from kdp_edge.models import KDPGenerator, ModelConfig

    run = load_run(tiny_run)
    model = KDPGenerator(run.normalizer, 32, ModelConfig(arch="unet", channels=[16, 32], cond_dim=32)).eval()
    cond = conditioning_layers(model)
    assert "net.cond_mlp.0" in cond and "net.mid.film" in cond and all(".conv" not in c for c in cond)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    export_onnx(model, tmp_path / "u.onnx")
    pre = preprocess(tmp_path / "u.onnx", tmp_path / "u_pre.onnx")
    cal = draw_calibration(load_trajectories_of(run), 32, 6, 32, seed=0)
    nodes = quantize_static(pre, tmp_path / "u_int8.onnx", cal, OnnxInt8Config(float_layers=cond, batch=8))
    assert set(nodes) == set(cond)
    q = onnx.load(str(tmp_path / "u_int8.onnx"))
    dq_inputs = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    for node in q.graph.node:
        if node.name in nodes.values():  # float layers: no dequantised weight feeds them
            assert node.input[1] not in dq_inputs
    assert any(n.op_type == "DequantizeLinear" for n in q.graph.node)  # the rest is quantised
    feeds = feeds_for(tiny_run, 4)
    out = ort.InferenceSession(str(tmp_path / "u_int8.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert out.shape == (4, 32, 6) and np.isfinite(out).all()
    assert list(work.iterdir()) == []  # onnxruntime's sym_shape_infer_temp.onnx did not land in the cwd


def load_trajectories_of(run):
    from kdp_edge.data.readers import load_trajectories

    return load_trajectories(run.cfg.data.path)


# ---- TFLite ----------------------------------------------------------------------------------------
def test_tflite_export_without_extra_names_it(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"kdp-edge\[tflite\]"):
        export_bundle(tiny_run, tmp_path / "t", ExportOptions(formats=["tflite"]), log=quiet)
    assert not (tmp_path / "t").exists()


@pytest.fixture(scope="module")
def tflite_bundle(tiny_run, tmp_path_factory):
    pytest.importorskip("litert_torch", reason="the tflite extra is not installed (pip install 'kdp-edge[tflite]'); "
                                               "CI installs it")
    pytest.importorskip("ai_edge_quantizer", reason="the tflite extra is not installed")
    out = tmp_path_factory.mktemp("export_tflite") / "bundle"
    export_bundle(tiny_run, out, ExportOptions(formats=["tflite"], quantize="int8", candidates=K, calib_samples=64,
                                               parity_conditions=16, closed_loop_episodes=0), log=quiet)
    return out


def test_tflite_fp32_and_int8_parity(tflite_bundle, tiny_run):
    from export.tflite_export import TFLiteRunner

    b = load_bundle(tflite_bundle)
    names = {f.path: f for f in b.manifest.files}
    assert set(names) == {f"model_fp32_k{K}.tflite", f"model_int8_k{K}.tflite"}
    assert all(f.candidates == K and f.format == "tflite" for f in names.values())
    fp32, int8 = (b.manifest.parity[f"model_{p}_k{K}.tflite"] for p in ("fp32", "int8"))
    assert fp32["rel_max"] <= 1e-4
    assert 0 < int8["first_action_rms_frac"] <= 0.02 and int8["within_budget"]
    assert "global min/max" in names[f"model_int8_k{K}.tflite"].notes
    feeds = feeds_for(tiny_run, K, seed=3)
    ref = torch_windows(tiny_run, feeds)
    runner = TFLiteRunner(tflite_bundle / f"model_fp32_k{K}.tflite")
    assert runner.input_names == ["goal", "noise", "obs"] and runner.k == K  # named inputs, fixed K
    out = runner(feeds)
    assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-4
    int8_out = TFLiteRunner(tflite_bundle / f"model_int8_k{K}.tflite")(feeds)  # the gate's number, re-measured
    assert 0 < first_action_rms_frac(b, int8_out, ref) <= 0.02
    with pytest.raises(ValueError, match=f"K={K}"):
        runner({k: v[:3] for k, v in feeds.items()})


def test_tflite_dynamic_int8_parity_measured(tflite_bundle, tiny_run, tmp_path):
    """Dynamic-range int8 TFLite from the bundle's fp32 file, its parity measured here against torch."""
    from export.tflite_export import TFLiteRunner, quantize_tflite_dynamic

    dyn = quantize_tflite_dynamic(tflite_bundle / f"model_fp32_k{K}.tflite", tmp_path / f"model_int8dyn_k{K}.tflite")
    assert dyn.stat().st_size < 0.5 * (tflite_bundle / f"model_fp32_k{K}.tflite").stat().st_size  # int8 weights
    feeds = feeds_for(tiny_run, K, seed=17)
    assert 0 < first_action_rms_frac(load_bundle(tflite_bundle), TFLiteRunner(dyn)(feeds),
                                     torch_windows(tiny_run, feeds)) <= 0.02


def test_tflite_bundle_plans_through_runtime(tflite_bundle, tiny_run):
    try:
        from kdp_edge.runtime.tflite_backend import TFLiteBackend  # noqa: F401 (written by the runtime owner)
    except ImportError:
        pytest.skip("the runtime's TFLite backend is not in this build")
    from kdp_edge.runtime import Planner

    feeds = feeds_for(tiny_run, K, seed=9)
    ref = torch_windows(tiny_run, feeds)
    p = Planner.load(tflite_bundle, backend="tflite", precision="fp32", warmup=1)
    plan = p.plan(feeds["obs"][0], feeds["goal"][0], noise=feeds["noise"])
    np.testing.assert_allclose(plan.candidates, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


# ---- CLI -------------------------------------------------------------------------------------------
def test_cli_export_smoke(tiny_run, tmp_path, cli_env):
    out = tmp_path / "cli_bundle"
    r = subprocess.run(kdp_cmd("export", str(tiny_run), "--out", str(out), "--format", "onnx", "-k", "4",
                               "--closed-loop-episodes", "0"),
                       env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "export: ONNX fp32" in r.stderr and "bundle:" in r.stderr
    m = load_bundle(out).manifest
    assert m.default_candidates == 4 and [f.path for f in m.files] == ["model_fp32.onnx"]
    assert m.source_checkpoint["step"] == 200


def test_cli_int8_without_data_is_a_clear_error(tiny_run, tmp_path, cli_env):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for name, keys in (("config.json", ("data", "path")), ("run.json", ("data",))):
        d = json.loads((run / name).read_text())
        node = d
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = str(tmp_path / "gone.hdf5")
        (run / name).write_text(json.dumps(d))
    out = tmp_path / "b"
    r = subprocess.run(kdp_cmd("export", str(run), "--out", str(out), "--quantize", "int8"),
                       env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "calibration data" in r.stderr and "--data PATH" in r.stderr and "gone.hdf5" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
