"""LeRobotDataset roots on local disk, read and written with pyarrow only (no ``lerobot`` package).

A LeRobotDataset root is a directory with ``meta/info.json``; its ``codebase_version`` picks the layout:

    v3.0   data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet   many episodes per file
           meta/episodes/chunk-*/file-*.parquet   one row per episode: episode_index, length,
                                                  data/chunk_index, data/file_index, ...
           meta/tasks.parquet
    v2.1   data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet   one file per episode
    v2.0   (episode_chunk = episode_index // chunks_size)
           meta/episodes.jsonl  {"episode_index", "tasks", "length"} per line;  meta/tasks.jsonl

(the data file template is ``data_path`` in info.json, the one used here). Every data row is one
frame: ``episode_index``, ``frame_index``, ``index``, ``timestamp``, ``task_index`` and one column per
feature of ``info.json["features"]`` (a fixed-size list for a vector feature). kdp-edge uses:

    observation  ``observation.state`` (+ ``observation.environment_state`` when present), or the
                 features named with ``DIR?obs=a,b`` (concatenated in that order)
    action       ``action`` (``DIR?action=name`` for another)
    goal         ``observation.goal`` when present (kdp-edge's own convention, written by
                 ``kdp-edge data to-lerobot`` for goal-conditioned data; LeRobot has no goal feature)
    boundaries   a new episode wherever ``episode_index`` changes
    step period  1 / ``fps``;  feature ``names`` become the run's and bundle's obs/act names
    env          ``robot_type`` unless it is empty or "unknown"

Image and video features are listed in a note and skipped. :func:`write_lerobot_v30` writes
kdp-edge trajectories in the v3.0 layout (``kdp-edge data to-lerobot``).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, require
from ..windows import Trajectories, segments

INFO = Path("meta") / "info.json"
SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
STATE, ENV_STATE, ACTION, GOAL = "observation.state", "observation.environment_state", "action", "observation.goal"
VISUAL = ("image", "video")
NUMERIC = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
           "uint64", "bool")
# v3.0 defaults, as LeRobot writes them
V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
DEFAULT_CHUNKS_SIZE = 1000  # files per chunk directory
DEFAULT_DATA_FILE_MB = 100
DEFAULT_VIDEO_FILE_MB = 200
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
FRAME_COLUMNS = {  # LeRobot's DEFAULT_FEATURES: present in every data file
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def _pa():
    pa = require("pyarrow", "lerobot", "Reading and writing LeRobot datasets")
    import pyarrow.compute  # noqa: F401  (registers pa.compute)
    import pyarrow.parquet  # noqa: F401

    return pa


def is_lerobot_root(p: Path) -> bool:
    """A directory that is (or tries to be) a LeRobotDataset root: it has meta/info.json, or a meta/
    folder, or data/chunk-* folders (then a missing info.json is reported, not a Minari error)."""
    p = Path(p)
    return p.is_dir() and ((p / INFO).exists() or (p / "meta").is_dir() or any((p / "data").glob("chunk-*")))


def split_spec(path: str) -> tuple[str, dict[str, list[str]]]:
    """``DIR?obs=a,b&action=c`` -> (DIR, {"obs": [a, b], "action": [c]}); a path without '?' -> (path, {})."""
    base, sep, query = str(path).partition("?")
    if not sep:
        return base, {}
    out: dict[str, list[str]] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        names = [v.strip() for v in value.split(",") if v.strip()]
        if key not in ("obs", "action") or not eq or not names:
            raise DataError(f"{path}: cannot parse '?{query}'; select LeRobot features with "
                            "DIR?obs=observation.state,observation.environment_state (and optionally &action=action)")
        if key == "action" and len(names) != 1:
            raise DataError(f"{path}: '?action=' takes one feature name, got {names}")
        out[key] = names
    return base, out


# ---- reading -------------------------------------------------------------------------------------
@dataclass
class LeRobotInfo:
    root: Path
    version: str
    fps: float
    features: dict[str, dict]
    data_path: str
    chunks_size: int
    robot_type: str = ""
    raw: dict = field(default_factory=dict)

    def describe(self, name: str) -> str:
        ft = self.features[name]
        shape = "x".join(str(s) for s in ft.get("shape") or [])
        return f"{name} ({ft.get('dtype')}, {shape or '?'})"

    @property
    def visual(self) -> list[str]:
        return [k for k, ft in self.features.items() if ft.get("dtype") in VISUAL]

    def names(self, name: str) -> list[str]:
        """The feature's per-value names (a list, or the one list of a dict such as {"motors": [...]});
        ``name[i]`` when absent or not matching the shape."""
        ft = self.features[name]
        width = int(np.prod(ft.get("shape") or [1]))
        names = ft.get("names")
        if isinstance(names, dict):
            names = [n for v in names.values() if isinstance(v, list) for n in v]
        if isinstance(names, list) and len(names) == width and all(isinstance(n, str) for n in names):
            return list(names)
        return [f"{name}[{i}]" for i in range(width)]


def read_info(root: str | Path) -> LeRobotInfo:
    """``meta/info.json`` checked: version, fps, features, data_path template."""
    root = Path(root)
    p = root / INFO
    if not p.exists():
        raise DataError(f"{root}: not a LeRobot dataset root: {INFO} is missing (a LeRobotDataset folder holds meta/ "
                        "and data/; point --data at the folder that contains meta/info.json)")
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: cannot read as JSON ({exc}); the file is truncated or not LeRobot's info.json") from exc
    if not isinstance(info, dict):
        raise DataError(f"{p}: expected a JSON object, got {type(info).__name__}")
    version = info.get("codebase_version")
    if version is None:
        raise DataError(f"{p}: no 'codebase_version'; kdp-edge reads LeRobot datasets of versions "
                        f"{', '.join(SUPPORTED_VERSIONS)}")
    if version not in SUPPORTED_VERSIONS:
        raise DataError(f"{p}: unknown codebase_version {version!r}; kdp-edge reads {', '.join(SUPPORTED_VERSIONS)}. "
                        "Convert older datasets with lerobot's conversion scripts (v1.x -> v2.1 -> v3.0)")
    missing = [k for k in ("fps", "features") if k not in info]
    if missing:
        raise DataError(f"{p}: missing {missing}; info.json of a LeRobot {version} dataset has them")
    features = info["features"]
    fps = info["fps"]
    if not isinstance(features, dict) or not all(isinstance(v, dict) for v in features.values()):
        raise DataError(f"{p}: 'features' must map feature names to {{dtype, shape, names}} objects")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
        raise DataError(f"{p}: fps must be a positive number, got {fps!r}")
    default_path = V30_DATA_PATH if version == "v3.0" else \
        "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    robot = info.get("robot_type") or ""
    return LeRobotInfo(root=root, version=version, fps=float(fps), features=features,
                       data_path=str(info.get("data_path") or default_path),
                       chunks_size=int(info.get("chunks_size") or DEFAULT_CHUNKS_SIZE),
                       robot_type="" if robot == "unknown" else str(robot), raw=info)


def _format(info: LeRobotInfo, **keys) -> Path:
    try:
        return info.root / info.data_path.format(**keys)
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(f"{info.root / INFO}: data_path template {info.data_path!r} does not fit a "
                        f"{info.version} dataset (fields {sorted(keys)}): {exc}") from exc


def _episodes_v3(info: LeRobotInfo) -> list[dict]:
    pa = _pa()
    files = sorted((info.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DataError(f"{info.root}: no episode metadata (meta/episodes/chunk-*/file-*.parquet); a LeRobot v3.0 "
                        "dataset lists its episodes there")
    rows: list[dict] = []
    want = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    for f in files:
        try:
            names = pa.parquet.read_schema(f).names
            missing = [c for c in want if c not in names]
            if missing:
                raise DataError(f"{f}: episode metadata without columns {missing}")
            rows += pa.parquet.read_table(f, columns=want).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{f}: cannot read as parquet ({exc})") from exc
    return sorted(rows, key=lambda r: r["episode_index"])


def _episodes_v2(info: LeRobotInfo) -> list[dict]:
    p = info.root / "meta" / "episodes.jsonl"
    if not p.exists():
        raise DataError(f"{info.root}: meta/episodes.jsonl is missing; a LeRobot {info.version} dataset lists its "
                        "episodes there")
    rows = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({"episode_index": int(row["episode_index"]), "length": int(row["length"])})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{p}:{i}: not an episode line {{\"episode_index\", \"length\", ...}} ({exc})") from exc
    return sorted(rows, key=lambda r: r["episode_index"])


def _data_files(info: LeRobotInfo, episodes: list[dict]) -> list[Path]:
    """The data files of the episodes, in episode order, each once; every one must exist."""
    if info.version == "v3.0":
        paths = [_format(info, chunk_index=int(e["data/chunk_index"]), file_index=int(e["data/file_index"]))
                 for e in episodes]
    else:
        paths = [_format(info, episode_chunk=e["episode_index"] // info.chunks_size, episode_index=e["episode_index"])
                 for e in episodes]
    paths = list(dict.fromkeys(paths))
    absent = [p for p in paths if not p.exists()]
    if absent:
        shown = ", ".join(str(p.relative_to(info.root)) for p in absent[:3]) + (" ..." if len(absent) > 3 else "")
        raise DataError(f"{info.root}: {len(absent)} of {len(paths)} data files named by the episode metadata and "
                        f"info.json's data_path {info.data_path!r} are absent: {shown}. The copy is incomplete: "
                        "copy the whole dataset folder again")
    return paths


def _to_matrix(col, name: str, width: int, where: Path) -> np.ndarray:
    """An arrow column (fixed-size list, list, or scalar) -> [rows, width] numpy."""
    pa = _pa()
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.null_count:
        raise DataError(f"{where}: column '{name}' has {col.null_count} empty (null) rows")
    t = col.type
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pa.compute.list_value_length(col).to_numpy(zero_copy_only=False)
        have = sorted(set(lengths.tolist()))
        if len(have) > 1 or (have and have[0] != width):
            raise DataError(f"{where}: '{name}' has rows of {have} values but info.json gives it shape [{width}]; "
                            "the data and meta/info.json disagree (re-export the dataset)")
        values = col.flatten()
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_boolean(values.type)):
            raise DataError(f"{where}: '{name}' holds {values.type} values; only numbers are usable")
        return values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), width)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        if width != 1:
            raise DataError(f"{where}: '{name}' holds one value per row but info.json gives it shape [{width}]")
        return col.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 1)
    raise DataError(f"{where}: column '{name}' has type {t}; expected a list of numbers")


def _pick_features(info: LeRobotInfo, spec: dict[str, list[str]]) -> tuple[list[str], str]:
    feats = info.features
    obs = spec.get("obs") or ([STATE] + ([ENV_STATE] if ENV_STATE in feats else []))
    action = (spec.get("action") or [ACTION])[0]
    usable = [k for k, ft in feats.items() if ft.get("dtype") in NUMERIC and k not in FRAME_COLUMNS
              and len(ft.get("shape") or [1]) == 1]
    listing = (f"its features: {', '.join(info.describe(k) for k in feats)}" if feats else "it lists no features")
    choose = [u for u in usable if u.startswith("observation.") and u != action] or \
        [u for u in usable if u != action and not u.startswith("next.")]
    hint = f"; choose the observation with --data '{info.root}?obs={','.join(choose)}'" if choose else ""
    for name in [*obs, action]:
        ft = feats.get(name)
        if ft is None:
            what = "action feature" if name == action else "state feature"
            raise DataError(f"{info.root}: no usable {what} '{name}' (kdp-edge trains on state vectors; image and "
                            f"video features are skipped); {listing}{hint if name != action else ''}")
        if ft.get("dtype") not in NUMERIC or name in FRAME_COLUMNS or len(ft.get("shape") or [1]) != 1:
            raise DataError(f"{info.root}: feature {info.describe(name)} is not a usable vector (numbers, 1-D shape); "
                            f"{listing}{hint}")
    return obs, action


def read_lerobot(root: str | Path, obs: list[str] | None = None, action: str | None = None,
                 note=None) -> Trajectories:
    """A LeRobotDataset root (v2.0 / v2.1 / v3.0) -> :class:`Trajectories` (see the module docstring).

    ``obs``: the features concatenated into the observation (default ``observation.state`` plus
    ``observation.environment_state`` when present); ``action``: the action feature. ``note``
    receives the line listing skipped image / video features (default: stderr)."""
    pa = _pa()
    info = read_info(root)
    spec = {k: v for k, v in (("obs", obs), ("action", [action] if action else None)) if v}
    obs_names_f, act_name = _pick_features(info, spec)
    goal_name = GOAL if GOAL in info.features and GOAL not in obs_names_f and GOAL != act_name else None
    if info.visual:
        msg = (f"note: {info.root}: skipping {len(info.visual)} image/video feature(s) (kdp-edge plans from state "
               f"vectors): {', '.join(info.describe(k) for k in info.visual)}")
        (note or (lambda m: print(m, file=sys.stderr)))(msg)
    episodes = _episodes_v3(info) if info.version == "v3.0" else _episodes_v2(info)
    if not episodes:
        raise DataError(f"{info.root}: the episode metadata lists no episodes")
    files = _data_files(info, episodes)
    wanted = [*dict.fromkeys([*obs_names_f, act_name, *([goal_name] if goal_name else [])])]
    widths = {k: int(np.prod(info.features[k].get("shape") or [1])) for k in wanted}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in [*wanted, "episode_index", "frame_index", "file"]}
    for i, f in enumerate(files):
        try:
            names = pa.parquet.read_schema(f).names
            absent = [c for c in [*wanted, "episode_index"] if c not in names]
            if absent:
                raise DataError(f"{f}: no column(s) {absent} (info.json lists them); the file has {names}")
            cols = [*wanted, "episode_index"] + (["frame_index"] if "frame_index" in names else [])
            table = pa.parquet.read_table(f, columns=cols)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{f}: cannot read as parquet ({exc}); the file is truncated: copy it again") from exc
        for k in wanted:
            parts[k].append(_to_matrix(table.column(k), k, widths[k], f))
        ep = _to_matrix(table.column("episode_index"), "episode_index", 1, f)[:, 0].astype(np.int64)
        parts["episode_index"].append(ep)
        if "frame_index" in cols:
            parts["frame_index"].append(_to_matrix(table.column("frame_index"), "frame_index", 1, f)[:, 0].astype(np.int64))
        else:
            parts["frame_index"].append(np.full(len(ep), -1, np.int64))
        parts["file"].append(np.full(len(ep), i, np.int32))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    ep = cat["episode_index"]
    if len(ep) == 0:
        raise DataError(f"{info.root}: the data files hold no frames")
    change = np.flatnonzero(ep[1:] != ep[:-1])
    seg_eps = ep[np.concatenate([[0], change + 1])]
    if len(np.unique(seg_eps)) != len(seg_eps):
        raise DataError(f"{info.root}: the frames of an episode are not contiguous (episode_index runs: "
                        f"{seg_eps[:10].tolist()}...); the data files are out of order")
    meta_len = {int(e["episode_index"]): int(e["length"]) for e in episodes}
    data_len = dict(zip(seg_eps.tolist(), np.diff(np.concatenate([[0], change + 1, [len(ep)]])).tolist(), strict=True))
    bad = [(e, meta_len.get(e), n) for e, n in data_len.items() if meta_len.get(e) != n]
    bad += [(e, n, 0) for e, n in meta_len.items() if e not in data_len]
    if bad:
        shown = "; ".join(f"episode {e}: metadata {m if m is not None else 'none'}, data {n} frames" for e, m, n in bad[:3])
        raise DataError(f"{info.root}: {len(bad)} episode(s) disagree between the episode metadata and the data files "
                        f"({shown}); the dataset is incomplete or was edited by hand")
    obs = np.concatenate([cat[k] for k in obs_names_f], axis=1)
    act = cat[act_name]
    goals = cat[goal_name] if goal_name else None
    for what, arr in (("observation", obs), ("action", act), ("goal", goals)):
        if arr is None:
            continue
        rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        if len(rows):
            eps = np.unique(ep[rows])
            r = rows[0]
            first = (f"episode {ep[r]} frame {cat['frame_index'][r] if cat['frame_index'][r] >= 0 else '?'} "
                     f"in {files[cat['file'][r]].relative_to(info.root)}")
            raise DataError(f"{info.root}: {len(rows)} row(s) of the {what} "
                            f"({', '.join(obs_names_f) if what == 'observation' else act_name if what == 'action' else goal_name}) "
                            f"contain NaN or inf, in {len(eps)} episode(s) {eps[:10].tolist()}{' ...' if len(eps) > 10 else ''}; "
                            f"first: {first}. Drop or repair those episodes first")
    flags = np.zeros(len(ep), bool)
    flags[change] = True
    flags[-1] = True
    return Trajectories(obs.astype(np.float32), act.astype(np.float32), flags,
                        goals.astype(np.float32) if goals is not None else None, source=str(info.root),
                        env=info.robot_type, step_dt_s=1.0 / info.fps,
                        obs_names=[n for k in obs_names_f for n in info.names(k)], act_names=info.names(act_name))


# ---- writing (v3.0) ------------------------------------------------------------------------------
ENV_PRESETS = {  # env -> (fps, observation features [(name, start, stop, value names)], action names, goal names, task)
    "pusht": (10, [(STATE, 0, 2, ["agent_x", "agent_y"]),
                   (ENV_STATE, 2, 6, ["block_x", "block_y", "block_cos", "block_sin"])],
              ["target_x", "target_y"], None, "Push the T-shaped block onto the target."),
    "pointmaze": (100, [(STATE, 0, 4, ["x", "y", "vx", "vy"])], ["force_x", "force_y"], ["goal_x", "goal_y"],
                  "Move the point mass to the goal."),
}


def _preset(traj: Trajectories, fps: float | None, task: str | None):
    from ..envs import env_for

    preset = ENV_PRESETS.get(env_for(traj.env).name)  # keyed by the environment plug-in's name
    if preset and (traj.obs_dim != preset[1][-1][2] or traj.act_dim != len(preset[2])):
        preset = None  # not the layout the preset describes
    if preset:
        p_fps, obs_feats, act_names, goal_names, p_task = preset
    else:
        p_fps, p_task = None, f"kdp-edge dataset {Path(traj.source).name}"
        obs_feats = [(STATE, 0, traj.obs_dim, (traj.obs_names if traj.obs_names and len(traj.obs_names) == traj.obs_dim
                                               else [f"state_{i}" for i in range(traj.obs_dim)]))]
        act_names = (traj.act_names if traj.act_names and len(traj.act_names) == traj.act_dim
                     else [f"action_{i}" for i in range(traj.act_dim)])
        goal_names = None
    if traj.goals is not None and (goal_names is None or len(goal_names) != traj.goal_dim):
        goal_names = [f"goal_{i}" for i in range(traj.goal_dim)]
    fps = fps or p_fps or (1.0 / traj.step_dt_s if traj.step_dt_s else None)
    if not fps:
        raise DataError(f"{traj.source}: the data's rate is not known for env {traj.env or '(none)'}; pass --fps")
    if abs(fps - round(fps)) < 1e-9:
        fps = int(round(fps))
    return fps, obs_feats, act_names, goal_names, task or p_task


def _stats(arr: np.ndarray) -> dict[str, list]:
    """LeRobot's per-feature statistics (min, max, mean, std, count, q01 .. q99) over axis 0."""
    a = np.asarray(arr)
    f = a.astype(np.float64)
    out = {"min": a.min(0).tolist(), "max": a.max(0).tolist(), "mean": f.mean(0).tolist(), "std": f.std(0).tolist(),
           "count": [int(len(a))]}
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(f, q, axis=0).tolist()
    return out


