"""LeRobotDataset folders (issue #24): fixtures written here with pyarrow in LeRobot's v2.1 and v3.0
layouts (field names, path templates, dtypes, several episodes per v3.0 file, more than one data file
and chunk) read the same windows as the equivalent npz / hdf5, value for value; ``kdp-edge data
to-lerobot`` round-trips; the real PushT demonstrations converted to v3.0 train to the same losses;
every broken input is a clear DataError (exit code 2 from the CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow", reason="the lerobot extra (pyarrow) is not installed")
import pyarrow.parquet as pq  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from kdp_edge.cli import cli  # noqa: E402
from kdp_edge.data.lerobot import read_lerobot, write_lerobot_v30  # noqa: E402
from kdp_edge.data.pusht import default_pusht_path, pusht_features  # noqa: E402
from kdp_edge.data.readers import load_trajectories  # noqa: E402
from kdp_edge.errors import DataError  # noqa: E402
from kdp_edge.windows import WindowSet  # noqa: E402

FPS = 10
LENGTHS = [23, 40, 17, 31, 29]  # five PushT-like episodes of different lengths
VIDEO = {"dtype": "video", "shape": [96, 96, 3], "names": ["height", "width", "channels"]}


# ---- the reference data and LeRobot-layout fixtures built from it ---------------------------------
@pytest.fixture(scope="module")
def pusht_npz(tmp_path_factory):
    """A Diffusion Policy low-dim npz (state, action, episode_ends, env) of five uneven episodes."""
    rng = np.random.default_rng(3)
    n = sum(LENGTHS)
    state = np.concatenate([rng.uniform(0, 512, (n, 4)), rng.uniform(0, 2 * np.pi, (n, 1))], axis=1).astype(np.float32)
    action = rng.uniform(0, 512, (n, 2)).astype(np.float32)
    p = tmp_path_factory.mktemp("ref") / "pusht_small.npz"
    np.savez(p, state=state, action=action, episode_ends=np.cumsum(LENGTHS).astype(np.int64), env=np.array("pusht"))
    return p


def _frames(npz: Path) -> list[dict[str, np.ndarray]]:
    """Per-episode LeRobot columns for the npz: state = agent xy, environment_state = block xy, cos, sin."""
    z = np.load(npz)
    feats = pusht_features(z["state"])
    out, start = [], 0
    for e, end in enumerate(z["episode_ends"]):
        n = int(end) - start
        frame = np.arange(n, dtype=np.int64)
        out.append({"action": z["action"][start:end], "observation.state": feats[start:end, :2],
                    "observation.environment_state": feats[start:end, 2:],
                    "timestamp": (frame / FPS).astype(np.float32), "frame_index": frame,
                    "episode_index": np.full(n, e, np.int64), "index": np.arange(start, end, dtype=np.int64),
                    "task_index": np.zeros(n, np.int64), "next.done": frame == n - 1})
        start = int(end)
    return out


def _features(names_as_dict: bool = False) -> dict:
    motors = ["agent_x", "agent_y"]
    return {
        "observation.image": VIDEO,
        "observation.state": {"dtype": "float32", "shape": [2], "names": {"motors": motors} if names_as_dict else motors},
        "observation.environment_state": {"dtype": "float32", "shape": [4],
                                          "names": ["block_x", "block_y", "block_cos", "block_sin"]},
        "action": {"dtype": "float32", "shape": [2], "names": {"motors": motors} if names_as_dict else motors},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def _table(ep: dict[str, np.ndarray], features: dict):
    """One episode as LeRobot's HF datasets writes it: a vector feature is Sequence(length=n)
    (fixed_size_list<item>[n]), a shape-[1] feature a scalar column; video features have no column."""
    cols, names = [], []
    for name, ft in features.items():
        if ft["dtype"] in ("video", "image"):
            continue
        v = ep[name]
        if ft["shape"] == [1]:
            cols.append(pa.array(v))
        else:
            typ = pa.list_(pa.from_numpy_dtype(np.dtype(ft["dtype"])), ft["shape"][0])
            cols.append(pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(v).reshape(-1)), type=typ))
        names.append(name)
    return pa.Table.from_arrays(cols, names=names)


def write_v21(root: Path, episodes: list[dict], chunks_size: int = 2, features: dict | None = None) -> Path:
    """LeRobot v2.1: one parquet per episode under chunk-{episode_index // chunks_size}, jsonl metadata."""
    features = features or _features(names_as_dict=True)
    (root / "meta").mkdir(parents=True)
    for ep in episodes:
        e = int(ep["episode_index"][0])
        p = root / f"data/chunk-{e // chunks_size:03d}/episode_{e:06d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(ep, features), p)
    (root / "meta/episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": int(ep["episode_index"][0]), "tasks": ["Push the T-shaped block onto the target."],
                    "length": len(ep["index"])}) + "\n" for ep in episodes))
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "Push the T-shaped block onto the target."}) + "\n")
    n_frames = sum(len(ep["index"]) for ep in episodes)
    info = {"codebase_version": "v2.1", "robot_type": "pusht", "total_episodes": len(episodes), "total_frames": n_frames,
            "total_tasks": 1, "total_videos": len(episodes), "total_chunks": (len(episodes) - 1) // chunks_size + 1,
            "chunks_size": chunks_size, "fps": FPS, "splits": {"train": f"0:{len(episodes)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


def write_v30(root: Path, episodes: list[dict], episodes_per_file: int = 2, chunks_size: int = 2,
              episodes_per_meta_file: int = 3, features: dict | None = None) -> Path:
    """LeRobot v3.0: several episodes per data file, file-NNN numbered within chunk-NNN up to
    chunks_size files; episode rows in meta/episodes/chunk-000/file-NNN.parquet; meta/tasks.parquet."""
    features = features or _features()
    (root / "meta").mkdir(parents=True)
    rows, chunk, file = [], 0, 0
    for i in range(0, len(episodes), episodes_per_file):
        group = episodes[i:i + episodes_per_file]
        p = root / f"data/chunk-{chunk:03d}/file-{file:03d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(p, _table(group[0], features).schema) as w:
            for ep in group:
                w.write_table(_table(ep, features))
                rows.append({"episode_index": int(ep["episode_index"][0]), "tasks": ["Push the T-shaped block onto the target."],
                             "length": len(ep["index"]), "data/chunk_index": chunk, "data/file_index": file,
                             "dataset_from_index": int(ep["index"][0]), "dataset_to_index": int(ep["index"][-1]) + 1,
                             "videos/observation.image/chunk_index": 0, "videos/observation.image/file_index": 0,
                             "videos/observation.image/from_timestamp": 0.0,
                             "videos/observation.image/to_timestamp": len(ep["index"]) / FPS})
        chunk, file = (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)
    for j in range(0, len(rows), episodes_per_meta_file):
        p = root / f"meta/episodes/chunk-000/file-{j // episodes_per_meta_file:03d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        part = [dict(r, **{"meta/episodes/chunk_index": 0, "meta/episodes/file_index": j // episodes_per_meta_file})
                for r in rows[j:j + episodes_per_meta_file]]
        pq.write_table(pa.Table.from_pylist(part), p)
    pq.write_table(pa.table({"task_index": [0], "task": ["Push the T-shaped block onto the target."]}),
                   root / "meta/tasks.parquet")
    n_frames = sum(len(ep["index"]) for ep in episodes)
    info = {"codebase_version": "v3.0", "robot_type": "pusht", "total_episodes": len(episodes),
            "total_frames": n_frames, "total_tasks": 1, "chunks_size": chunks_size, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200, "fps": FPS, "splits": {"train": f"0:{len(episodes)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


@pytest.fixture(scope="module")
def roots(pusht_npz, tmp_path_factory):
    d = tmp_path_factory.mktemp("lerobot")
    eps = _frames(pusht_npz)
    return {"v2.1": write_v21(d / "v21", eps), "v3.0": write_v30(d / "v30", eps)}


def _same_windows(a, b, horizon=8):
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.episode_ends, b.episode_ends)
    assert (a.goals is None) == (b.goals is None)
    if a.goals is not None:
        np.testing.assert_array_equal(a.goals, b.goals)
    wa, wb = WindowSet(a, horizon), WindowSet(b, horizon)
    np.testing.assert_array_equal(wa.starts, wb.starts)
    np.testing.assert_array_equal(wa.windows(wa.starts), wb.windows(wb.starts))
    np.testing.assert_array_equal(wa.conditions(wa.starts), wb.conditions(wb.starts))
    return wa


# ---- equivalence ----------------------------------------------------------------------------------
def test_fixture_layouts_are_lerobots(roots):
    v30 = roots["v3.0"]
    data = sorted(p.relative_to(v30).as_posix() for p in v30.glob("data/*/*.parquet"))
    assert data == ["data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet",
                    "data/chunk-001/file-000.parquet"]  # 2 episodes per file, 2 files per chunk
    assert pq.read_table(v30 / data[0]).column("episode_index").to_pylist().count(1) == 40
    assert len(list(v30.glob("meta/episodes/chunk-000/*.parquet"))) == 2
    v21 = sorted(p.relative_to(roots["v2.1"]).as_posix() for p in roots["v2.1"].glob("data/*/*.parquet"))
    assert v21[0] == "data/chunk-000/episode_000000.parquet" and v21[-1] == "data/chunk-002/episode_000004.parquet"


@pytest.mark.parametrize("layout", ["v2.1", "v3.0"])
@pytest.mark.parametrize("history", [1, 2])
def test_both_layouts_read_the_npz_windows_value_for_value(roots, pusht_npz, layout, history):
    ref = load_trajectories(pusht_npz, obs_history=history)
    tr = load_trajectories(roots[layout], obs_history=history)
    _same_windows(ref, tr)
    assert tr.env == ref.env == "pusht" and tr.goals is None
    assert np.flatnonzero(tr.episode_ends).tolist() == (np.cumsum(LENGTHS) - 1).tolist()
    assert tr.step_dt_s == pytest.approx(0.1)
    assert tr.obs_names == ["agent_x", "agent_y", "block_x", "block_y", "block_cos", "block_sin"]  # names: list or {"motors": [...]}
    assert tr.act_names == ["agent_x", "agent_y"]


def test_video_features_are_listed_and_skipped(roots):
    notes = []
    read_lerobot(roots["v3.0"], note=notes.append)
    assert len(notes) == 1 and "skipping 1 image/video" in notes[0] and "observation.image (video, 96x96x3)" in notes[0]


def test_observation_features_are_a_choice(roots, tmp_path):
    tr = load_trajectories(f"{roots['v3.0']}?obs=observation.state")
    assert tr.obs_dim == 2 and tr.obs_names == ["agent_x", "agent_y"]
    tr = load_trajectories(f"{roots['v2.1']}?obs=observation.environment_state,observation.state&action=action")
    ref = load_trajectories(roots["v2.1"])
    np.testing.assert_array_equal(tr.observations, np.concatenate([ref.observations[:, 2:], ref.observations[:, :2]], 1))
    with pytest.raises(DataError, match="cannot parse"):
        load_trajectories(f"{roots['v3.0']}?observations=x")
    with pytest.raises(DataError, match="no usable state feature 'observation.velocity'.*its features: .*observation.state"):
        load_trajectories(f"{roots['v3.0']}?obs=observation.velocity")
    npz = tmp_path / "x.npz"
    np.savez(npz, state=np.zeros((4, 2), np.float32), action=np.zeros((4, 1), np.float32), episode_ends=np.array([4]))
    with pytest.raises(DataError, match="not one"):
        load_trajectories(f"{npz}?obs=observation.state")


def test_to_lerobot_pusht_npz_round_trip(pusht_npz, tmp_path):
    out = tmp_path / "pusht_v30"
    r = CliRunner().invoke(cli, ["data", "to-lerobot", str(pusht_npz), str(out), "--episodes-per-file", "2",
                                 "--chunks-size", "2"])
    assert r.exit_code == 0, r.output
    assert "5 episodes" in r.output and "3 data file(s)" in r.output
    info = json.loads((out / "meta/info.json").read_text())
    assert (info["codebase_version"], info["fps"], info["robot_type"], info["total_episodes"], info["total_frames"]) == \
        ("v3.0", 10, "pusht", 5, sum(LENGTHS))
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet" and info["video_path"] is None
    assert list(info["features"])[-5:] == ["timestamp", "frame_index", "episode_index", "index", "task_index"]
    assert info["features"]["observation.state"] == {"dtype": "float32", "shape": [2], "names": ["agent_x", "agent_y"]}
    schema = pq.read_schema(out / "data/chunk-001/file-000.parquet")
    assert schema.field("observation.environment_state").type == pa.list_(pa.float32(), 4)
    assert schema.field("frame_index").type == pa.int64() and schema.field("timestamp").type == pa.float32()
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["data/chunk_index"], e["data/file_index"]) for e in eps] == [(0, 0), (0, 0), (0, 1), (0, 1), (1, 0)]
    assert [e["dataset_to_index"] - e["dataset_from_index"] for e in eps] == [e["length"] for e in eps] == LENGTHS
    assert eps[0]["stats/action/count"] == [LENGTHS[0]] and len(eps[0]["stats/observation.environment_state/mean"]) == 4
    tasks = pq.read_table(out / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["Push the T-shaped block onto the target."]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]  # pandas reads 'task' as the index
    assert set(json.loads((out / "meta/stats.json").read_text())["action"]) >= {"min", "max", "mean", "std", "count"}
    _same_windows(load_trajectories(pusht_npz, obs_history=2), load_trajectories(out, obs_history=2))
    r = CliRunner().invoke(cli, ["data", "to-lerobot", str(pusht_npz), str(out)])
    assert r.exit_code == 2 and "not empty" in r.output


