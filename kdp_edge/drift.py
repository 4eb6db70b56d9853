"""The keyed drift field: the whole KDP training objective, top to bottom (METHOD.md sections 2-3).

Notation and shapes (everything in normalised units):
    G  condition groups in a batch          N  generated windows per group
    P  positive (dataset) windows per group  H  horizon, D values per step (obs_dim + act_dim, or
                                                act_dim for action-only windows: kdp_edge/layout.py)
    C  condition dims (start state + goal)   W = H * D, the flattened window

1. Keys. Each window gets a compact key kappa(window, condition) that decides *who is near whom*:
       full                  kappa = the whole window (naive drifting: the failure mode)
       condition             kappa = condition only (every sample of a condition is equally near)
       condition+descriptor  kappa = [w_c * condition, a few subsampled future positions]
       two-factor            distance = w_c * |cond_x - cond_y| + |x - y|  (each factor mean-scaled)
2. Distances d- (generated to generated, self excluded) and d+ (generated to positives), divided by
   their mean over the group so the mean distance is 1.
3. For each temperature tau: logits -[d- | d+] / tau, a double softmax (rows and columns), weights
   W+ = A+ * rowsum(A-), W- = A- * rowsum(A+), drift V_tau = W+ Y+ - W- Y- applied in the FULL
   window space, normalised to unit RMS. V = sum over tau.
4. Loss = mean (x - stopgrad(x + V))^2: the generator regresses on its own drifted samples.

If the generated distribution equals the data distribution (same samples on both sides), A+ = A-
and V = 0 exactly: the field is anti-symmetric. Tests in tests/test_drift.py pin each property.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

KEY_KINDS = ("full", "condition", "condition+descriptor", "two-factor")
_SELF = 1.0e6  # added to a sample's distance to itself so it is never its own negative
_EPS = 1.0e-12


@dataclass
class KeySpec:
    """How distances between windows are measured (weights), never where updates go."""

    kind: str = "condition+descriptor"
    cond_weight: float = 3.0  # weight of the condition in the key (and in two-factor)
    descriptor_steps: int = 4  # subsampled future steps in the descriptor
    descriptor_dims: list[int] = field(default_factory=lambda: [0, 1])  # window dims (positions)

    def __post_init__(self) -> None:
        if self.kind not in KEY_KINDS:
            raise ValueError(f"unknown key '{self.kind}': choose one of {', '.join(KEY_KINDS)}")

    def descriptor_index(self, horizon: int) -> list[int]:
        """Steps of the window used by the descriptor, evenly spaced and ending at the last step."""
        n = max(1, min(self.descriptor_steps, horizon - 1))
        return [round(horizon * (i + 1) / n) - 1 for i in range(n)]


@dataclass
class DriftConfig:
    # The drifting paper uses {0.02, 0.05, 0.2}; with our mean-scaled key distances that set collapsed the
    # bimodal toy to one route in 2 of 3 training seeds, {0.05, 0.2, 0.5} kept both in 3 of 3
    # (bench/results/toy_modes/toy_modes.md).
    temperatures: list[float] = field(default_factory=lambda: [0.05, 0.2, 0.5])
    key: KeySpec = field(default_factory=KeySpec)
    exclude_self: bool = True  # a generated sample is not its own negative
    # Gain on the repulsion term (V = V+ - repulsion * V-). 1 is the drifting field, whose fixed point is
    # the data distribution; below 1 the generated windows are pulled narrower than the data. Above 1 they
    # are pushed wider, but with these normalised (softmax) weights the push does not fade with distance:
    # 1.5 diverged on PointMaze medium (bench/results/study/repulsion-medium-seed1000.md).
    repulsion: float = 1.0

    def __post_init__(self) -> None:
        if not self.repulsion > 0:
            raise ValueError(f"drift.repulsion must be > 0 (1: the drifting field), got {self.repulsion}")


def window_keys(windows: torch.Tensor, cond: torch.Tensor, spec: KeySpec) -> torch.Tensor:
    """Keys [G, M, K] of windows [G, M, H, D] whose conditions are cond [G, M, C]."""
    if spec.kind == "full":
        return windows.flatten(2)
    if spec.kind == "condition":
        return cond
    if spec.kind == "condition+descriptor":
        steps = spec.descriptor_index(windows.shape[2])
        desc = windows[:, :, steps][..., spec.descriptor_dims].flatten(2)
        return torch.cat([spec.cond_weight * cond, desc], dim=-1)
    raise ValueError(f"key '{spec.kind}' has no single key vector (two-factor combines two distances)")


def _mean_scale(d_neg: torch.Tensor, d_pos: torch.Tensor) -> torch.Tensor:
    """Mean distance per group [G, 1, 1] over d+ and the off-diagonal of d- (no gradient)."""
    n = d_neg.shape[1]
    off_diag = ~torch.eye(n, dtype=torch.bool, device=d_neg.device)
    total = (d_neg * off_diag).sum((1, 2)) + d_pos.sum((1, 2))
    count = off_diag.sum() + d_pos.shape[1] * d_pos.shape[2]
    return (total / count).clamp_min(_EPS).detach()[:, None, None]


def key_distances(
    gen: torch.Tensor, gen_cond: torch.Tensor, pos: torch.Tensor, pos_cond: torch.Tensor, spec: KeySpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-scaled distances d- [G, N, N] (generated to generated) and d+ [G, N, P].

    gen [G, N, H, D] with gen_cond [G, N, C]; pos [G, P, H, D] with pos_cond [G, P, C].
    """
    if spec.kind == "two-factor":
        dc_neg, dc_pos = key_distances(gen, gen_cond, pos, pos_cond, KeySpec("condition"))
        df_neg, df_pos = key_distances(gen, gen_cond, pos, pos_cond, KeySpec("full"))
        w = spec.cond_weight
        return (w * dc_neg + df_neg) / (w + 1), (w * dc_pos + df_pos) / (w + 1)
    k_gen = window_keys(gen, gen_cond, spec)
    k_pos = window_keys(pos, pos_cond, spec)
    d_neg = torch.cdist(k_gen, k_gen)
    d_pos = torch.cdist(k_gen, k_pos)
    scale = _mean_scale(d_neg, d_pos)
    return d_neg / scale, d_pos / scale