def _tasks_table(pa, task: str):
    """``meta/tasks.parquet`` as pandas writes LeRobot's tasks DataFrame (index 'task', column task_index)."""
    meta = {"index_columns": ["task"], "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                                           "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
            "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                         "numpy_type": "int64", "metadata": None},
                        {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                         "metadata": None}],
            "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                       metadata={b"pandas": json.dumps(meta).encode()})
    return pa.table({"task_index": [0], "task": [task]}, schema=schema)


def write_lerobot_v30(traj: Trajectories, out: str | Path, fps: float | None = None, task: str | None = None,
                      episodes_per_file: int = 0, chunks_size: int = DEFAULT_CHUNKS_SIZE,
                      data_files_size_in_mb: int = DEFAULT_DATA_FILE_MB) -> Path:
    """Write trajectories as a LeRobot v3.0 dataset root at ``out`` (which must not exist or be empty).

    Episodes are the trajectories' segments. A data file holds whole episodes until it would pass
    ``data_files_size_in_mb`` (LeRobot's rule, estimated from the raw frame size) or, when
    ``episodes_per_file`` > 0, that many episodes; files are numbered ``file-000``, ``file-001``, ...
    within ``chunk-000`` until ``chunks_size`` files, then ``chunk-001``. PushT observations (agent
    xy, block xy, cos, sin) go to observation.state (agent) and observation.environment_state
    (block); PointMaze goals to observation.goal."""
    pa = _pa()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists and is not empty; to-lerobot writes a new dataset folder: choose a new path")
    if chunks_size < 1 or episodes_per_file < 0 or data_files_size_in_mb < 1:
        raise DataError("chunks_size and data_files_size_in_mb must be at least 1, episodes_per_file at least 0")
    fps, obs_feats, act_names, goal_names, task = _preset(traj, fps, task)
    columns = [(ACTION, traj.actions, act_names)] + [(n, traj.observations[:, a:b], names) for n, a, b, names in obs_feats]
    if traj.goals is not None:
        columns.append((GOAL, traj.goals, goal_names))
    features = {n: {"dtype": "float32", "shape": [arr.shape[1]], "names": list(names)} for n, arr, names in columns}
    features.update({k: dict(v) for k, v in FRAME_COLUMNS.items()})
    first, last = segments(traj.episode_ends)
    n_eps = len(first)
    frame_bytes = 4 * sum(arr.shape[1] for _, arr, _ in columns) + 4 + 8 * 4
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "meta").mkdir(parents=True)
    chunk = file = 0
    writer, writer_frames, rows, stats_all = None, 0, [], {}
    try:
        for e in range(n_eps):
            s, t = int(first[e]), int(last[e]) + 1
            n = t - s
            full = (episodes_per_file and writer_frames and
                    sum(1 for r in rows if (r["data/chunk_index"], r["data/file_index"]) == (chunk, file)) >= episodes_per_file)
            too_big = not episodes_per_file and writer_frames and \
                (writer_frames + n) * frame_bytes / 2**20 >= data_files_size_in_mb
            if writer is not None and (full or too_big):
                writer.close()
                writer, writer_frames = None, 0
                chunk, file = (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)
            frame = np.arange(n, dtype=np.int64)
            cols = {name: arr[s:t].astype(np.float32) for name, arr, _ in columns}
            cols.update({"timestamp": (frame / fps).astype(np.float32), "frame_index": frame,
                         "episode_index": np.full(n, e, np.int64), "index": np.arange(s, t, dtype=np.int64),
                         "task_index": np.zeros(n, np.int64)})
            arrays = []
            for name in features:
                v = cols[name]
                # a vector feature is HF datasets' Sequence(length=n): fixed_size_list<item: float>[n]
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), type=pa.list_(pa.float32(), v.shape[1]))
                              if v.ndim == 2 else pa.array(v))
            table = pa.Table.from_arrays(arrays, names=list(features))
            if writer is None:
                path = tmp / V30_DATA_PATH.format(chunk_index=chunk, file_index=file)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pa.parquet.ParquetWriter(path, table.schema, compression="snappy", use_dictionary=True)
            writer.write_table(table)
            row = {"episode_index": e, "tasks": [task], "length": n, "data/chunk_index": chunk, "data/file_index": file,
                   "dataset_from_index": s, "dataset_to_index": t}
            for name in features:
                v = cols[name]
                st = _stats(v if v.ndim == 2 else v[:, None])
                stats_all.setdefault(name, []).append(v if v.ndim == 2 else v[:, None])
                row.update({f"stats/{name}/{k}": val for k, val in st.items()})
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            rows.append(row)
            writer_frames += n
        if writer is not None:
            writer.close()
            writer = None
        ep_path = tmp / V30_EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pa.parquet.write_table(pa.Table.from_pylist(rows), ep_path, compression="snappy")
        pa.parquet.write_table(_tasks_table(pa, task), tmp / "meta" / "tasks.parquet")
        stats = {name: _stats(np.concatenate(parts)) for name, parts in stats_all.items()}
        (tmp / "meta" / "stats.json").write_text(json.dumps(stats, indent=4) + "\n")
        info = {"codebase_version": "v3.0", "fps": fps, "features": features, "total_episodes": n_eps,
                "total_frames": int(len(traj.observations)), "total_tasks": 1, "chunks_size": chunks_size,
                "data_files_size_in_mb": data_files_size_in_mb, "video_files_size_in_mb": DEFAULT_VIDEO_FILE_MB,
                "data_path": V30_DATA_PATH, "video_path": None,
                "robot_type": (traj.env or None), "splits": {"train": f"0:{n_eps}"}}
        (tmp / INFO).write_text(json.dumps(info, indent=4, ensure_ascii=False) + "\n")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
