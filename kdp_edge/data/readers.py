"""Readers for datasets users already have on disk. Nothing is ever downloaded.

Supported:
    *.hdf5 / *.h5   D4RL layout: observations, actions, terminals, timeouts, optional infos/goal
    *.npz           OGBench layout: observations, actions, terminals (episode ends), optional qpos
    *.npz           Diffusion Policy low-dim layout: state, action, episode_ends (exclusive ends), e.g.
                    PushT's pusht_lowdim.npz (see kdp_edge.data.pusht for its observation features)
    a directory     a LeRobotDataset root (meta/info.json; v2.0, v2.1, v3.0; see kdp_edge.data.lerobot),
                    ``DIR?obs=a,b&action=c`` to choose its features; else
                    a Minari dataset: <dir>/data/main_data.hdf5 with episode_* groups
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..envs import env_for
from ..errors import DataError, require
from ..windows import Trajectories, segments, stack_history

GENERATOR_HINT = (
    "generate one locally with: kdp-edge data pointmaze --maze umaze --steps 1000000 --out data/umaze.hdf5"
)


def load_trajectories(path: str | Path, goal: str = "auto", obs_history: int = 1) -> Trajectories:
    """Load a dataset from a local file or directory.

    ``goal``: "auto" (infos/goal or desired_goal when present, else none), "hindsight" (the
    position the segment ends at), or "none". ``obs_history`` > 1 stacks each step's observation
    with the previous ones (:func:`~kdp_edge.windows.stack_history`).
    """
    from . import lerobot

    p, spec = Path(path), {}
    if not p.exists() and "?" in str(path):  # DIR?obs=...: features of a LeRobot dataset
        base, spec = lerobot.split_spec(str(path))
        p = Path(base)
    if not p.exists():
        raise DataError(f"dataset not found: {p}. Nothing is downloaded; {GENERATOR_HINT}")
    if goal not in ("auto", "hindsight", "none"):
        raise DataError(f"unknown goal mode '{goal}': use auto, hindsight or none")
    if spec and not lerobot.is_lerobot_root(p):
        raise DataError(f"{path}: '?obs=' / '?action=' choose features of a LeRobot dataset; {p} is not one "
                        "(no meta/info.json)")
    if p.is_dir() and lerobot.is_lerobot_root(p):
        traj = lerobot.read_lerobot(p, obs=spec.get("obs"), action=(spec.get("action") or [None])[0])
    elif p.is_dir():
        traj = _read_minari(p)
    elif p.suffix in (".hdf5", ".h5"):
        traj = _read_d4rl(p)
    elif p.suffix == ".npz":
        traj = _read_npz(p)
    else:
        raise DataError(f"{p}: unknown dataset format '{p.suffix}'; expected .hdf5 (D4RL), .npz (OGBench) "
                        "or a Minari dataset directory")
    if goal == "none":
        traj.goals = None
    elif goal == "hindsight" or (goal == "auto" and traj.goals is None and env_for(traj.env).hindsight_goals):
        traj.goals = hindsight_goals(traj.observations[:, :2], traj.episode_ends)
    if obs_history != 1:
        traj = stack_history(traj, obs_history)
    return traj


def hindsight_goals(positions: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """Goal of every step = the position at the end of its segment."""
    last = segments(episode_ends)[1]
    seg = np.searchsorted(last, np.arange(len(positions)))
    return positions[last[seg]].astype(np.float32)


def _read_d4rl(p: Path) -> Trajectories:
    h5py = require("h5py", "sim", "Reading HDF5 datasets")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise DataError(f"{p}: cannot open as HDF5 ({exc}); the file may be truncated: regenerate it") from exc
    with f:
        missing = [k for k in ("observations", "actions") if k not in f]
        if missing:
            raise DataError(f"{p}: not a D4RL-layout file, missing {missing}; {GENERATOR_HINT}")
        obs = np.asarray(f["observations"], np.float32)
        act = np.asarray(f["actions"], np.float32)
        n = len(obs)
        ends = np.zeros(n, bool)
        for k in ("terminals", "timeouts"):
            if k in f:
                ends |= np.asarray(f[k], bool)
        goals = np.asarray(f["infos/goal"], np.float32) if "infos/goal" in f else None
        env = str(f.attrs.get("env", ""))
    return Trajectories(obs, act, ends, goals, source=str(p), env=env)


def _read_npz(p: Path) -> Trajectories:
    """An .npz in the Diffusion Policy low-dim layout (state, action, episode_ends), else OGBench's."""
    try:
        z = np.load(p)
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: cannot read as .npz ({exc})") from exc
    if {"state", "action", "episode_ends"} <= set(z.files):
        from .pusht import read_lowdim_npz

        return read_lowdim_npz(p, z)
    return _read_ogbench(p, z)


def _read_ogbench(p: Path, z) -> Trajectories:
    missing = [k for k in ("observations", "actions", "terminals") if k not in z.files]
    if missing:
        raise DataError(f"{p}: not an OGBench-layout .npz (missing {missing}) nor a Diffusion Policy low-dim "
                        f".npz (state, action, episode_ends); it has {z.files}")
    obs = np.asarray(z["observations"], np.float32)
    if obs.ndim > 2:
        raise DataError(f"{p}: observations have shape {obs.shape}; only state (vector) observations are supported")
    env = "pointmaze" if "pointmaze" in p.name else ""
    return Trajectories(obs, np.asarray(z["actions"], np.float32), np.asarray(z["terminals"], bool), None,
                        source=str(p), env=env)


def _read_minari(p: Path) -> Trajectories:
    h5py = require("h5py", "sim", "Reading Minari datasets")
    main = p / "data" / "main_data.hdf5"
    if not main.exists():
        raise DataError(f"{p}: a directory but not a Minari dataset (no data/main_data.hdf5)")
    obs_l, act_l, end_l, goal_l = [], [], [], []
    with h5py.File(main, "r") as f:
        keys = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        if not keys:
            raise DataError(f"{main}: no episode_* groups")
        for k in keys:
            ep = f[k]
            o = ep["observations"]
            if isinstance(o, h5py.Group):
                obs = np.asarray(o["observation"], np.float32)
                goal = np.asarray(o["desired_goal"], np.float32) if "desired_goal" in o else None
            else:
                obs, goal = np.asarray(o, np.float32), None
            act = np.asarray(ep["actions"], np.float32)
            t = len(act)  # Minari stores T+1 observations for T actions
            obs_l.append(obs[:t])
            act_l.append(act)
            if goal is not None:
                goal_l.append(goal[:t])
            e = np.zeros(t, bool)
            e[-1] = True
            end_l.append(e)
    goals = np.concatenate(goal_l) if len(goal_l) == len(obs_l) else None
    env = "pointmaze" if "pointmaze" in p.name.lower() else ""
    return Trajectories(np.concatenate(obs_l), np.concatenate(act_l), np.concatenate(end_l), goals,
                        source=str(p), env=env)
