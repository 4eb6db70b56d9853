"""PushT low-dimensional demonstrations (Diffusion Policy's layout) and their observation features.

The layout (``pusht_lowdim.npz``; any task stored the same way reads the same, without the PushT
features):

    state         [T, S] float32   PushT: agent x, agent y, block x, block y (pixels, 0..512), block angle (rad)
    action        [T, A] float32   PushT: target agent position x, y (pixels)
    episode_ends  [E]    int64     exclusive end index of each episode
    env           optional 0-d string naming the task (else "pusht" when the file name says so)

PushT observations are features of the state: ``[agent x, agent y, block x, block y, cos a, sin a]``
(pixels, pixels, pixels, pixels, 1, 1). The angle is stored modulo 2 pi, so a block near the goal
angle can jump from 6.28 to 0.0 between two steps; its cosine and sine do not. Nothing here needs
torch or the simulator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..windows import Trajectories

PUSHT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "pusht" / "pusht_lowdim.npz"
PUSHT_STATE_DIM = 5
PUSHT_OBS_DIM = 6


def default_pusht_path() -> Path:
    """Where the PushT demos are looked for: $KDP_PUSHT_DATA, else ../shared/datasets/pusht/ beside the repo."""
    import os

    return Path(os.environ.get("KDP_PUSHT_DATA", str(PUSHT_DATA)))


def pusht_features(state: np.ndarray) -> np.ndarray:
    """PushT state [..., 5] (agent xy, block xy, angle) -> observation [..., 6] (angle as cos, sin)."""
    state = np.asarray(state, dtype=np.float32)
    if state.shape[-1] != PUSHT_STATE_DIM:
        raise DataError(f"a PushT state has {PUSHT_STATE_DIM} values (agent x, y, block x, y, angle); got {state.shape[-1]}")
    a = state[..., 4:5]
    return np.concatenate([state[..., :4], np.cos(a), np.sin(a)], axis=-1).astype(np.float32)


def read_lowdim_npz(p: Path, z) -> Trajectories:
    """A Diffusion Policy low-dim ``.npz`` (already opened as ``z``) -> Trajectories (PushT: features)."""
    state = np.asarray(z["state"], np.float32)
    action = np.asarray(z["action"], np.float32)
    ends = np.asarray(z["episode_ends"], np.int64).reshape(-1)
    if state.ndim != 2 or action.ndim != 2:
        raise DataError(f"{p}: state and action must be 2-D [steps, dims]; got {state.shape} and {action.shape}")
    n = len(state)
    if len(ends) == 0 or np.any(np.diff(ends) <= 0) or ends[0] <= 0 or ends[-1] != n:
        raise DataError(f"{p}: episode_ends must be increasing exclusive ends finishing at {n} (the number of "
                        f"steps); got {ends[:3].tolist()} ... {ends[-3:].tolist()}")
    env = str(z["env"]) if "env" in z.files else ("pusht" if "pusht" in p.name.lower() else "")
    if env == "pusht":
        obs = pusht_features(state)
    else:
        obs = state
    flags = np.zeros(n, bool)
    flags[ends - 1] = True
    return Trajectories(obs, action, flags, None, source=str(p), env=env)


def write_synthetic_pusht(path: str | Path, episodes: int = 12, steps: int = 60, seed: int = 0) -> Path:
    """A tiny dataset in the PushT layout for tests (no physics: the agent walks toward a point near
    the block, the block drifts and turns slowly, the angle wraps at 2 pi like the real data)."""
    rng = np.random.default_rng(seed)
    states, actions, ends = [], [], []
    for _ in range(episodes):
        agent = rng.uniform(50, 450, 2)
        block = rng.uniform(100, 400, 2)
        angle = rng.uniform(0, 2 * np.pi)
        spin = rng.uniform(-0.08, 0.08)
        for _ in range(steps):
            target = block + rng.normal(0, 20, 2)
            states.append([*agent, *block, angle % (2 * np.pi)])
            actions.append(np.clip(target, 0, 512))
            agent = agent + 0.3 * (target - agent)
            block = block + 0.02 * (np.array([256.0, 256.0]) - block)
            angle += spin
        ends.append(len(states))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, state=np.asarray(states, np.float32), action=np.asarray(actions, np.float32),
             episode_ends=np.asarray(ends, np.int64), env=np.array("pusht"))
    tmp.replace(path)
    return path
