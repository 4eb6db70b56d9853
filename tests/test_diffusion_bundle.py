"""Diffusion bundles (export/denoiser.py + kdp_edge/runtime/diffusion.py): the exported denoiser
with the runtime's numpy sampler reproduces the torch DiffusionGenerator on the same noise, runs
without torch, is benchmarked against a KDP bundle, and bad bundles fail clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import BLOCK_TORCH, kdp_cmd

from kdp_edge.bundle import BundleError
from kdp_edge.runtime import DiffusionPlanner, Planner
from kdp_edge.runtime.bench import bench_conditions

K = 4
T_BUNDLE = 5


@pytest.fixture(scope="module")
def diffusion_bundle(tmp_path_factory, tiny_diffusion_run, cli_env):
    out = tmp_path_factory.mktemp("diffusion_bundle") / "bundle"
    r = subprocess.run(kdp_cmd("export", str(tiny_diffusion_run), "--out", str(out), "--sample-steps", str(T_BUNDLE),
                               "--closed-loop-episodes", "0"), env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def diffusion_model(tiny_diffusion_run):
    pytest.importorskip("torch", reason="parity with the torch model needs the train extra")
    from kdp_edge.checkpoint import load_run

    return load_run(tiny_diffusion_run).build_model(ema=True)


def test_manifest(diffusion_bundle):
    m = json.loads((diffusion_bundle / "bundle.json").read_text())
    assert m["method"] == "diffusion" and [f["role"] for f in m["files"]] == ["denoiser"]
    assert m["inputs"] == ["x_t", "t", "obs", "goal"] and m["outputs"] == ["x0"]
    d = m["diffusion"]
    assert d["sampler"] == "ddim" and d["sample_steps"] == T_BUNDLE and d["units"] == "normalized"
    assert len(d["alphas_cumprod"]) == d["timesteps"] == 256
    par = m["parity"][m["files"][0]["path"]]
    assert par["within_budget"] and set(par["by_sample_steps"]) == {"5", "20"}
    for rep in par["by_sample_steps"].values():
        assert rep["max_abs"] < 1e-4 and rep["rms"] < 1e-5
    assert par["denoiser_pass"]["max_abs"] < 1e-4


def test_schedule_matches_torch(diffusion_bundle):
    from kdp_edge.diffusion import NoiseSchedule
    from kdp_edge.runtime.diffusion import load_denoiser_sampler

    ref = NoiseSchedule("cosine", 256)
    s = load_denoiser_sampler(diffusion_bundle).schedule
    np.testing.assert_array_equal(s.alphas_cumprod, ref.alphas_cumprod)  # exact through JSON
    for steps in (1, 2, 5, 7, 20, 33, 100, 256):
        assert s.sampling_timesteps(steps) == ref.sampling_timesteps(steps)
    for t, tp, eta in ((255, 200, 0.0), (50, 49, 1.0), (3, -1, 0.0)):
        assert s.step_coefficients(t, tp, eta) == ref.step_coefficients(t, tp, eta)


@pytest.mark.parametrize("steps", [5, 20])
def test_runtime_equals_torch_forward(diffusion_bundle, diffusion_model, steps):
    import torch

    p = Planner.load(diffusion_bundle, candidates=K, sample_steps=steps, warmup=1)
    assert isinstance(p, DiffusionPlanner) and p.passes == steps and f"T={steps}" in p.describe()
    diffusion_model.set_sampler("ddim", steps)
    rng = np.random.default_rng(steps)
    for obs, goal in bench_conditions(p.manifest, 3, seed=steps):
        noise = rng.standard_normal((K, p.manifest.horizon, p.manifest.window_dim), dtype=np.float32)
        got = p.generate(obs, goal, noise)
        with torch.no_grad():
            ref = diffusion_model(*(torch.from_numpy(np.repeat(x[None], K, 0)) for x in (obs, goal)),
                                  torch.from_numpy(noise)).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        plan = p.plan(obs, goal, noise)
        np.testing.assert_array_equal(plan.candidates, got)  # plan() is generate() + the Planner's selection
        assert 0 < plan.model_ms <= plan.latency_ms and plan.action.shape == (p.manifest.act_dim,)
    assert Planner.load(diffusion_bundle, warmup=0).passes == T_BUNDLE  # the bundle's default T


NO_TORCH = BLOCK_TORCH + textwrap.dedent("""
    from kdp_edge.runtime import DiffusionPlanner, Planner
    from kdp_edge.runtime.bench import bench_conditions

    p = Planner.load(sys.argv[1], threads=1, candidates=8, warmup=1)
    assert isinstance(p, DiffusionPlanner), type(p)
    obs, goal = bench_conditions(p.manifest, 1)[0]
    plan = p.plan(obs, goal)
    assert plan.scores.shape == (8,) and plan.model_ms > 0
    assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    print("diffusion planned without torch", p.passes)