def test_to_lerobot_pointmaze_hdf5_keeps_goals(tmp_path):
    from kdp_edge.data.pointmaze import write_d4rl_hdf5

    rng = np.random.default_rng(0)
    n = 230
    obs = np.cumsum(rng.normal(0, 0.05, (n, 4)), axis=0).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[49::50] = timeouts[-1] = True
    arrays = {"observations": obs, "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
              "terminals": np.zeros(n, bool), "timeouts": timeouts,
              "infos/goal": np.repeat(rng.uniform(0, 3, (5, 2)), 46, axis=0).astype(np.float32)}
    h5 = write_d4rl_hdf5(tmp_path / "umaze.hdf5", arrays, {"env": "pointmaze-umaze"})
    out = tmp_path / "umaze_v30"
    r = CliRunner().invoke(cli, ["data", "to-lerobot", str(h5), str(out), "--episodes-per-file", "2"])
    assert r.exit_code == 0, r.output
    info = json.loads((out / "meta/info.json").read_text())
    assert info["fps"] == 100 and info["robot_type"] == "pointmaze-umaze" and info["total_episodes"] == 5
    assert info["features"]["observation.goal"]["names"] == ["goal_x", "goal_y"]
    assert len(list(out.glob("data/chunk-000/*.parquet"))) == 3
    ref, tr = load_trajectories(h5), load_trajectories(out)
    _same_windows(ref, tr, horizon=16)
    assert tr.env == "pointmaze-umaze" and tr.step_dt_s == pytest.approx(0.01) and tr.obs_names == ["x", "y", "vx", "vy"]
    _same_windows(load_trajectories(h5, goal="hindsight"), load_trajectories(out, goal="hindsight"))


