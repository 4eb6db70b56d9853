"""PushT (issue #8): the low-dim reader, observation history, consensus choice, and the whole chain
(train -> eval in gym-pusht -> export -> bench -> device planner) on a tiny synthetic dataset of the
same layout. Nothing here needs the real demonstrations file."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import BLOCK_TORCH, ROOT, kdp_cmd

from kdp_edge.data.pusht import pusht_features, write_synthetic_pusht
from kdp_edge.data.readers import load_trajectories
from kdp_edge.errors import DataError
from kdp_edge.planning import CandidateScorer, ScoringSpec, consensus_scores
from kdp_edge.windows import Trajectories, WindowSet, stack_history


@pytest.fixture(scope="module")
def tiny_pusht(tmp_path_factory):
    return write_synthetic_pusht(tmp_path_factory.mktemp("pusht") / "pusht_tiny.npz", episodes=6, steps=40)


def test_reader_gives_pusht_features_and_episode_ends(tiny_pusht):
    z = np.load(tiny_pusht)
    tr = load_trajectories(tiny_pusht)
    assert tr.env == "pusht" and tr.goals is None
    assert tr.observations.shape == (240, 6) and tr.actions.shape == (240, 2)
    assert np.flatnonzero(tr.episode_ends).tolist() == (z["episode_ends"] - 1).tolist()
    np.testing.assert_allclose(tr.observations[:, :4], z["state"][:, :4])
    np.testing.assert_allclose(tr.observations[:, 4] ** 2 + tr.observations[:, 5] ** 2, 1.0, atol=1e-6)
    np.testing.assert_allclose(np.arctan2(tr.observations[:, 5], tr.observations[:, 4]) % (2 * np.pi),
                               z["state"][:, 4], atol=1e-4)


def test_angle_features_are_continuous_across_the_wrap():
    a = pusht_features(np.array([[0, 0, 0, 0, 2 * np.pi - 1e-3], [0, 0, 0, 0, 1e-3]], np.float32))
    assert np.abs(a[0] - a[1]).max() < 3e-3  # the raw angle jumps by 6.28


def test_stack_history_repeats_the_first_observation_and_never_crosses_episodes():
    obs = np.arange(10, dtype=np.float32)[:, None]  # one dim: value = step
    ends = np.zeros(10, bool)
    ends[[3, 9]] = True  # episodes 0..3 and 4..9
    tr = stack_history(Trajectories(obs, np.zeros((10, 1), np.float32), ends), 3)
    assert tr.observations.shape == (10, 3)
    assert tr.observations[0].tolist() == [0, 0, 0]
    assert tr.observations[2].tolist() == [0, 1, 2]
    assert tr.observations[4].tolist() == [4, 4, 4]  # not [2, 3, 4]: a new episode
    assert tr.observations[6].tolist() == [4, 5, 6]
    assert stack_history(tr, 1) is tr
    with pytest.raises(DataError, match="at least 1"):
        stack_history(tr, 0)


def test_history_reader_windows_start_with_the_stacked_condition(tiny_pusht):
    tr = load_trajectories(tiny_pusht, obs_history=2)
    assert tr.obs_dim == 12
    ws = WindowSet(tr, 16)
    w = ws.norm.denorm_window(ws.windows(ws.starts[:5]))
    np.testing.assert_allclose(w[:, 1, :6], w[:, 0, 6:12], rtol=1e-5, atol=1e-3)  # step 1's older obs = step 0's newest


def test_bad_episode_ends_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, state=np.zeros((10, 5), np.float32), action=np.zeros((10, 2), np.float32),
             episode_ends=np.array([4, 8]))
    with pytest.raises(DataError, match="episode_ends"):
        load_trajectories(p)


def test_consensus_picks_the_medoid():
    rng = np.random.default_rng(0)
    plans = rng.normal(0, 0.1, size=(7, 16, 14))
    plans[:5, :, 12:] += 100.0  # 5 candidates in one mode, 2 in another
    plans[3, :, 12:] = plans[:5, :, 12:].mean(0)  # the centre of the big mode
    s = consensus_scores(plans, [12, 13], 8)
    assert int(np.argmax(s)) == 3
    spec = ScoringSpec(kind="consensus", consensus_dims=[12, 13], consensus_steps=8)
    assert np.allclose(CandidateScorer(spec)(plans, np.zeros(0)), s)
    assert consensus_scores(plans[:1], [12, 13], 8).tolist() == [0.0]


def test_pusht_chain_train_eval_export_bench_plan(tiny_pusht, tmp_path, cli_env):
    """train (drift, obs history 2) -> eval in gym-pusht -> int8 export -> bench -> torch-free plan."""
    pytest.importorskip("gym_pusht", reason="the pusht extra (gym-pusht) is not installed")
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    subprocess.run(kdp_cmd("train", "--recipe", "pusht", "--data", str(tiny_pusht), "--out", str(run),
                           "--steps", "60", "--threads", "1", "--quiet"),
                   check=True, env=cli_env, capture_output=True)
    info = json.loads((run / "run.json").read_text())
    assert (info["env"], info["obs_dim"], info["obs_history"], info["goal_dim"]) == ("pusht", 12, 2, 0)
    cfg = json.loads((run / "config.json").read_text())  # the recipe, with the flags on top
    assert cfg["data"]["horizon"] == 16 and cfg["optim"]["steps"] == 60 and cfg["model"]["mlp_hidden"] == 512
    assert cfg["drift"]["key"]["descriptor_dims"] == [12, 13] and cfg["drift"]["key"]["descriptor_steps"] == 16

    r = subprocess.run(kdp_cmd("eval", str(run), "--episodes", "2", "--quiet"),
                       env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads((run / "eval-pusht.json").read_text())
    # PushT's own defaults when -k/--seed are left out: one sample per plan, Diffusion Policy's test seeds
    assert (rep["protocol"]["seed"], rep["protocol"]["action_steps"], rep["protocol"]["candidates"]) == (100_000, 8, 1)
    for name in ("kdp", "random", "demos"):
        assert 0.0 <= rep[name]["mean_max_coverage"] <= 1.0
    # the summary is the episodes' own numbers, and the best coverage of an episode bounds its last
    assert rep["kdp"]["mean_max_coverage"] == pytest.approx(np.mean(rep["episodes"]["max_coverage"]), abs=1e-4)
    assert rep["kdp"]["mean_max_coverage"] >= rep["kdp"]["mean_final_coverage"]
    assert rep["episodes"]["steps"] == [300, 300] or rep["kdp"]["success_rate"] > 0  # only success ends early
    assert rep["demos"]["episodes"] == 6 and rep["kdp"]["episodes"] == 2
    assert "eval" in rep["provenance"]["command"] and rep["provenance"]["commit"]  # who evaluated it
    assert "train" in rep["trained_by"]["command"]  # ... and how the run was trained
    assert "mean max coverage" in r.stdout

    r = subprocess.run(kdp_cmd("export", str(run), "--out", str(bundle), "--quantize", "int8", "--force",
                               "--closed-loop-episodes", "2"),
                       env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((bundle / "bundle.json").read_text())
    assert m["obs_history"] == 2 and m["obs_dim"] == 12 and m["env"] == "pusht" and m["step_dt_s"] == 0.1
    assert m["scoring"]["kind"] == "consensus" and m["scoring"]["consensus_dims"] == [12, 13]
    assert m["inputs"] == ["obs", "noise"]
    cl = m["parity"]["model_int8.onnx"]["closed_loop"]  # int8 vs torch on the same gym-pusht episodes
    assert cl["metric"] == "PushT mean max coverage (%)" and cl["episodes"] == 2
    assert 0.0 <= cl["score_mean"] <= 100.0 and 0.0 <= cl["torch_score_mean"] <= 100.0
    # int8 plans the same episodes as torch to within a few points of coverage (the tiny model's int8 drop is
    # ~0.002 points; a broken quantisation or a planner reading the wrong inputs moves whole episodes)
    assert abs(cl["score_mean"] - cl["torch_score_mean"]) <= 5.0, cl

    out = tmp_path / "bench.json"
    r = subprocess.run(kdp_cmd("bench", str(bundle), "-k", "1,16", "--runs", "30", "--warmup", "5", "--quiet",
                               "--out", str(out)), env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["env"] == "pusht"

    # the bundle on PushT's virtual robot, through the serial protocol: two short episodes of the
    # evaluation's seeds (10 environment steps each; 5 ticks per step at 50 Hz)
    summary = tmp_path / "run-summary.json"
    r = subprocess.run(kdp_cmd("run", str(bundle), "--port", "sim://pusht?horizon=10", "--episodes", "2", "--rate", "50",
                               "--summary", str(summary)), env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    sim = json.loads(summary.read_text())["sim"]
    assert (sim["env"], sim["metric"], sim["episodes"]) == ("pusht", "max_coverage", 2)
    assert [e["seed"] for e in sim["per_episode"]] == [100_000, 100_001]
    assert all(e["steps"] == 10 or e["success"] for e in sim["per_episode"])
    assert sim["max_coverage_mean"] == pytest.approx(np.mean([e["max_coverage"] for e in sim["per_episode"]]))
    assert "max coverage" in r.stderr and "observation history: the last 2 STATEs" in r.stderr

    code = BLOCK_TORCH + f"""