""")


def test_runtime_without_torch(diffusion_bundle, cli_env):
    r = subprocess.run([sys.executable, "-c", NO_TORCH, str(diffusion_bundle)], env=cli_env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"diffusion planned without torch {T_BUNDLE}" in r.stdout


def test_bench_kdp_vs_diffusion(tiny_bundle, diffusion_bundle, tmp_path, cli_env):
    out = tmp_path / "vs.json"
    r = subprocess.run(kdp_cmd("bench", str(tiny_bundle), "--compare", str(diffusion_bundle), "--runs", "20", "-k", "16",
                               "--precision", "fp32", "--warmup", "5", "--quiet", "--out", str(out)),
                       env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    vs = [x for x in rep["ratios"] if x["kind"] == "compare/bundle" and x["k"] == 16]
    assert len(vs) == 1 and vs[0]["latency_ratio_p50"] > 1, rep["ratios"]
    kdp, diff = (next(x for x in rep["results"] if x["which"] == w) for w in ("bundle", "compare"))
    assert diff["file"] == "denoiser_fp32.onnx" and diff["macs_per_plan"] > kdp["macs_per_plan"]


def test_bad_bundles(diffusion_bundle, tiny_bundle, tmp_path):
    def edited(name, change):
        b = tmp_path / name
        shutil.copytree(diffusion_bundle, b)
        m = json.loads((b / "bundle.json").read_text())
        change(m)
        (b / "bundle.json").write_text(json.dumps(m))
        return b

    with pytest.raises(BundleError, match="alphas_cumprod"):
        Planner.load(edited("short", lambda m: m["diffusion"].update(alphas_cumprod=m["diffusion"]["alphas_cumprod"][:9])))
    with pytest.raises(BundleError, match="'diffusion' dict"):
        Planner.load(edited("nodict", lambda m: m.update(diffusion={})))
    with pytest.raises(BundleError, match="do not match"):
        Planner.load(edited("horizon", lambda m: m.update(horizon=16)))
    with pytest.raises(BundleError, match=r"1\.\.256"):
        Planner.load(diffusion_bundle, sample_steps=257)
    with pytest.raises(BundleError, match="ONNX denoiser only"):
        Planner.load(diffusion_bundle, backend="tflite")
    with pytest.raises(BundleError, match="not a diffusion bundle"):
        DiffusionPlanner.load(tiny_bundle)
    bad = tmp_path / "corrupt"
    shutil.copytree(diffusion_bundle, bad)
    with open(bad / "denoiser_fp32.onnx", "r+b") as fh:
        fh.seek(-16, 2)
        fh.write(b"\xff" * 16)
    with pytest.raises(BundleError, match="sha256"):
        Planner.load(bad)


def test_export_refuses_int8_and_tflite(tiny_diffusion_run, tmp_path):
    pytest.importorskip("torch")
    from export.pipeline import ExportError, ExportOptions, export_bundle

    with pytest.raises(ExportError, match="fp32 ONNX denoiser only"):
        export_bundle(tiny_diffusion_run, tmp_path / "b", ExportOptions(quantize="dynamic"), log=lambda m: None)
    with pytest.raises(ExportError, match="sample-steps 999"):
        export_bundle(tiny_diffusion_run, tmp_path / "b", ExportOptions(sample_steps=999), log=lambda m: None)
    assert not (tmp_path / "b").exists()