# ---- run.json / bundle.json fields ----------------------------------------------------------------
def test_run_and_bundle_keep_step_period_and_names(roots, tmp_path):
    pytest.importorskip("torch")
    from export.pipeline import ExportOptions, manifest_for_run
    from kdp_edge.bundle import BundleManifest
    from kdp_edge.checkpoint import RunInfo, load_run
    from kdp_edge.config import TrainConfig
    from kdp_edge.train import Trainer

    cfg = TrainConfig.from_dict({"data": {"path": str(roots["v3.0"]), "horizon": 8, "goal": "none"},
                                 "model": {"mlp_hidden": 32, "mlp_layers": 2},
                                 "optim": {"steps": 2, "conditions": 4, "samples": 4, "positives": 4},
                                 "threads": 1, "log_every": 1})
    Trainer(cfg, tmp_path / "run", log=lambda *_: None).run(progress=False)
    run = load_run(tmp_path / "run")
    assert run.info.step_dt_s == pytest.approx(0.1) and run.info.act_names == ["agent_x", "agent_y"]
    assert run.info.obs_names[2:] == ["block_x", "block_y", "block_cos", "block_sin"]
    m = manifest_for_run(run, None, ExportOptions())
    assert m.step_dt_s == pytest.approx(0.1) and m.obs_names == run.info.obs_names and m.goal_dim == 0
    back = BundleManifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.act_names == ["agent_x", "agent_y"]
    old = {k: v for k, v in m.to_dict().items() if k not in ("obs_names", "act_names")}
    assert BundleManifest.from_dict(old).obs_names == []  # bundles from before: still load
    m.obs_names, m.act_names = [], []
    assert "obs_names" not in m.to_dict()  # and bundles without names stay readable by older runtimes
    legacy = {k: v for k, v in json.loads((tmp_path / "run/run.json").read_text()).items()
              if k not in ("step_dt_s", "obs_names", "act_names")}
    assert RunInfo(**legacy).step_dt_s == 0.0  # run.json files from before load