def affinity(d_neg: torch.Tensor, d_pos: torch.Tensor, tau: float,
             exclude_self: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Double-softmax affinities A- [G, N, N] and A+ [G, N, P] at temperature tau (no gradient).

    A = sqrt(softmax over each row * softmax over each column) of the logits -[d- | d+] / tau;
    with ``exclude_self`` a generated sample gets (almost) no affinity to itself as a negative.
    """
    if exclude_self:
        d_neg = d_neg + _SELF * torch.eye(d_neg.shape[1], dtype=d_neg.dtype, device=d_neg.device)
    logits = -torch.cat([d_neg, d_pos], dim=-1).detach() / tau  # [G, N, N + P]
    a = torch.sqrt(torch.softmax(logits, dim=-1) * torch.softmax(logits, dim=-2))
    return a[..., : d_neg.shape[2]], a[..., d_neg.shape[2]:]


def drift_field(
    x: torch.Tensor,
    y_pos: torch.Tensor,
    d_neg: torch.Tensor,
    d_pos: torch.Tensor,
    temperatures: list[float],
    exclude_self: bool = True,
    y_neg: torch.Tensor | None = None,
    repulsion: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The drift V [G, N, W] of generated windows x [G, N, W] (no gradient flows through V).

    y_pos [G, P, W] are the positives; the negatives y_neg default to x itself (stop-gradient).
    d_neg [G, N, N] and d_pos [G, N, P] are key-space distances (see :func:`key_distances`).
    ``repulsion`` scales the pull away from the negatives against the pull towards the positives.
    Returns V and the raw drift norms ``lambda_<tau>`` (RMS of V_tau before normalisation).
    """
    x = x.detach()
    y_neg = x if y_neg is None else y_neg.detach()
    y_pos = y_pos.detach()
    drift = torch.zeros_like(x)
    norms: dict[str, float] = {}
    for tau in temperatures:
        a_neg, a_pos = affinity(d_neg, d_pos, tau, exclude_self)
        w_pos = a_pos * a_neg.sum(-1, keepdim=True)
        w_neg = a_neg * a_pos.sum(-1, keepdim=True)
        attract = w_pos @ y_pos - w_pos.sum(-1, keepdim=True) * x  # weighted displacement to the positives
        repel = w_neg @ y_neg - w_neg.sum(-1, keepdim=True) * x  # ... and to the negatives
        v_tau = attract - repulsion * repel  # (the x terms cancel at repulsion 1: equal weight sums)
        rms = v_tau.pow(2).mean().sqrt()
        norms[f"lambda_{tau:g}"] = float(rms)
        drift = drift + v_tau / (rms + _EPS)
    return drift, norms


def keyed_drift_loss(
    gen: torch.Tensor,
    gen_cond: torch.Tensor,
    pos: torch.Tensor,
    pos_cond: torch.Tensor,
    cfg: DriftConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The KDP loss for one batch.

    gen [G, N, H, D] generated windows (with gradient) for conditions gen_cond [G, C];
    pos [G, P, H, D] condition-matched dataset windows with their own conditions pos_cond [G, P, C].
    Neighbourhoods come from the key; the drift and the regression live in the full window space.
    """
    g, n = gen.shape[:2]
    gen_cond_each = gen_cond[:, None, :].expand(g, n, gen_cond.shape[-1])
    d_neg, d_pos = key_distances(gen.detach(), gen_cond_each, pos, pos_cond, cfg.key)
    x = gen.flatten(2)
    v, stats = drift_field(x, pos.flatten(2), d_neg, d_pos, cfg.temperatures, cfg.exclude_self,
                           repulsion=cfg.repulsion)
    loss = F.mse_loss(x, (x + v).detach())
    stats["drift_rms"] = float(v.pow(2).mean().sqrt())
    return loss, stats