import numpy as np
from kdp_edge.runtime import Planner
p = Planner.load({str(bundle)!r})
plan = p.plan(np.full(12, 200.0, np.float32))
assert plan.window.shape == (16, 14), plan.window.shape
assert np.isfinite(plan.action).all() and plan.action.shape == (2,)
try:
    p.plan(np.zeros(6, np.float32))
except Exception as exc:
    print("short-obs:", type(exc).__name__, exc)
"""
    r = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "short-obs: PlanInputError" in r.stdout and "12" in r.stdout


def test_pusht_plant_steps_at_10_hz_and_idles_in_place():
    """The virtual robot's PushT plant: seeded resets as the evaluation's, one environment step per 0.1 s
    of controller time whatever the tick, and 'outputs off' holding the agent where it is."""
    pytest.importorskip("gym_pusht", reason="the pusht extra (gym-pusht) is not installed")
    from kdp_edge.pusht import make_env
    from kdp_edge.pusht_sim import PushTEpisodes

    task = PushTEpisodes("pusht", episodes=2, seed=0)
    plant = task.plant
    task.prepare(1)
    first = plant.reset()
    ref = make_env()
    ref_state = ref.reset(seed=100_001)[0]
    np.testing.assert_allclose(first, pusht_features(ref_state), atol=1e-5)  # episode 1 = eval seed 100001
    target = np.array([300.0, 300.0])
    for tick in range(1, 11):  # 50 Hz ticks: one environment step every 5
        state = plant.step(target, 0.02)
        assert plant.steps == tick // 5, tick
    for _ in range(2):
        ref_state, _, _, _, info = ref.step(target)
    np.testing.assert_allclose(state, pusht_features(ref_state), atol=1e-4)
    assert plant.coverage == pytest.approx(info["coverage"])
    agent = plant.idle_action()
    np.testing.assert_allclose(agent, ref_state[:2])
    for _ in range(10):  # outputs off for 1 s: the agent coasts to rest near where it was (not to (0, 0))
        plant.step(plant.idle_action(), 0.1)
    assert np.abs(plant.idle_action() - agent).max() < 20.0
    task.set_horizon(3)
    assert task.finished() and task.result(1)["seed"] == 100_001
    ref.close()
    plant.close()


def test_pusht_bench_skips_with_where_it_looked(tmp_path, cli_env):
    missing = tmp_path / "nope" / "pusht_lowdim.npz"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "pusht.py"), "--data", str(missing), "--out",
                        str(tmp_path / "out")], env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stdout and str(missing) in r.stdout and not (tmp_path / "out").exists()


def test_pusht_bench_trains_the_named_recipe(tiny_pusht, tmp_path, cli_env):
    """bench/pusht.py --recipe pusht-unet trains with the U-Net (the recipe's backbone) and says so in the
    report; an unknown recipe is refused before anything is trained."""
    out = tmp_path / "out"
    base = [sys.executable, str(ROOT / "bench" / "pusht.py"), "--data", str(tiny_pusht), "--out", str(out)]
    r = subprocess.run(base + ["--recipe", "pusht-mlp"], env=cli_env, capture_output=True, text=True)
    assert r.returncode == 2 and "pusht-unet" in r.stderr and not out.exists()
    r = subprocess.run(base + ["--recipe", "pusht-unet", "--methods", "kdp", "--steps", "2", "--episodes", "1",
                               "--candidates", "1", "--action-steps", "8", "--latency-budget", "0.2", "--tag", "t"],
                       env=cli_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((out / "pusht-kdp-t" / "config.json").read_text())
    assert cfg["model"]["arch"] == "unet" and cfg["optim"]["steps"] == 2 and cfg["data"]["obs_history"] == 2
    assert not (out / "pusht.json").exists()  # a tagged variant never overwrites the recipe's report
    report = json.loads((out / "pusht-t.json").read_text())
    assert report["recipe"] == "pusht-unet" and report["runs"]["kdp"]["arch"] == "unet"
    assert [c["planner"] for c in report["closed_loop"]] == ["kdp"]
    assert "| unet |" in (out / "pusht-t.md").read_text()
    r = subprocess.run(base + ["--recipe", "pusht", "--no-train", "--methods", "kdp", "--episodes", "1", "--candidates",
                               "1", "--action-steps", "8", "--latency-budget", "0.2", "--tag", "t"],
                       env=cli_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "exists with backbone unet, not recipe pusht's mlp" in r.stdout, r.stdout + r.stderr
    assert report["runs"]["kdp"]["trained_by"]["command"].startswith("python bench/pusht.py")  # how it was trained
    # --pool: one table over training seeds from tagged reports (here the same report twice under two tags)
    (out / "pusht-u.json").write_text((out / "pusht-t.json").read_text())
    r = subprocess.run(base + ["--pool", "t", "u", "--tag", "both"], env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pooled = json.loads((out / "pusht-both.json").read_text())
    row = pooled["rows"][0]
    assert row["mean_max_coverage"] == pytest.approx(report["closed_loop"][0]["mean_max_coverage"])
    assert set(row["seeds"]) == {"t", "u"} and pooled["sources"] == {"t": "pusht-t.json", "u": "pusht-u.json"}
    r = subprocess.run(base + ["--pool", "t", "nope"], env=cli_env, capture_output=True, text=True)
    assert r.returncode == 2 and "pusht-nope.json not found" in r.stderr


def test_train_recipe_errors_name_the_fix(tmp_path, cli_env, tiny_pusht):
    """An unknown recipe names the known ones; --recipe with --resume says the saved config is kept; key
    dims the windows lack are named with the window layout (not an IndexError mid-training)."""
    r = subprocess.run(kdp_cmd("train", "--recipe", "pushy", "--data", str(tiny_pusht), "--out", str(tmp_path / "a")),
                       env=cli_env, capture_output=True, text=True)
    assert r.returncode != 0 and "unknown recipe 'pushy'" in r.stderr and "pusht" in r.stderr
    assert not (tmp_path / "a" / "checkpoint.pt").exists()
    r = subprocess.run(kdp_cmd("train", "--recipe", "pusht", "--resume", "--out", str(tmp_path / "a")),
                       env=cli_env, capture_output=True, text=True)
    assert r.returncode != 0 and "keeps the config saved with it" in r.stderr
    # the recipe keys on action dims 12, 13 of 2 stacked observations: with one observation they do not exist
    r = subprocess.run(kdp_cmd("train", "--recipe", "pusht", "--obs-history", "1", "--data", str(tiny_pusht),
                               "--out", str(tmp_path / "b"), "--steps", "2"), env=cli_env, capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "descriptor_dims [12, 13]" in r.stderr and "action 6..7" in r.stderr
    assert not (tmp_path / "b").exists()


def test_synthetic_cli_and_eval_env_mismatch(tmp_path, cli_env, tiny_run):
    out = tmp_path / "s.npz"
    r = subprocess.run(kdp_cmd("data", "pusht-synthetic", "--episodes", "2", "--steps", "20", "--out", str(out)),
                       env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0 and load_trajectories(out).observations.shape == (40, 6)
    r = subprocess.run(kdp_cmd("eval", str(tiny_run), "--env", "pusht", "--episodes", "1", "--quiet"),
                       env=cli_env, capture_output=True, text=True)
    assert r.returncode != 0 and "not pusht" in r.stderr


def test_history_planner_stacks_oldest_first_and_resets():
    from kdp_edge.runtime import HistoryPlanner

    seen = []

    class Inner:
        manifest = "m"

        def plan(self, obs, goal=None, noise=None):
            seen.append(obs.tolist())
            return "plan"

    p = HistoryPlanner(Inner(), 3)
    assert p.plan([1.0, 10.0]) == "plan" and p.manifest == "m"
    p.plan([2.0, 20.0])
    p.plan([3.0, 30.0])
    p.plan([4.0, 40.0])
    assert seen == [[1, 10, 1, 10, 1, 10], [1, 10, 1, 10, 2, 20], [1, 10, 2, 20, 3, 30], [2, 20, 3, 30, 4, 40]]
    p.reset()
    p.plan([5.0, 50.0])
    assert seen[-1] == [5, 50] * 3


def _pusht_noise_bench():
    """bench/pusht_noise.py as a module (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pusht_noise", ROOT / "bench" / "pusht_noise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_noise_modes_replace_the_plan_noise_as_named():
    """bench/pusht_noise.py's noise modes on a backend that returns its noise (+ obs offset): zero
    gives zeros, half halves, held repeats the first draw, mean16 averages 16 draws of each row."""
    noise_bench = _pusht_noise_bench()

    def echo(feeds):
        return feeds["noise"] + feeds["obs"][:, :1, None]

    rng = np.random.default_rng(0)
    obs = np.arange(3, dtype=np.float32)[:, None] * 100
    draw = lambda: rng.standard_normal((3, 4, 2)).astype(np.float32)  # noqa: E731
    n1, n2 = draw(), draw()
    run = lambda mode, noise, fn=None: (fn or noise_bench.with_noise(echo, mode))({"obs": obs, "noise": noise})  # noqa: E731
    assert np.allclose(run("fresh", n1), n1 + obs[:, :1, None])
    assert np.allclose(run("zero", n1), np.broadcast_to(obs[:, :1, None], n1.shape))
    assert np.allclose(run("half", n1), 0.5 * n1 + obs[:, :1, None])
    held = noise_bench.with_noise(echo, "held")
    run("held", n1, held)
    assert np.allclose(run("held", n2, held), n1 + obs[:, :1, None])
    mean = run("mean16", n1)
    assert mean.shape == n1.shape
    assert np.allclose(mean.mean((1, 2)), obs[:, 0], atol=0.5)  # each row keeps its own observation
    assert np.abs(mean - obs[:, :1, None]).std() < 0.5 * n1.std()  # averaging 16 draws shrinks the noise ~4x
    assert set(noise_bench.NOISE_MODES) == {"fresh", "held", "zero", "half", "mean16"}


def test_drift_neighbourhoods_measure_distance_to_the_own_window(tiny_pusht):
    """bench/pusht_noise.py's neighbourhood diagnostic: a generator that returns each condition's own
    window is at distance 0 from it and from its siblings, and the other positives are farther."""
    import torch

    from kdp_edge.config import TrainConfig

    noise_bench = _pusht_noise_bench()
    ws = WindowSet(load_trajectories(tiny_pusht, goal="none", obs_history=2), 8)
    all_cond = torch.from_numpy(ws.conditions(ws.starts))

    class OwnWindow:
        window_dim = ws.windows(ws.starts[:1]).shape[-1]

        def generate_normalized(self, cond, noise):
            row = torch.cdist(cond, all_cond).argmin(1).numpy()
            return torch.from_numpy(ws.windows(ws.starts[row]))

    cfg = TrainConfig.from_dict({"optim": {"positives": 4, "samples": 3}, "drift": {"temperatures": [0.05, 0.5]}})
    nb = noise_bench.drift_neighbourhoods(OwnWindow(), ws, cfg, groups=8)
    assert nb["gen_to_gen"] == 0 and nb["gen_to_own_window"] == 0
    assert nb["gen_to_other_positives"] > 0.5
    assert set(nb["affinity"]) == {"0.05", "0.5"}
    for share in nb["affinity"].values():
        assert 0 < share["positives"] and 0 < share["negatives"]
