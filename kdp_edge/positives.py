"""Where a condition's positive (dataset) windows come from: one function per rule, registered by name.

The drift field attracts the N windows generated for a condition toward its P positives. Which
dataset windows those are decides how much the field itself must carry the condition:

    knn     the P windows nearest in normalised condition space, the condition's own included
            (the default). The positives already match the condition, so the key matters little.
    own     the condition's own recorded window only (P = 1; the public one-step drifting
            policies' set-up): a kernel two-sample objective against one draw from the conditional.
    pooled  the own windows of every condition in the batch (P = G, the same set for every group):
            positives from other conditions, so only a condition-aligned key tells the field which
            of them belong to this condition. With the naive full-window key the conditioning is lost.

Each rule maps window start steps [G] (the batch's conditions) to positive start steps [G, P].
``OptimConfig.positive_source`` names the rule; ``OptimConfig.positives`` is P for ``knn``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ConfigError
from .windows import WindowSet

PositiveRule = Callable[[WindowSet, np.ndarray, int], np.ndarray]  # (windows, starts [G], P) -> [G, P']


def knn_positives(ws: WindowSet, starts: np.ndarray, p: int) -> np.ndarray:
    """The ``p`` nearest windows in condition space (column 0: the condition's own window)."""
    return ws.knn(starts, p)


def own_positives(ws: WindowSet, starts: np.ndarray, p: int) -> np.ndarray:
    """The condition's own window only: [G, 1] (``p`` is ignored)."""
    return np.asarray(starts)[:, None]


def pooled_positives(ws: WindowSet, starts: np.ndarray, p: int) -> np.ndarray:
    """Every condition's own window, for every group: [G, G] (``p`` is ignored)."""
    starts = np.asarray(starts)
    return np.broadcast_to(starts[None, :], (len(starts), len(starts))).copy()


POSITIVE_SOURCES: dict[str, PositiveRule] = {
    "knn": knn_positives,
    "own": own_positives,
    "pooled": pooled_positives,
}


def positive_rule(name: str) -> PositiveRule:
    """The registered rule ``name``; a ConfigError naming the known ones otherwise."""
    try:
        return POSITIVE_SOURCES[name]
    except KeyError:
        raise ConfigError(f"optim.positive_source '{name}' is unknown; use one of "
                          f"{', '.join(POSITIVE_SOURCES)}") from None


__all__ = ["POSITIVE_SOURCES", "PositiveRule", "knn_positives", "own_positives", "pooled_positives", "positive_rule"]
