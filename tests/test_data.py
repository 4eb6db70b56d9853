"""Dataset readers (D4RL hdf5, OGBench npz, Minari directory), the generator's dwell option, and
the U-Net generator's shapes and conditioning."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from kdp_edge.data.readers import load_trajectories
from kdp_edge.errors import DataError


def _episodes(n_eps=3, t=20, obs_dim=4, act_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(t + 1, obs_dim)).astype(np.float32), rng.normal(size=(t, act_dim)).astype(np.float32),
             rng.normal(size=(t + 1, 2)).astype(np.float32)) for _ in range(n_eps)]


def test_ogbench_npz_reader(tmp_path):
    eps = _episodes()
    obs = np.concatenate([o[:-1] for o, _, _ in eps])
    act = np.concatenate([a for _, a, _ in eps])
    term = np.zeros(len(obs), bool)
    term[np.cumsum([len(a) for _, a, _ in eps]) - 1] = True
    p = tmp_path / "pointmaze-umaze-navigate.npz"
    np.savez(p, observations=obs, actions=act, terminals=term)
    tr = load_trajectories(p)
    assert tr.obs_dim == 4 and tr.act_dim == 2 and len(tr.observations) == 60
    np.testing.assert_array_equal(tr.episode_ends, term)
    # pointmaze without stored goals: hindsight goal = position at the segment's end
    np.testing.assert_allclose(tr.goals[0], obs[19, :2])
    np.testing.assert_allclose(tr.goals[20], obs[39, :2])
    assert load_trajectories(p, goal="none").goals is None


def test_ogbench_missing_keys_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, observations=np.zeros((3, 2)))
    with pytest.raises(DataError, match="missing.*actions"):
        load_trajectories(p)


def test_minari_directory_reader(tmp_path):
    root = tmp_path / "pointmaze-umaze-v1"
    (root / "data").mkdir(parents=True)
    eps = _episodes()
    with h5py.File(root / "data" / "main_data.hdf5", "w") as f:
        for i, (o, a, g) in enumerate(eps):
            ep = f.create_group(f"episode_{i}")
            grp = ep.create_group("observations")
            grp["observation"], grp["desired_goal"] = o, g
            ep["actions"] = a
    tr = load_trajectories(root)
    assert len(tr.observations) == 60 and tr.goals is not None
    np.testing.assert_allclose(tr.observations[20], eps[1][0][0])  # T+1 observations trimmed to T
    np.testing.assert_allclose(tr.goals[25], eps[1][2][5])
    assert tr.episode_ends.sum() == 3 and tr.episode_ends[19] and tr.episode_ends[59]


def test_minari_empty_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a Minari dataset"):
        load_trajectories(tmp_path)


def test_missing_dataset_names_the_generator(tmp_path):
    with pytest.raises(DataError, match="kdp-edge data pointmaze"):
        load_trajectories(tmp_path / "nope.hdf5")


def test_dwell_holds_at_reached_goals():
    pytest.importorskip("mujoco")
    from kdp_edge.data.pointmaze import PointMazeDataConfig, generate_pointmaze

    def at_goal_fraction(dwell):
        a = generate_pointmaze(PointMazeDataConfig(steps=4000, noise=0.1, dwell=dwell))
        d = np.linalg.norm(a["observations"][:, :2] - a["infos/goal"], axis=1)
        return float((d < 0.3).mean())

    plain, dwell = at_goal_fraction(0), at_goal_fraction(100)
    assert plain < 0.02, "without dwell a new goal is drawn on arrival"
    assert dwell > 0.15, "with dwell the data shows the ball staying at its goal"


def test_unet_generator_shapes_and_conditioning():
    torch = pytest.importorskip("torch")
    from kdp_edge.models import KDPGenerator, ModelConfig, count_parameters
    from kdp_edge.windows import Normalizer

    nz = Normalizer(np.zeros(4), np.ones(4), np.zeros(2), np.ones(2), np.zeros(6), np.ones(6))
    m = KDPGenerator(nz, 16, ModelConfig(arch="unet", channels=[16, 32, 48])).eval()
    assert 0 < count_parameters(m) < 1_000_000
    obs, goal, noise = torch.randn(5, 4), torch.randn(5, 2), torch.randn(5, 16, 6)
    out = m(obs, goal, noise)
    assert out.shape == (5, 16, 6)
    assert torch.allclose(out[:, 0, :4], obs, atol=1e-5), "first planned state is the observed state"
    assert not torch.allclose(m(obs, goal + 1.0, noise), out), "the goal conditions the output (FiLM)"
    with pytest.raises(ValueError, match="divisible"):
        KDPGenerator(nz, 10, ModelConfig(arch="unet", channels=[16, 32, 48]))
