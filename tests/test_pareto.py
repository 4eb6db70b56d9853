"""Score per millisecond (#29): the frontier / best-under-budget logic on synthetic numbers, and
bench/pareto.py + kdp-edge pareto end to end on tiny runs (grid, files, provenance; no timing
assertions), and bad input exiting 2 with a clear message."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from kdp_edge.runtime.pareto import (
    attach_scores,
    best_per_budget,
    best_under_budget,
    budgets,
    config_label,
    pareto_frontier,
)
from tests.conftest import ROOT, kdp_cmd

SCRIPT = ROOT / "bench" / "pareto.py"


def pt(family, config, p50, score, p99=None):
    return {"family": family, "config": config, "p50_ms": p50, "p99_ms": p99 if p99 is not None else 2 * p50,
            "score": score}


# ---- synthetic: frontier and budgets ----------------------------------------------------------------
def test_best_under_budget_picks_the_best_score_that_fits_per_family():
    pts = [pt("kdp", "K=1", 0.3, 160.0), pt("kdp", "K=16", 0.9, 170.0), pt("kdp", "K=64", 3.0, 169.0),
           pt("diff", "T=2 K=1", 0.8, 150.0), pt("diff", "T=20 K=16", 12.0, 178.0), pt("diff", "T=5 K=16", 4.0, 176.0)]
    best = best_under_budget(pts, 1.0)
    assert best["kdp"]["config"] == "K=16" and best["diff"]["config"] == "T=2 K=1"
    best = best_under_budget(pts, 5.0)
    assert best["kdp"]["config"] == "K=16" and best["diff"]["config"] == "T=5 K=16"  # K=64 is slower and worse
    assert best_under_budget(pts, 20.0)["diff"]["config"] == "T=20 K=16"
    assert best_under_budget(pts, 4.0)["diff"]["config"] == "T=5 K=16"  # the budget is inclusive
    # p99 as the latency: 2 x p50 here
    assert best_under_budget(pts, 1.0, latency="p99_ms")["kdp"]["config"] == "K=1"


def test_budget_nobody_meets_maps_every_family_to_none():
    pts = [pt("kdp", "K=1", 0.3, 160.0), pt("diff", "T=2 K=1", 0.8, 150.0)]
    assert best_under_budget(pts, 0.1) == {"kdp": None, "diff": None}
    rows = best_per_budget(pts, budgets([0.1, 0.5], []))
    assert rows[0]["winners"] == [] and rows[0]["best"] == {"kdp": None, "diff": None}
    assert rows[1]["winners"] == ["kdp"] and rows[1]["best"]["diff"] is None  # only one family fits 0.5 ms


def test_ties_go_to_the_faster_config_then_the_first_listed():
    pts = [pt("kdp", "K=8", 0.6, 170.0), pt("kdp", "K=4", 0.4, 170.0), pt("kdp", "K=2", 0.4, 170.0)]
    assert best_under_budget(pts, 1.0)["kdp"]["config"] == "K=4"  # faster than K=8, listed before K=2
    # equal best scores of two families: both are winners
    rows = best_per_budget(pts + [pt("diff", "T=2 K=1", 0.9, 170.0)], budgets([1.0], []))
    assert rows[0]["winners"] == ["diff", "kdp"]


def test_points_without_score_or_latency_are_ignored():
    pts = [pt("kdp", "K=1", 0.3, None), pt("kdp", "K=2", float("nan"), 180.0), pt("kdp", "K=4", 0.5, 150.0),
           pt("diff", "T=2 K=1", 0.2, float("nan"))]
    assert best_under_budget(pts, 10.0) == {"kdp": pts[2]}
    assert [p["config"] for p in pareto_frontier(pts)] == ["K=4"]


def test_pareto_frontier_keeps_only_non_dominated_points_fastest_first():
    pts = [pt("d", "a", 5.0, 170.0), pt("d", "b", 1.0, 150.0), pt("d", "c", 2.0, 149.0), pt("d", "e", 1.0, 155.0),
           pt("d", "f", 9.0, 170.0), pt("d", "g", 10.0, 171.0)]
    assert [p["config"] for p in pareto_frontier(pts)] == ["e", "a", "g"]
    assert pareto_frontier([]) == []


def test_budgets_merge_control_periods_with_milliseconds():
    b = budgets([1, 2, 5, 10, 20], [50, 100, 200])
    assert [x["ms"] for x in b] == [1, 2, 5, 10, 20]  # 200 / 100 / 50 Hz are the 5 / 10 / 20 ms budgets
    assert b[2]["label"] == "5 ms (200 Hz)" and b[4]["rates_hz"] == [50.0] and b[0]["label"] == "1 ms"
    assert [x["ms"] for x in budgets([], [30])] == [pytest.approx(1e3 / 30)]
    assert config_label("drift", 16) == "K=16" and config_label("diffusion", 4, 20) == "T=20 K=4"


def test_scores_of_another_task_are_refused():
    from kdp_edge.errors import KDPError

    rows = [{"method": "kdp", "k": 1, "t": None, "label": "x"}]
    report = {"task": "pointmaze-large", "scores": [{"method": "kdp", "k": 1, "t": None, "score": 1.0, "score_sem": 0.1}]}
    with pytest.raises(KDPError, match="pointmaze-large"):
        attach_scores(rows, report, "pointmaze-umaze")
    attach_scores(rows, report, "pointmaze-large")
    assert rows[0]["score"] == 1.0


# ---- end to end on tiny runs ------------------------------------------------------------------------
KDP_K, DIFF_T, DIFF_K = [1, 2], [2, 3], [1, 2]


@pytest.fixture(scope="module")
def pareto_report(tmp_path_factory, tiny_run, tiny_diffusion_run, cli_env):
    out = tmp_path_factory.mktemp("pareto")
    r = subprocess.run([sys.executable, str(SCRIPT), "--kdp", str(tiny_run), "--diffusion", str(tiny_diffusion_run),
                        "--episodes", "2", "--kdp-k", ",".join(map(str, KDP_K)), "--diffusion-t", ",".join(map(str, DIFF_T)),
                        "--diffusion-k", ",".join(map(str, DIFF_K)), "--formats", "onnx", "--runs", "5", "--warmup", "1",
                        "--out", str(out), "--quiet"], env=cli_env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out


def test_bench_pareto_writes_the_whole_grid_with_provenance(pareto_report):
    out = pareto_report
    rep = json.loads((out / "pointmaze-umaze.json").read_text())
    assert rep["provenance"]["command"].startswith("python bench/pareto.py") and len(rep["provenance"]["commit"]) == 40
    assert rep["task"] == "pointmaze-umaze" and rep["protocol"]["episodes"] == 2
    got = {(p["family"], p["config"]) for p in rep["points"]}
    want = ({(f"KDP onnx {prec}", f"K={k}") for prec in ("fp32", "int8") for k in KDP_K}
            | {("diffusion onnx fp32", f"T={t} K={k}") for t in DIFF_T for k in DIFF_K})
    assert got == want and len(rep["points"]) == len(want)
    assert {(s["method"], s["k"], s["t"]) for s in rep["scores"]} == (
        {("kdp", k, None) for k in KDP_K} | {("diffusion", k, t) for t in DIFF_T for k in DIFF_K})
    assert all(math.isfinite(p["score"]) and p["p50_ms"] > 0 and p["p99_ms"] >= p["p50_ms"] for p in rep["points"])
    assert all(len(s["per_seed"]) == 1 and s["seeds"] == 1 for s in rep["scores"])
    assert rep["latency"]["torch_imported_during_timing"] is False
    assert all(r["plan"]["n"] == 5 for r in rep["latency"]["rows"])  # --runs timed plans each
    # best per budget: one row per budget, every family present, consistent with the points
    for lat in ("p50_ms", "p99_ms"):
        rows = rep["best_by_family"][lat]
        assert [b["budget_ms"] for b in rows] == [0.25, 0.5, 1, 2, 5, 10, 20]
        for b in rows:
            for fam, p in b["best"].items():
                fits = [q for q in rep["points"] if q["family"] == fam and q[lat] <= b["budget_ms"]]
                assert (p is None) == (not fits)
                if p is not None:
                    assert p[lat] <= b["budget_ms"] and p["score"] == max(q["score"] for q in fits)
        assert set(rep["best_by_method"][lat][0]["best"]) == {"KDP", "diffusion"}
    md = (out / "pointmaze-umaze.md").read_text()
    assert md.startswith("# Score per millisecond: pointmaze-umaze") and "Command: `python bench/pareto.py" in md
    assert "## Best score within a latency budget (p50 plan latency)" in md and "10 ms (100 Hz)" in md
    png = out / "pointmaze-umaze.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bundles = sorted(p.name for p in (out / "bundles").iterdir())
    assert len(bundles) == 2 and (out / "work" / "pointmaze-umaze-scores.json").exists()


def test_a_second_call_reuses_bundles_and_cached_scores(pareto_report, tiny_run, cli_env):
    r = subprocess.run([sys.executable, str(SCRIPT), "--kdp", str(tiny_run), "--episodes", "2", "--kdp-k", "1",
                        "--formats", "onnx", "--runs", "3", "--warmup", "0", "--out", str(pareto_report), "--tag", "again",
                        "--no-plot", "--quiet"], env=cli_env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "reused" in r.stdout and "exporting" not in r.stdout and "score 1/1" not in r.stdout
    rep = json.loads((pareto_report / "pointmaze-umaze-again.json").read_text())
    first = json.loads((pareto_report / "pointmaze-umaze.json").read_text())
    same = [s for s in first["scores"] if s["method"] == "kdp" and s["k"] == 1]
    assert rep["scores"][0]["score"] == same[0]["score"]


def test_kdp_edge_pareto_on_the_bundles_with_and_without_scores(pareto_report, cli_env, tmp_path):
    bundles = sorted(str(p) for p in (pareto_report / "bundles").iterdir())
    base = kdp_cmd("pareto", *bundles, "-k", "1,2", "-t", "2", "--diffusion-candidates", "1", "--backend", "onnx",
                   "--runs", "5", "--warmup", "1", "--rate", "100", "--quiet")
    r = subprocess.run(base + ["--out", str(tmp_path / "lat.json"), "--plot", str(tmp_path / "lat.png")],
                       env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "lat.json").read_text())
    assert {(x["family"], x["config"]) for x in rep["rows"]} == (
        {(f"KDP onnx {p}", f"K={k}") for p in ("fp32", "int8") for k in (1, 2)} | {("diffusion onnx fp32", "T=2 K=1")})
    assert "provenance" in rep and [b["label"] for b in rep["budgets"]][-1] == "10 ms (100 Hz)"
    assert (tmp_path / "lat.png").read_bytes()[:4] == b"\x89PNG" and "10 ms (100 Hz)" in r.stdout
    assert "best score" not in r.stdout  # no scores without --scores
    r = subprocess.run(base + ["--scores", str(pareto_report / "pointmaze-umaze.json"), "--out", str(tmp_path / "s.json"),
                               "--plot", str(tmp_path / "s.png")], env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "s.json").read_text())
    assert all(x["score"] is not None for x in rep["rows"]) and "best score within each budget" in r.stdout
    assert (tmp_path / "s.md").read_text().startswith("Command: `kdp-edge pareto")


# ---- bad input --------------------------------------------------------------------------------------
def _script(*args, env):
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--out", "/nonexistent-should-not-be-written"],
                          env=env, capture_output=True, text=True, cwd=ROOT)


def test_missing_run_exits_2_with_the_path(cli_env, tmp_path):
    r = _script("--kdp", str(tmp_path / "nope"), env=cli_env)
    assert r.returncode == 2 and "run directory not found" in r.stderr and "nope" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_of_the_wrong_method_exits_2_and_names_the_right_flag(cli_env, tiny_run, tiny_diffusion_run):
    r = _script("--kdp", str(tiny_diffusion_run), env=cli_env)
    assert r.returncode == 2 and "diffusion run" in r.stderr and "--diffusion" in r.stderr
    r = _script("--diffusion", str(tiny_run), env=cli_env)
    assert r.returncode == 2 and "drift run" in r.stderr and "--kdp" in r.stderr
    r = _script("--kdp", str(tiny_run), "--require-step", "10000000", env=cli_env)
    assert r.returncode == 2 and "--require-step" in r.stderr
    r = _script("--kdp", str(tiny_run), "--task", "pusht", env=cli_env)
    assert r.returncode == 2 and "pointmaze-umaze" in r.stderr
    r = _script(env=cli_env)
    assert r.returncode == 2 and "at least one run" in r.stderr
    assert not Path("/nonexistent-should-not-be-written").exists()


def test_cli_pareto_refuses_scores_of_another_task_and_bad_bundles(pareto_report, cli_env, tmp_path):
    bundle = next(p for p in (pareto_report / "bundles").iterdir() if p.name.startswith("run"))
    other = json.loads((pareto_report / "pointmaze-umaze.json").read_text()) | {"task": "pointmaze-large"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    r = subprocess.run(kdp_cmd("pareto", str(bundle), "-k", "1", "--backend", "onnx", "--runs", "2", "--quiet",
                               "--scores", str(tmp_path / "other.json")), env=cli_env, capture_output=True, text=True)
    assert r.returncode == 2 and "pointmaze-large" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(kdp_cmd("pareto", str(tmp_path / "missing"), "--quiet"), env=cli_env, capture_output=True, text=True)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_seeds_are_averaged_with_their_spread_and_kept_per_seed():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_pareto", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    per_seed = [{"method": "kdp", "k": 4, "t": None, "run": f"r{i}", "run_seed": i, "step": 10, "score": s,
                 "score_sem": e, "success_rate": 1.0} for i, (s, e) in enumerate([(160.0, 3.0), (170.0, 4.0)])]
    (agg,) = mod.aggregate(per_seed)
    assert agg["score"] == 165.0 and agg["seeds"] == 2 and agg["config"] == "K=4"
    assert agg["score_sem"] == pytest.approx(2.5)  # sqrt(3^2 + 4^2) / 2
    assert agg["seed_std"] == pytest.approx(math.sqrt(50.0)) and [p["score"] for p in agg["per_seed"]] == [160.0, 170.0]
    row = {"label": "1 ms", "best": {"KDP": {"score": 170.0, "config": "K=16"}, "diffusion": None}}
    assert "only KDP fits" in mod.verdict([row])


# ---- the headline over every task's report (bench/pareto_headline.py) -------------------------------
def test_headline_verdict_needs_a_margin_beyond_the_standard_errors():
    sys.path.insert(0, str(ROOT / "bench"))
    from pareto_headline import verdict

    a = {"score": 170.0, "score_sem": 2.0}
    assert verdict(a, {"score": 172.0, "score_sem": 2.0}) == ("tie", -2.0)  # 2 < hypot(2, 2) = 2.83
    assert verdict(a, {"score": 175.0, "score_sem": 2.0}) == ("diffusion", -5.0)
    assert verdict({"score": 180.0, "score_sem": 1.0}, a)[0] == "KDP"
    assert verdict(a, None) == ("KDP only", None) and verdict(None, None) == ("none fits", None)


def test_headline_reads_the_task_reports_and_writes_table_and_plot(pareto_report, cli_env, tmp_path):
    rep = json.loads((pareto_report / "pointmaze-umaze.json").read_text())
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "pareto_headline.py"), "--dir", str(pareto_report),
                        "--out", str(tmp_path / "hl")], env=cli_env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads((tmp_path / "hl.json").read_text())
    assert [x["task"] for x in out["reports"]] == ["pointmaze-umaze"]
    assert len(out["rows"]) == len(rep["best_by_method"]["p50_ms"])
    for row, b in zip(out["rows"], rep["best_by_method"]["p50_ms"], strict=True):
        assert row["KDP"] == b["best"]["KDP"] and row["diffusion"] == b["best"]["diffusion"]
    assert "## pointmaze-umaze" in (tmp_path / "hl.md").read_text()
    assert (tmp_path / "hl.png").read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "pareto_headline.py"), str(bad)], env=cli_env,
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "not a bench/pareto.py report" in r.stderr
