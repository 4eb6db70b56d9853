"""The device runtime (kdp_edge.runtime): runs without torch, matches the exported model, the torch
model and the training-side planner's choice, rejects bad bundles and inputs clearly, maps TFLite
inputs robustly, and `kdp-edge bench` reports every field."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import BLOCK_TORCH, kdp_cmd

from kdp_edge.bundle import BundleError, ModelFile, load_bundle, write_manifest
from kdp_edge.errors import MissingExtraError
from kdp_edge.runtime import PlanInputError, Planner
from kdp_edge.runtime.bench import bench_conditions
from kdp_edge.runtime.host import cpu_info
from kdp_edge.runtime.macs import count_macs
from kdp_edge.runtime.planner import PlanOutputError
from kdp_edge.runtime.tflite_backend import load_interpreter_class, match_inputs, normalize_name

K = 4


def conditions(planner: Planner, n: int = 8, seed: int = 0):
    return bench_conditions(planner.manifest, n, seed)


# ---- (1) no torch on the device ---------------------------------------------------------------------
NO_TORCH = BLOCK_TORCH + textwrap.dedent("""
    from kdp_edge.runtime import Planner
    from kdp_edge.runtime.bench import BenchOptions, bench_conditions, run_bench
    import kdp_edge.runtime.tflite_backend  # importable without an interpreter installed

    p = Planner.load(sys.argv[1], threads=1)
    obs, goal = bench_conditions(p.manifest, 1)[0]
    plan = p.plan(obs, goal)
    assert plan.action.shape == (p.manifest.act_dim,), plan.action.shape
    assert plan.scores.shape == (p.k,) and plan.latency_ms > 0 and plan.model_ms > 0
    report, _ = run_bench(sys.argv[1], BenchOptions(candidates=[2], runs=5, warmup=1, progress=False))
    assert report["results"][0]["plan"]["n"] == 5
    try:
        import torch  # noqa: F401
        raise SystemExit("the blocker did not block torch")
    except ImportError:
        pass
    assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    print("planned without torch", plan.action.tolist())