# ---- the real PushT demonstrations ----------------------------------------------------------------
def test_real_pusht_v30_trains_like_the_npz(tmp_path):
    """Converted to v3.0 (several files), the 206 demonstrations give identical windows (obs history 2,
    horizon 16) and identical losses for the first training steps from the same seed."""
    npz = default_pusht_path()
    if not npz.exists():
        pytest.skip(f"the PushT demonstrations are not here: looked for {npz} (../shared/datasets/pusht/ beside the "
                    "repo, or $KDP_PUSHT_DATA)")
    pytest.importorskip("torch")
    from kdp_edge.config import RECIPES, TrainConfig, merge
    from kdp_edge.train import Trainer

    out = write_lerobot_v30(load_trajectories(npz), tmp_path / "pusht_v30", episodes_per_file=64)
    assert len(list(out.glob("data/chunk-000/*.parquet"))) == 4
    ref, tr = load_trajectories(npz, obs_history=2), load_trajectories(out, obs_history=2)
    ws = _same_windows(ref, tr, horizon=16)
    assert len(ws) > 20_000 and tr.env == "pusht"

    def losses(data: str, name: str) -> list[float]:
        d = merge(RECIPES["pusht"], {"data": {"path": data}, "optim": {"steps": 5, "conditions": 8, "samples": 8},
                                     "threads": 1, "log_every": 1, "seed": 7})
        Trainer(TrainConfig.from_dict(d), tmp_path / name, log=lambda *_: None).run(progress=False)
        return [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    a, b = losses(str(npz), "npz"), losses(str(out), "v30")
    assert len(a) == 5 and a == b, (a, b)


# ---- broken inputs --------------------------------------------------------------------------------
def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / root.name))


