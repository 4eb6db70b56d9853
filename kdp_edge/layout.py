"""What one step of a trajectory window holds, and where its parts sit (standard library only: shared
by the data, training, export, the bundle contract and the device runtime).

``data.window`` (issue #22, a study option) chooses the window's content; the condition (observation
[+ goal]) is the same either way:

    states+actions (default)  step = [observation (obs_dim), action (act_dim)]; with obs_history n the
                              observation part is the n stacked observations
    actions                   step = [action (act_dim)], the action chunk only (what the public
                              one-step drifting policies generate on PushT)

Every layer asks a :class:`WindowLayout` where the actions (and the states, if any) sit instead of
assuming that actions start at ``obs_dim``.
"""

from __future__ import annotations

from dataclasses import dataclass

STATES_ACTIONS = "states+actions"
ACTIONS = "actions"
WINDOW_CONTENTS = (STATES_ACTIONS, ACTIONS)


def check_window(content: str, where: str = "data.window") -> str:
    """``content`` if it is a known window content; a ValueError naming the valid ones otherwise."""
    if content not in WINDOW_CONTENTS:
        raise ValueError(f"{where} {content!r}: unknown window content; choose one of "
                         f"{', '.join(repr(c) for c in WINDOW_CONTENTS)}")
    return content


@dataclass(frozen=True)
class WindowLayout:
    """Where a window step's observation and action values sit (window dims, 0-based)."""

    obs_dim: int
    act_dim: int
    content: str = STATES_ACTIONS

    def __post_init__(self) -> None:
        check_window(self.content)

    @property
    def has_states(self) -> bool:
        """Whether a window step holds the observation (planned states)."""
        return self.content == STATES_ACTIONS

    @property
    def dim(self) -> int:
        """D, the values per window step."""
        return self.act_dim + (self.obs_dim if self.has_states else 0)

    @property
    def state_slice(self) -> tuple[int, int] | None:
        """[lo, hi) of the observation in a step; None for action-only windows."""
        return (0, self.obs_dim) if self.has_states else None

    @property
    def action_slice(self) -> tuple[int, int]:
        """[lo, hi) of the action in a step."""
        lo = self.obs_dim if self.has_states else 0
        return lo, lo + self.act_dim

    @property
    def action_dims(self) -> list[int]:
        return list(range(*self.action_slice))

    def describe(self, obs_history: int = 1) -> str:
        """The dims of a step in words, e.g. for error messages about window dims."""
        lo, hi = self.action_slice
        if not self.has_states:
            return f"{self.dim} dims per step (window {ACTIONS!r}: action {lo}..{hi - 1}, no observation)"
        hist = f" with obs_history {obs_history}" if obs_history > 1 else ""
        return f"{self.dim} dims per step (observation 0..{self.obs_dim - 1}{hist}, action {lo}..{hi - 1})"


__all__ = ["ACTIONS", "STATES_ACTIONS", "WINDOW_CONTENTS", "WindowLayout", "check_window"]
