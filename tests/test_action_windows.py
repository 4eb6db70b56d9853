"""Window content ``data.window`` (issue #22): "states+actions" (default) vs "actions" (the action chunk only).

An action-only run trains on [H, act_dim] windows, exports (ONNX fp32 + int8) and plans through the
device runtime exactly as torch does; the diffusion baseline samples the same windows without
in-painting a state; files written before the option existed load as states+actions; and what needs
planned states (position scoring, the tracker protocol) is refused early, with the fix named.
Tiny synthetic PushT data, a few training steps: no real demonstrations needed.
"""

import json
import subprocess

import numpy as np
import pytest
from conftest import kdp_cmd

from kdp_edge.bundle import BundleError, BundleManifest
from kdp_edge.config import TrainConfig, merge, recipe
from kdp_edge.data.pusht import write_synthetic_pusht
from kdp_edge.errors import ConfigError
from kdp_edge.layout import WindowLayout
from kdp_edge.planning import ScoringSpec
from kdp_edge.windows import Normalizer, Trajectories

K = 4
TINY = {"model": {"mlp_hidden": 32, "mlp_layers": 2}, "threads": 1, "log_every": 4,
        "optim": {"steps": 4, "conditions": 4, "samples": 4, "positives": 4, "warmup": 1}}


def quiet(*_):
    pass


def tiny_cfg(data, **over) -> TrainConfig:
    """The pusht-actions recipe (16 steps planned, 2 observations in) on the tiny model."""
    base = merge(merge(TrainConfig().to_dict(), recipe("pusht-actions")), TINY)
    return TrainConfig.from_dict(merge(base, {"data": {"path": str(data)}, **over}))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_pusht(tmp_path_factory.mktemp("pusht") / "pusht_tiny.npz", episodes=6, steps=40)


@pytest.fixture(scope="module")
def action_run(data, tmp_path_factory):
    from kdp_edge.train import Trainer

    out = tmp_path_factory.mktemp("actions") / "run"
    trainer = Trainer(tiny_cfg(data), out, log=quiet)
    trainer.run(progress=False)
    return out, trainer


def test_recipe_is_pusht_with_action_windows_only():
    base, variant = recipe("pusht"), recipe("pusht-actions")
    assert variant["data"]["window"] == "actions" and variant["drift"]["key"]["descriptor_dims"] == [0, 1]
    assert "window" not in base["data"] and base["drift"]["key"]["descriptor_dims"] == [12, 13]  # default unchanged
    strip = lambda r: merge(r, {"data": {"window": None}, "drift": {"key": {"descriptor_dims": None}}})  # noqa: E731
    assert strip(base) == strip(variant)  # everything else equal
    with pytest.raises(ConfigError, match="'states\\+actions', 'actions'"):
        TrainConfig.from_dict({"data": {"window": "states"}})


def test_action_only_run_trains_on_action_chunks(action_run):
    out, trainer = action_run
    ws = trainer.ws
    assert ws.windows(ws.starts[:3]).shape == (3, 16, 2)  # [.., H, act_dim]: no observation part
    np.testing.assert_allclose(ws.norm.denorm_window(ws.windows(ws.starts[:1]))[0],
                               ws.traj.actions[ws.starts[0]:ws.starts[0] + 16], rtol=1e-5, atol=1e-3)
    assert trainer.model.window_dim == 2 and trainer.model.cond_in == 12  # the condition is unchanged
    for name in ("run.json", "normalizer.json"):
        assert json.loads((out / name).read_text())["window"] == "actions"
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4 and last["start_jump_ratio"] is None  # no planned state to jump from
    assert np.isfinite([last["diversity"], last["staticness"], last["action_rms"]]).all()


def test_action_only_export_plans_like_torch(action_run, tmp_path):
    from export.pipeline import ExportOptions, export_bundle
    from kdp_edge.checkpoint import load_run
    from kdp_edge.runtime import Planner
    from kdp_edge.torch_planner import run_planner

    run_dir, _ = action_run
    bundle = tmp_path / "bundle"
    export_bundle(run_dir, bundle, ExportOptions(formats=["onnx"], quantize="int8", candidates=K, calib_samples=16,
                                                 parity_conditions=4, closed_loop_episodes=0, force=True), log=quiet)
    m = json.loads((bundle / "bundle.json").read_text())
    assert (m["window"], m["window_dim"], m["action_slice"]) == ("actions", 2, [0, 2])
    assert m["scoring"]["kind"] == "consensus" and m["scoring"]["consensus_dims"] == [0, 1]

    device = Planner.load(bundle, precision="fp32", candidates=K, warmup=1)
    torch_side = run_planner(load_run(run_dir), K, device.scorer.spec)
    rng = np.random.default_rng(3)
    obs = np.asarray(load_run(run_dir).normalizer.obs_mean, np.float32)
    for _ in range(3):
        noise = rng.standard_normal((K, 16, 2), dtype=np.float32)
        got, ref = device.plan(obs, noise=noise), torch_side.plan(obs, noise=noise)
        assert got.window.shape == (16, 2)
        np.testing.assert_allclose(got.candidates, ref.candidates, rtol=1e-4, atol=1e-2)  # pixels
        assert got.choice == ref.choice
        # the action is step 0 of the chosen window, clipped to the bundle's limits (torch: no limits)
        np.testing.assert_allclose(got.action, np.clip(ref.window[0], device.low, device.high), atol=1e-2)
    int8 = Planner.load(bundle, precision="int8", candidates=K, warmup=1)
    plan = int8.plan(obs)
    assert plan.action.shape == (2,) and np.isfinite(plan.candidates).all()


