"""Compact one-step generators: noise of the window's shape + condition -> a whole window.

Model contract (what export and the device runtime see), shapes for K candidates:
    obs   [K, obs_dim]    raw observation (simulator / robot units)
    goal  [K, goal_dim]   raw goal (same units as the positions); goal_dim may be 0
    noise [K, H, D]       standard normal, D = obs_dim + act_dim (act_dim for action-only windows)
    ->    [K, H, D]       raw (de-normalised) window: per step [observation, action] (or [action];
                          the normaliser's :class:`~kdp_edge.layout.WindowLayout` says which)
Normalisation statistics live in the module as buffers, so an exported graph needs no bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .windows import Normalizer


@dataclass
class ModelConfig:
    arch: str = "mlp"  # "mlp" (default: 8x cheaper to train on CPU, fastest int8) or "unet" (1-D conv U-Net, FiLM)
    channels: list[int] = field(default_factory=lambda: [64, 128, 192])  # U-Net widths per level
    kernel: int = 5
    cond_dim: int = 128  # width of the condition embedding
    mlp_hidden: int = 320
    mlp_layers: int = 3
    activation: str = "silu"  # "silu" or "relu" (both quantise well; see docs/EDGE notes)
    overwrite_first_state: bool = True  # copy the condition's state into step 0 of the window (no-op without states)


def _act(name: str) -> nn.Module:
    if name == "silu":
        return nn.SiLU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation '{name}': use 'silu' or 'relu'")


class FiLMResBlock(nn.Module):
    """Two convolutions; the condition embedding scales and shifts the first one's output."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, act: str):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = _act(act)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb).unsqueeze(-1).chunk(2, dim=1)
        h = self.act(self.conv1(x) * (1 + scale) + shift)
        h = self.act(self.conv2(h))
        return h + self.skip(x)


class UNet1D(nn.Module):
    """Temporal U-Net over [B, D, H]: strided-conv down, nearest-upsample + conv up, FiLM in each block."""

    def __init__(self, window_dim: int, cond_in: int, cfg: ModelConfig):
        super().__init__()
        ch, k, e = cfg.channels, cfg.kernel, cfg.cond_dim
        self.cond_mlp = nn.Sequential(nn.Linear(cond_in, e), _act(cfg.activation), nn.Linear(e, e))
        self.inp = nn.Conv1d(window_dim, ch[0], k, padding=k // 2)
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(ch):
            self.down_blocks.append(FiLMResBlock(ch[max(i - 1, 0)] if i else ch[0], c, e, k, cfg.activation))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv1d(c, c, 3, stride=2, padding=1))
        self.mid = FiLMResBlock(ch[-1], ch[-1], e, k, cfg.activation)
        self.up_blocks = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch) - 1)):
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                               nn.Conv1d(ch[i + 1], ch[i], 3, padding=1)))
            self.up_blocks.append(FiLMResBlock(2 * ch[i], ch[i], e, k, cfg.activation))
        self.out = nn.Conv1d(ch[0], window_dim, 1)
        self.levels = len(ch)

    def forward(self, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """noise [B, H, D], cond [B, C] -> window [B, H, D] (normalised units)."""
        emb = self.cond_mlp(cond)
        h = self.inp(noise.transpose(1, 2))
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            if i < self.levels - 1:
                skips.append(h)
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for up, block in zip(self.upsample, self.up_blocks, strict=True):
            h = up(h)
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h).transpose(1, 2)


class MLPGenerator(nn.Module):
    def __init__(self, window_dim: int, horizon: int, cond_in: int, cfg: ModelConfig):
        super().__init__()
        dims = [cond_in + horizon * window_dim] + [cfg.mlp_hidden] * cfg.mlp_layers
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), _act(cfg.activation)]
        layers.append(nn.Linear(dims[-1], horizon * window_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, h, d = noise.shape
        return self.net(torch.cat([cond, noise.reshape(b, h * d)], dim=-1)).reshape(b, h, d)


class KDPGenerator(nn.Module):
    """Generator with its normalisation: ``forward(obs, goal, noise)`` works in raw units."""

    def __init__(self, normalizer: Normalizer, horizon: int, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.horizon = horizon
        self.obs_dim, self.act_dim, self.goal_dim = normalizer.obs_dim, normalizer.act_dim, normalizer.goal_dim
        self.layout = normalizer.layout
        self.window_dim = self.layout.dim
        # the condition's state goes into step 0 only where a step has a state
        self.overwrites_first_state = cfg.overwrite_first_state and self.layout.has_states
        if cfg.arch == "unet":
            if horizon % (2 ** (len(cfg.channels) - 1)):
                raise ValueError(
                    f"horizon {horizon} must be divisible by {2 ** (len(cfg.channels) - 1)} for a "
                    f"{len(cfg.channels)}-level U-Net: change the horizon or model.channels"
                )
            self.net = UNet1D(self.window_dim, self.cond_in, cfg)
        elif cfg.arch == "mlp":
            self.net = MLPGenerator(self.window_dim, horizon, self.cond_in, cfg)
        else:
            raise ValueError(f"unknown arch '{cfg.arch}': use 'unet' or 'mlp'")
        for name, arr in normalizer.tensors().items():
            self.register_buffer(name, torch.as_tensor(arr, dtype=torch.float32))

    @property
    def cond_in(self) -> int:
        return self.obs_dim + self.goal_dim

    def normalize_condition(self, obs: torch.Tensor, goal: torch.Tensor | None) -> torch.Tensor:
        """Raw obs [B, O] (+ goal [B, G]) -> normalised condition [B, O + G]."""
        c = (obs - self.obs_mean) / self.obs_std
        if self.goal_dim:
            c = torch.cat([c, (goal - self.goal_mean) / self.goal_std], dim=-1)
        return c

    def generate_normalized(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Normalised condition [B, C] + noise [B, H, D] -> normalised window [B, H, D]."""
        win = self.net(noise, cond)
        if self.overwrites_first_state:
            # the condition's state, re-expressed in window normalisation
            s0 = cond[:, : self.obs_dim] * self.obs_std + self.obs_mean
            s0 = (s0 - self.win_mean[: self.obs_dim]) / self.win_std[: self.obs_dim]
            win = torch.cat([torch.cat([s0[:, None, :], win[:, :1, self.obs_dim :]], dim=-1), win[:, 1:]], dim=1)
        return win

    def forward(self, obs: torch.Tensor, goal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Raw obs [K, O], goal [K, G], noise [K, H, D] -> raw window [K, H, D]."""
        win = self.generate_normalized(self.normalize_condition(obs, goal), noise)
        return win * self.win_std + self.win_mean


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