""")


def test_runtime_plans_without_torch(tiny_bundle, cli_env):
    r = subprocess.run([sys.executable, "-c", NO_TORCH, str(tiny_bundle)], env=cli_env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "planned without torch" in r.stdout


# ---- (2) parity: exported model, torch model, training-side planner -----------------------------------
@pytest.fixture(scope="module")
def torch_model(tiny_run):
    pytest.importorskip("torch", reason="parity with the torch model needs the train extra")
    from kdp_edge.checkpoint import load_run

    run = load_run(tiny_run)
    return run, run.build_model(ema=True)


def test_generate_equals_onnx_session_and_torch(tiny_bundle, torch_model):
    import onnxruntime as ort
    import torch

    _, model = torch_model
    planner = Planner.load(tiny_bundle, candidates=K, warmup=2)
    sess = ort.InferenceSession(str(tiny_bundle / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    for obs, goal in conditions(planner, 3):
        noise = planner.sample_noise()
        feeds = planner.feeds(obs, goal, noise)
        got = planner.generate(obs, goal, noise)
        direct = sess.run(None, feeds)[0]
        np.testing.assert_allclose(got, direct, rtol=1e-6, atol=1e-6)
        with torch.no_grad():
            ref = model(*(torch.from_numpy(feeds[n]) for n in ("obs", "goal", "noise"))).numpy()
        assert got.shape == (K, planner.manifest.horizon, planner.manifest.window_dim)
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_evaluation_planner_is_the_device_planner(tiny_bundle, torch_model):
    """Evaluation plans through runtime.Planner with a torch backend: on the same noise it produces the
    device planner's windows (fp tolerance), scores, choice and action; plan_batch over E environments
    equals E single plans on the same noise rows."""
    from kdp_edge.planning import ScoringSpec, select_action
    from kdp_edge.torch_planner import run_planner

    run, model = torch_model
    device = Planner.load(tiny_bundle, precision="fp32", candidates=K, warmup=2)
    m = device.manifest
    assert device.scorer.spec == ScoringSpec.for_env(run.info.env)  # the bundle carries the training scorer
    evaluation = run_planner(run, K, ScoringSpec.for_env(run.info.env), model=model)
    assert type(evaluation) is Planner and evaluation.model_file.format == "torch"
    conds = conditions(device, 6, seed=1)
    obs = np.stack([o for o, _ in conds])
    goal = np.stack([g for _, g in conds])
    noise = np.random.default_rng(5).standard_normal((len(conds) * K, m.horizon, m.window_dim), dtype=np.float32)
    batch = evaluation.plan_batch(obs, goal, noise=noise)
    assert batch.candidates.shape == (len(conds), K, m.horizon, m.window_dim)
    assert batch.actions.shape == (len(conds), m.act_dim) and batch.choice.shape == (len(conds),)
    for i, (o, g) in enumerate(conds):
        rows = noise[i * K:(i + 1) * K]
        single = evaluation.plan(o, g, noise=rows)
        np.testing.assert_allclose(batch.candidates[i], single.candidates, rtol=1e-5, atol=1e-5)
        assert batch.choice[i] == single.choice
        on_device = device.plan(o, g, noise=rows)
        scale = np.abs(single.candidates).max()
        assert np.abs(on_device.candidates - single.candidates).max() <= 1e-4 * scale
        np.testing.assert_allclose(on_device.scores, single.scores, rtol=1e-4, atol=1e-4)
        assert on_device.choice == single.choice
        want = select_action(single.candidates[single.choice], o, m.action_slice, m.protocol, m.lookahead)
        np.testing.assert_allclose(on_device.action, np.clip(want, m.action_low, m.action_high), atol=1e-4)
        np.testing.assert_array_equal(on_device.window, on_device.candidates[on_device.choice])


def test_plan_batch_rejects_bad_rows(tiny_bundle):
    p = Planner.load(tiny_bundle, candidates=K, warmup=1)
    m = p.manifest
    obs = np.zeros((3, m.obs_dim), np.float32)
    goal = np.zeros((3, m.goal_dim), np.float32)
    with pytest.raises(PlanInputError, match=r"goal has shape \[2, 2\].*\[3, 2\]"):
        p.plan_batch(obs, goal[:2])
    bad = obs.copy()
    bad[1, 0] = np.nan
    with pytest.raises(PlanInputError, match=r"NaN or inf in row\(s\) \[1\]"):
        p.plan_batch(bad, goal)
    with pytest.raises(PlanInputError, match="noise has shape"):
        p.plan_batch(obs, goal, noise=np.zeros((K, m.horizon, m.window_dim), np.float32))


# ---- (3) bad bundles and bad inputs ----------------------------------------------------------------
def test_bad_bundles_raise_bundle_error(tiny_bundle, tmp_path):
    with pytest.raises(BundleError, match="not found.*kdp-edge export"):
        Planner.load(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="bundle.json is missing"):
        Planner.load(empty)
    bad = tmp_path / "corrupt"
    shutil.copytree(tiny_bundle, bad)
    data = bytearray((bad / "model_fp32.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model_fp32.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        Planner.load(bad)
    (bad / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Planner.load(bad)
    with pytest.raises(BundleError, match="unknown backend"):
        Planner.load(tiny_bundle, backend="tensorrt")
    with pytest.raises(BundleError, match="no onnx int8.*kdp-edge export"):
        Planner.load(tiny_bundle, precision="int8")
    with pytest.raises(BundleError, match="no tflite"):
        Planner.load(tiny_bundle, backend="tflite")


def test_bad_inputs_raise_plan_input_error(tiny_bundle):
    planner = Planner.load(tiny_bundle, candidates=K, warmup=1)
    m = planner.manifest
    obs, goal = conditions(planner, 1)[0]
    with pytest.raises(PlanInputError, match=f"obs has {m.obs_dim + 1} values.*expects {m.obs_dim}"):
        planner.plan(np.zeros(m.obs_dim + 1), goal)
    with pytest.raises(PlanInputError, match="goal has 1 values"):
        planner.plan(obs, np.zeros(1))
    with pytest.raises(PlanInputError, match="goal is missing"):
        planner.plan(obs, None)
    with pytest.raises(PlanInputError, match="not numeric"):
        planner.plan(["a"] * m.obs_dim, goal)
    for bad in (np.nan, np.inf):
        x = obs.copy()
        x[1] = bad
        with pytest.raises(PlanInputError, match="NaN or inf"):
            planner.plan(x, goal)
        with pytest.raises(PlanInputError, match="NaN or inf"):
            planner.plan(obs, np.full(m.goal_dim, bad))
    with pytest.raises(PlanInputError, match="noise has shape"):
        planner.plan(obs, goal, noise=np.zeros((K + 1, m.horizon, m.window_dim), np.float32))
    assert planner.plan(obs.tolist(), goal.tolist()).action.shape == (m.act_dim,)  # lists are fine


def test_non_finite_model_output_is_never_chosen(tiny_bundle):
    planner = Planner.load(tiny_bundle, candidates=K, warmup=1)
    obs, goal = conditions(planner, 1)[0]
    real = planner.backend

    def half_nan(feeds):
        w = real(feeds)
        w[: K - 1, 3] = np.nan
        return w

    planner.backend = half_nan
    plan = planner.plan(obs, goal)
    assert plan.choice == K - 1 and np.isneginf(plan.scores[: K - 1]).all() and np.isfinite(plan.action).all()
    planner.backend = lambda feeds: np.full_like(real(feeds), np.nan)
    with pytest.raises(PlanOutputError, match="NaN/inf for all"):
        planner.plan(obs, goal)
    assert issubclass(PlanOutputError, PlanInputError)  # one `except PlanInputError` in the loop covers it


# ---- (4) TFLite -----------------------------------------------------------------------------------------
def test_match_inputs_by_name_position_and_shape():
    want = {"obs": (16, 4), "goal": (16, 2), "noise": (16, 32, 6)}
    assert normalize_name("serving_default_obs:0") == "obs"
    by_name = {"serving_default_noise:0": (16, 32, 6), "serving_default_obs:0": (16, 4), "serving_default_goal:0": (16, 2)}
    assert match_inputs(want, by_name) == {"obs": "serving_default_obs:0", "goal": "serving_default_goal:0",
                                           "noise": "serving_default_noise:0"}
    positional = {"args_2": (16, 32, 6), "args_0": (16, 4), "args_1": (16, 2)}  # litert-torch, any order
    assert match_inputs(want, positional) == {"obs": "args_0", "goal": "args_1", "noise": "args_2"}
    by_shape = {"x": (16, 2), "y": (16, 32, 6), "z": (-1, 4)}  # no usable names: unique shapes decide
    assert match_inputs(want, by_shape) == {"obs": "z", "goal": "x", "noise": "y"}
    square = {"obs": (16, 2), "goal": (16, 2), "noise": (16, 32, 4)}
    with pytest.raises(BundleError, match="cannot tell which input is 'obs'"):
        match_inputs(square, {"a": (16, 2), "b": (16, 2), "c": (16, 32, 4)})
    assert match_inputs(square, {"args_1": (16, 2), "args_0": (16, 2), "args_2": (16, 32, 4)})["obs"] == "args_0"
    with pytest.raises(BundleError, match="has shape \\[8, 4\\], expected \\[16, 4\\]"):
        match_inputs(want, {"obs": (8, 4), "goal": (16, 2), "noise": (16, 32, 6)})
    with pytest.raises(BundleError, match="2 inputs"):
        match_inputs(want, {"obs": (16, 4), "noise": (16, 32, 6)})


def test_tflite_missing_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'kdp-edge\[litert\]'"):
        load_interpreter_class()


CONVERT = textwrap.dedent("""
    import sys
    import litert_torch
    import torch
    from kdp_edge.checkpoint import load_run

    run_dir, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = load_run(run_dir).build_model(ema=True)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(k, model.obs_dim, generator=g)
    goal = torch.randn(k, model.goal_dim, generator=g)
    noise = torch.randn(k, model.horizon, model.window_dim, generator=g)
    # positional (inputs named args_0.. by litert-torch) and keyword (named obs/goal/noise) exports
    litert_torch.convert(model, (obs, goal, noise)).export(f"{out}/model_fp32_k{k}.tflite")
    litert_torch.convert(model, sample_kwargs={"noise": noise, "goal": goal, "obs": obs}).export(f"{out}/kw_k{k}.tflite")