def test_action_only_diffusion_samples_without_inpainting(data, tmp_path):
    import torch

    from export.common import ExportOptions, manifest_for_run
    from export.denoiser import diffusion_manifest_dict
    from kdp_edge.checkpoint import load_run
    from kdp_edge.runtime.diffusion import DenoiserSampler, DenoiserSchedule
    from kdp_edge.train import Trainer

    cfg = tiny_cfg(data, method="diffusion", diffusion={"timesteps": 16, "sample_steps": 4})
    Trainer(cfg, tmp_path / "run", log=quiet).run(progress=False)
    run = load_run(tmp_path / "run")
    model = run.build_model()
    assert model.window_dim == 2 and not model.overwrites_first_state  # no state to in-paint
    m = manifest_for_run(run, model, ExportOptions())
    m.diffusion = diffusion_manifest_dict(model, 4)
    sampler = DenoiserSampler(DenoiserSchedule.from_manifest(m), m.obs_dim, m.goal_dim)

    def denoise(feeds):
        with torch.no_grad():
            return model.denoise(*(torch.from_numpy(feeds[n]) for n in ("x_t", "t", "obs")),
                                 torch.zeros(len(feeds["obs"]), 0)).numpy()

    rng = np.random.default_rng(0)
    obs = np.repeat(run.normalizer.obs_mean[None].astype(np.float32), K, 0)
    noise = rng.standard_normal((K, 16, 2), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(obs), torch.zeros(K, 0), torch.from_numpy(noise)).numpy()
    got = sampler(denoise, {"obs": obs, "noise": noise})
    assert got.shape == (K, 16, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-2)


def test_files_without_the_field_load_as_states_and_actions():
    m = BundleManifest(obs_dim=4, act_dim=2, goal_dim=2, horizon=8, scoring=ScoringSpec().to_dict())
    d = m.to_dict()
    assert "window" not in d  # default bundles stay readable by runtimes older than the field
    old = json.loads(json.dumps(d))
    back = BundleManifest.from_dict(old)
    assert (back.window, back.window_dim, back.action_slice) == ("states+actions", 6, (4, 6))

    a = BundleManifest(obs_dim=12, act_dim=2, goal_dim=0, horizon=16, window="actions",
                       scoring=ScoringSpec.for_env("pusht", 0, 12, 2, window="actions").to_dict())
    d = json.loads(json.dumps(a.to_dict()))
    assert (d["window"], d["window_dim"], d["action_slice"]) == ("actions", 2, [0, 2])
    assert BundleManifest.from_dict(d).action_slice == (0, 2)
    with pytest.raises(BundleError, match="action_slice"):  # copies that disagree with the layout
        BundleManifest.from_dict(d | {"action_slice": [12, 14]})
    with pytest.raises(BundleError, match="window 'both'"):
        BundleManifest.from_dict(d | {"window": "both"})

    stats = {"obs_mean": [0.0] * 4, "obs_std": [1.0] * 4, "goal_mean": [], "goal_std": [],
             "win_mean": [0.0] * 6, "win_std": [1.0] * 6}
    n = Normalizer.from_dict(stats)  # normalizer.json from before the field
    assert (n.window, n.act_dim, n.layout.action_slice) == ("states+actions", 2, (4, 6))
    assert n.to_dict()["window"] == "states+actions" and Normalizer.from_dict(n.to_dict()).to_dict() == n.to_dict()
    short = Normalizer.from_dict(stats | {"win_mean": [0.0] * 2, "win_std": [1.0] * 2, "window": "actions"})
    assert (short.act_dim, short.layout.dim, short.layout.action_slice) == (2, 2, (0, 2))


def test_state_needing_scoring_and_protocol_are_refused(tmp_path):
    from kdp_edge.runtime import Planner
    from kdp_edge.train import Trainer

    rng = np.random.default_rng(0)
    t = 200
    ends = np.zeros(t, bool)
    ends[99::100] = True
    maze = Trajectories(rng.normal(size=(t, 4)).astype(np.float32), rng.normal(size=(t, 2)).astype(np.float32),
                        ends, goals=rng.normal(size=(t, 2)).astype(np.float32), env="pointmaze-umaze")
    cfg = TrainConfig.from_dict(merge(TINY, {"data": {"horizon": 8, "window": "actions"}}))
    with pytest.raises(ConfigError, match="maze_geodesic.*data.window 'states\\+actions'"):
        Trainer(cfg, tmp_path / "run", log=quiet, trajectories=maze)  # before any training

    layout = WindowLayout(12, 2, "actions")
    consensus = ScoringSpec.for_env("pusht", 0, 12, 2, window="actions")
    m = BundleManifest(obs_dim=12, act_dim=2, goal_dim=0, horizon=16, window="actions",
                       scoring=consensus.to_dict(), protocol="tracker")
    with pytest.raises(BundleError, match="protocol 'tracker'.*own-actions"):
        Planner.over(m, lambda feeds: np.zeros((len(feeds["noise"]), 16, layout.dim), np.float32))
    with pytest.raises(BundleError, match="protocol 'tracker'"):
        BundleManifest.from_dict(json.loads(json.dumps(m.to_dict())))
    m.protocol, m.scoring = "own-actions", ScoringSpec(kind="goal_distance").to_dict()
    with pytest.raises(BundleError, match="goal_distance"):
        BundleManifest.from_dict(json.loads(json.dumps(m.to_dict())))


def test_cli_refuses_descriptor_dims_outside_action_windows(data, tmp_path, cli_env):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(merge(TINY, {"drift": {"key": {"descriptor_dims": [12, 13]}}})))  # pusht's old dims
    r = subprocess.run(kdp_cmd("train", "--recipe", "pusht-actions", "--data", str(data), "--config", str(cfg),
                               "--out", str(tmp_path / "run")), env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "[12, 13]" in r.stderr and "valid dims are 0..1" in r.stderr and "window 'actions'" in r.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