def _edit_info(root: Path, **changes) -> None:
    p = root / "meta/info.json"
    info = json.loads(p.read_text())
    info.update(changes)
    p.write_text(json.dumps(info))


def test_missing_or_unreadable_info_json(roots, tmp_path):
    bad = _copy(roots["v3.0"], tmp_path)
    (bad / "meta/info.json").unlink()
    with pytest.raises(DataError, match=r"meta/info.json is missing"):
        load_trajectories(bad)
    (bad / "meta/info.json").write_text('{"codebase_version": "v3.0", "fps": ')
    with pytest.raises(DataError, match="cannot read as JSON"):
        load_trajectories(bad)
    r = CliRunner().invoke(cli, ["train", "--data", str(bad), "--out", str(tmp_path / "run"), "--steps", "1"])
    assert r.exit_code == 2 and "cannot read as JSON" in r.output and "Traceback" not in r.output


def test_unknown_codebase_version(roots, tmp_path):
    bad = _copy(roots["v2.1"], tmp_path)
    _edit_info(bad, codebase_version="v1.6")
    with pytest.raises(DataError, match=r"unknown codebase_version 'v1.6'; kdp-edge reads v2.0, v2.1, v3.0"):
        load_trajectories(bad)


@pytest.mark.parametrize("layout, victim", [("v3.0", "data/chunk-000/file-001.parquet"),
                                            ("v2.1", "data/chunk-001/episode_000003.parquet")])