""")


@pytest.fixture(scope="module")
def tflite_bundle(tiny_run, tiny_bundle, tmp_path_factory, cli_env):
    pytest.importorskip("ai_edge_litert", reason="the tflite backend needs the litert extra: pip install 'kdp-edge[litert]'")
    pytest.importorskip("litert_torch", reason="making a .tflite file needs the tflite extra (litert-torch)")
    out = tmp_path_factory.mktemp("tfl") / "bundle"
    shutil.copytree(tiny_bundle, out)
    r = subprocess.run([sys.executable, "-c", CONVERT, str(tiny_run), str(out), str(K)], env=cli_env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    b = load_bundle(out)
    b.manifest.files.append(ModelFile(f"model_fp32_k{K}.tflite", "tflite", "fp32", candidates=K))
    write_manifest(out, b.manifest)
    return out


def test_tflite_backend_matches_onnx(tflite_bundle):
    from kdp_edge.runtime.tflite_backend import TFLiteBackend

    onnx_p = Planner.load(tflite_bundle, candidates=K, warmup=1)
    tfl_p = Planner.load(tflite_bundle, backend="tflite", candidates=K, threads=1, warmup=1)
    assert tfl_p.model_file.format == "tflite" and tfl_p.backend.candidates == K
    assert tfl_p.backend.input_names == list(tfl_p.manifest.inputs)
    kw = TFLiteBackend(tflite_bundle / f"kw_k{K}.tflite", threads=1)  # named inputs, mapped on first call
    for obs, goal in conditions(onnx_p, 3):
        noise = onnx_p.sample_noise()
        ref = onnx_p.generate(obs, goal, noise)
        scale = np.abs(ref).max()
        assert np.abs(tfl_p.generate(obs, goal, noise) - ref).max() <= 1e-4 * scale
        assert np.abs(kw(onnx_p.feeds(obs, goal, noise)) - ref).max() <= 1e-4 * scale
        a, b = onnx_p.plan(obs, goal, noise=noise), tfl_p.plan(obs, goal, noise=noise)
        assert a.choice == b.choice
        np.testing.assert_allclose(a.action, b.action, atol=1e-4)
    with pytest.raises(BundleError, match="no tflite .*K=16.*--candidates 16"):
        Planner.load(tflite_bundle, backend="tflite", candidates=16)
    with pytest.raises(BundleError, match=f"exported for K={K}"):
        tfl_p.backend(onnx_p.feeds(obs, goal, np.zeros((K + 1, *noise.shape[1:]), np.float32)))


def test_bench_tflite_skips_missing_k(tflite_bundle):
    from kdp_edge.runtime.bench import BenchOptions, run_bench

    report, _ = run_bench(tflite_bundle, BenchOptions(backends=["onnx", "tflite"], candidates=[K, 16], runs=20,
                                                      warmup=2, progress=False))
    rows = {(r["backend"], r["k"]) for r in report["results"]}
    assert rows == {("onnx", K), ("tflite", K), ("onnx", 16)}
    assert any("no tflite fp32 file for K=16" in n for n in report["notes"])


# ---- (5) kdp-edge bench ------------------------------------------------------------------------------
def test_cpu_info_parses_x86_and_arm():
    x86 = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"
    info = cpu_info(x86)
    assert info["model"] == "Test CPU" and info["flags"]["avx512_vnni"] and not info["flags"]["avx_vnni"]
    assert info["int8_dot_product"] is True
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU part\t: 0xd08\n"
    info = cpu_info(arm)
    assert info["flags"]["asimd"] and not info["flags"]["asimddp"] and info["int8_dot_product"] is False
    assert cpu_info("")["flags"] == {} and cpu_info("")["int8_dot_product"] is None  # non-Linux: degrade


def test_count_macs_of_mlp(tiny_bundle):
    onnx = pytest.importorskip("onnx", reason="counting MACs needs the onnx package (train extra)")
    m = onnx.load(str(tiny_bundle / "model_fp32.onnx"))
    weights = {t.name: t.dims for t in m.graph.initializer}
    want = sum(int(np.prod(weights[n.input[1]])) for n in m.graph.node if n.op_type in ("Gemm", "MatMul"))
    got = count_macs(tiny_bundle / "model_fp32.onnx")
    assert got["complete"] and got["macs_per_candidate"] == want > 0


def test_bench_cli_smoke(tiny_bundle, tmp_path, cli_env):
    out, png = tmp_path / "bench.json", tmp_path / "hist.png"
    r = subprocess.run(kdp_cmd("bench", str(tiny_bundle), "--backend", "onnx,torch", "-k", "1,4", "--runs", "30",
                               "--warmup", "3", "--rate", "50", "--compare", str(tiny_bundle), "--out", str(out),
                               "--plot", str(png), "--quiet"),
                       env=cli_env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert "| model | K | plan p50" in r.stdout
    rep = json.loads(out.read_text())
    for key in ("bundle", "compare", "options", "host", "versions", "results", "ratios", "peak_rss_mb", "command"):
        assert key in rep, key
    assert rep["host"]["model"] and "flags" in rep["host"]
    assert {(x["which"], x["backend"], x["k"]) for x in rep["results"]} == {
        (w, b, k) for k in (1, 4) for w, b in (("bundle", "onnx"), ("bundle", "torch"), ("compare", "onnx"))}
    for x in rep["results"]:
        for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
            assert x["plan"][key] > 0 and x["model"][key] > 0 and x["plan_cpu"][key] > 0
        assert x["plan"]["n"] == 30 and x["throughput_plans_per_s"] > 0 and x["deadline_ms"] == 20.0
        assert x["model_bytes"] > 0 and x["macs_per_plan"] > 0
        misses, n, worst = x["deadline_misses"], x["plan"]["n"], x["plan"]["max_ms"]
        assert isinstance(misses, int) and 0 <= misses <= n and x["deadline_miss_rate"] == misses / n
        if worst < x["deadline_ms"] - 0.01:  # counted against the deadline, whatever the machine's load
            assert misses == 0
        elif worst > x["deadline_ms"] + 0.01:
            assert misses >= 1
    kinds = {x["kind"] for x in rep["ratios"]}
    assert {"compare/bundle", "onnx fp32/torch"} <= kinds
    assert out.with_suffix(".md").read_text().startswith("Command: `kdp-edge bench")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_cli_clear_errors(tiny_bundle, tmp_path, cli_env):
    r = subprocess.run(kdp_cmd("bench", str(tiny_bundle), "--precision", "int8", "--runs", "2"), env=cli_env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--quantize int8" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(kdp_cmd("bench", str(tmp_path / "missing")), env=cli_env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "bundle directory not found" in r.stderr
    r = subprocess.run(kdp_cmd("bench", str(tiny_bundle), "-k", "0"), env=cli_env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "at least 1" in r.stderr


def test_noise_is_drawn_per_plan_from_the_seeded_generator(tiny_bundle):
    from kdp_edge.runtime import Planner

    p = Planner.load(tiny_bundle, seed=7, warmup=0)
    rng = np.random.default_rng(7)
    m = p.manifest
    for _ in range(5):
        np.testing.assert_array_equal(p.sample_noise(), rng.standard_normal((p.k, m.horizon, m.window_dim),
                                                                             dtype=np.float32))