def test_missing_data_file(roots, tmp_path, layout, victim):
    bad = _copy(roots[layout], tmp_path)
    (bad / victim).unlink()
    with pytest.raises(DataError, match=rf"1 of \d data files .* absent: {victim}"):
        load_trajectories(bad)


def test_mismatched_shape(roots, tmp_path):
    bad = _copy(roots["v3.0"], tmp_path)
    feats = json.loads((bad / "meta/info.json").read_text())["features"]
    feats["observation.state"]["shape"] = [3]
    _edit_info(bad, features=feats)
    with pytest.raises(DataError, match=r"file-000.parquet: 'observation.state' has rows of \[2\] values but info.json "
                                        r"gives it shape \[3\]"):
        load_trajectories(bad)


def test_episode_lengths_must_match_the_metadata(roots, tmp_path):
    bad = _copy(roots["v2.1"], tmp_path)
    lines = (bad / "meta/episodes.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"length": 17', '"length": 18')
    (bad / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="episode 2: metadata 18, data 17 frames"):
        load_trajectories(bad)


def test_nan_rows_say_how_many_and_where(pusht_npz, tmp_path):
    eps = _frames(pusht_npz)
    eps[3]["observation.environment_state"] = eps[3]["observation.environment_state"].copy()
    eps[3]["observation.environment_state"][[5, 6, 9], 1] = np.nan
    root = write_v30(tmp_path / "nan", eps)
    with pytest.raises(DataError, match=r"3 row\(s\) of the observation .* contain NaN or inf, in 1 episode\(s\) \[3\]; "
                                        r"first: episode 3 frame 5 in data/chunk-000/file-001.parquet"):
        load_trajectories(root)


def test_no_usable_state_feature_names_the_features(pusht_npz, tmp_path):
    feats = {k: v for k, v in _features().items() if k not in ("observation.state", "observation.environment_state")}
    feats["observation.images.top"] = VIDEO
    root = write_v30(tmp_path / "images_only", _frames(pusht_npz), features=feats)
    with pytest.raises(DataError, match=r"no usable state feature 'observation.state' .*its features: observation.image "
                                        r"\(video, 96x96x3\), action \(float32, 2\)"):
        load_trajectories(root)
    feats["observation.joints"] = {"dtype": "float32", "shape": [2], "names": None}
    eps = _frames(pusht_npz)
    for ep in eps:
        ep["observation.joints"] = ep["observation.state"]
    root = write_v30(tmp_path / "joints", eps, features=feats)
    with pytest.raises(DataError, match=r"\?obs=observation.joints"):  # the error says how to choose
        load_trajectories(root)
    tr = load_trajectories(f"{root}?obs=observation.joints")
    assert tr.obs_names == ["observation.joints[0]", "observation.joints[1]"]


def test_a_meta_folder_without_info_is_not_taken_for_minari(tmp_path):
    (tmp_path / "ds/meta").mkdir(parents=True)
    with pytest.raises(DataError, match="not a LeRobot dataset root: meta/info.json is missing"):
        load_trajectories(tmp_path / "ds")
