"""Exported bundles: the one contract between ``kdp-edge export`` and the device runtime.

A bundle is a directory::

    BUNDLE/
        bundle.json            this manifest (schema below), written last and atomically
        model_fp32.onnx        ONNX, dynamic candidate axis K
        model_int8.onnx        int8 QDQ ONNX (same inputs and outputs)
        model_fp32_k16.tflite  TFLite has no dynamic batch: one file per candidate count K
        model_int8_k16.tflite
        calibration.npz        (optional) the calibration inputs int8 was fitted on

Every model maps raw units to raw units, with the normalisation inside the graph:

    inputs   obs   float32 [K, obs_dim]       raw observation, repeated per candidate
             goal  float32 [K, goal_dim]      raw goal (absent when goal_dim == 0)
             noise float32 [K, horizon, window_dim]  standard normal
    output   window float32 [K, horizon, window_dim]  raw [obs, act] per step, or [act] per step
                                                      when ``window`` is "actions"

so the device does no bookkeeping. ``window`` says what a window step holds (kdp_edge/layout.py):
"states+actions" (the default; a manifest without the field, as every bundle written before it
existed, means this, and such bundles are written without it so older runtimes still read them) or
"actions" (the action chunk only: window_dim = act_dim; no position scoring, no tracker protocol).
``window_dim`` and ``action_slice`` (where the actions sit in a window step) are derived from it and
the dims; bundle.json repeats them for readers, and a manifest whose copies disagree is refused.
This module imports only the standard library and numpy: it is part of the device runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import KDPError
from .layout import STATES_ACTIONS, WINDOW_CONTENTS, WindowLayout

SCHEMA_VERSION = 1
MANIFEST = "bundle.json"
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8", "int8-dynamic")


class BundleError(KDPError):
    """A bundle is missing, corrupted, truncated or does not match what the caller expects."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelFile:
    """One model file of a bundle."""

    path: str  # relative to the bundle directory
    format: str  # onnx | tflite
    precision: str  # fp32 | int8 | int8-dynamic
    candidates: int | None = None  # fixed K (TFLite); None: dynamic K axis (ONNX)
    sha256: str = ""
    bytes: int = 0
    role: str = "generator"  # generator (one pass) | denoiser (diffusion baseline, T passes)
    notes: str = ""  # e.g. which layers stayed float in int8

    def accepts(self, k: int) -> bool:
        return self.candidates is None or self.candidates == k


@dataclass
class BundleManifest:
    """``bundle.json``. Dims and horizon describe the model contract in the module docstring."""

    obs_dim: int
    act_dim: int
    goal_dim: int
    horizon: int
    method: str = "drift"  # drift | diffusion
    env: str = ""  # e.g. pointmaze-umaze ("" when unknown)
    obs_history: int = 1  # obs = the last obs_history observations, oldest first (runtime.ObsHistory)
    window: str = STATES_ACTIONS  # what a window step holds (kdp_edge.layout); written only when "actions"
    action_low: list[float] = field(default_factory=list)  # [act_dim] limits the runtime clips to
    action_high: list[float] = field(default_factory=list)
    key: dict[str, Any] = field(default_factory=dict)  # drift KeySpec used in training
    scoring: dict[str, Any] = field(default_factory=dict)  # planning.ScoringSpec
    default_candidates: int = 16
    control_rate_hz: float = 50.0
    step_dt_s: float = 0.0  # seconds between window steps (the data's rate); 0: one control period
    obs_names: list[str] = field(default_factory=list)  # one observation's value names (LeRobot feature names)
    act_names: list[str] = field(default_factory=list)  # written only when known, so older readers still load it
    protocol: str = "own-actions"  # how the runtime turns the chosen plan into an action
    lookahead: int = 8  # tracker protocol only
    inputs: list[str] = field(default_factory=lambda: ["obs", "goal", "noise"])
    outputs: list[str] = field(default_factory=lambda: ["window"])
    files: list[ModelFile] = field(default_factory=list)
    source_checkpoint: dict[str, Any] = field(default_factory=dict)  # run_dir, sha256, step, weights
    parity: dict[str, Any] = field(default_factory=dict)  # per model file: errors vs the torch model
    diffusion: dict[str, Any] = field(default_factory=dict)  # denoiser bundles: schedule, default T
    schema_version: int = SCHEMA_VERSION
    kdp_edge_version: str = ""
    created: float = 0.0

    @property
    def layout(self) -> WindowLayout:
        return WindowLayout(self.obs_dim, self.act_dim, self.window)

    @property
    def window_dim(self) -> int:
        return self.layout.dim

    @property
    def action_slice(self) -> tuple[int, int]:
        return self.layout.action_slice

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("obs_names", "act_names"):
            if not d[k]:
                del d[k]
        if d["window"] == STATES_ACTIONS:  # the default: left out, so older runtimes still read the bundle
            del d["window"]
        d["window_dim"] = self.window_dim
        d["action_slice"] = list(self.action_slice)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any], where: str = MANIFEST) -> BundleManifest:
        if not isinstance(d, dict):
            raise BundleError(f"{where}: expected a JSON object")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(f"{where}: schema version {version!r}, this kdp-edge reads version {SCHEMA_VERSION}; "
                              "re-export the bundle with this kdp-edge version (kdp-edge export RUN_DIR ...)")
        derived = {k: d[k] for k in ("window_dim", "action_slice") if k in d}
        d = {k: v for k, v in d.items() if k not in ("window_dim", "action_slice")}
        if d.get("window", STATES_ACTIONS) not in WINDOW_CONTENTS:
            raise BundleError(f"{where}: window {d['window']!r}: this kdp-edge reads windows "
                              f"{' or '.join(repr(c) for c in WINDOW_CONTENTS)}; update kdp-edge or re-export the bundle")
        names = {f.name for f in fields(BundleManifest)}
        unknown = sorted(set(d) - names)
        missing = sorted(n for n in ("obs_dim", "act_dim", "goal_dim", "horizon") if n not in d)
        if unknown or missing:
            raise BundleError(f"{where}: unknown fields {unknown} / missing fields {missing}; "
                              "the manifest was edited or written by another tool; re-export the bundle")
        try:
            files = [ModelFile(**f) for f in d.pop("files", [])]
            m = BundleManifest(**d, files=files)
        except TypeError as exc:
            raise BundleError(f"{where}: malformed manifest ({exc}); re-export the bundle") from exc
        for name in ("obs_dim", "act_dim", "goal_dim", "horizon"):
            if not isinstance(getattr(m, name), int) or getattr(m, name) < 0:
                raise BundleError(f"{where}: {name} must be a non-negative integer")
        if m.horizon < 1 or m.act_dim < 1 or m.obs_dim < 1:
            raise BundleError(f"{where}: horizon, obs_dim and act_dim must be at least 1")
        problems = []
        if (m.action_low or m.action_high) and not (len(m.action_low) == len(m.action_high) == m.act_dim):
            problems.append(f"action_low/action_high need {m.act_dim} values each")
        elif any(lo > hi for lo, hi in zip(m.action_low, m.action_high, strict=True)):
            problems.append("action_low exceeds action_high")
        if m.protocol not in ("own-actions", "tracker"):
            problems.append(f"unknown protocol {m.protocol!r}")
        if not m.control_rate_hz > 0 or m.step_dt_s < 0:
            problems.append("control_rate_hz must be > 0 and step_dt_s >= 0")
        if not isinstance(m.obs_history, int) or m.obs_history < 1 or m.obs_dim % m.obs_history:
            problems.append("obs_history must be a positive integer dividing obs_dim")
        if m.default_candidates < 1:
            problems.append("default_candidates must be at least 1")
        have = {"window_dim": m.window_dim, "action_slice": list(m.action_slice)}
        problems += [f"{k} {v} does not match the dims and window ({have[k]})" for k, v in derived.items() if v != have[k]]
        if m.scoring:
            from .planning import ScoringSpec, window_problems

            try:
                problems += window_problems(m.layout, ScoringSpec.from_dict(m.scoring), m.protocol)
            except TypeError as exc:
                problems.append(f"malformed scoring ({exc})")
        for f in m.files:
            if Path(f.path).is_absolute() or ".." in Path(f.path).parts:
                problems.append(f"file path {f.path!r} points outside the bundle")
        if problems:
            raise BundleError(f"{where}: invalid manifest ({'; '.join(problems)}); re-export the bundle")
        return m


@dataclass
class Bundle:
    """A loaded, verified bundle directory."""

    root: Path
    manifest: BundleManifest

    def path(self, f: ModelFile) -> Path:
        return self.root / f.path

    def select(self, format: str = "onnx", precision: str | None = None, candidates: int | None = None,
               role: str = "generator") -> ModelFile:
        """The model file for a backend; ``precision=None`` prefers int8 over fp32 when both exist."""
        pool = [f for f in self.manifest.files if f.format == format and f.role == role]
        if candidates is not None:
            pool = [f for f in pool if f.accepts(candidates)]
        order = [precision] if precision else ["int8", "int8-dynamic", "fp32"]
        for p in order:
            for f in pool:
                over_budget = self.manifest.parity.get(f.path, {}).get("within_budget") is False
                if f.precision == p and not (over_budget and precision is None):
                    return f  # a model exported over its error budget (--force) only when asked for by name
        have = ", ".join(f"{f.path} ({f.format} {f.precision}, K={f.candidates or 'any'})"
                         for f in self.manifest.files) or "none"
        want = f"{format} {precision or 'any precision'}" + (f" for K={candidates}" if candidates else "")
        raise BundleError(f"{self.root}: no {want} model in the bundle (it has: {have}); re-export with "
                          f"kdp-edge export RUN_DIR --format {format}"
                          + (f" --candidates {candidates}" if candidates and format == "tflite" else ""))


def write_manifest(root: str | os.PathLike, manifest: BundleManifest) -> Path:
    """Hash every listed file, then write ``bundle.json`` atomically (last, so a bundle with a
    manifest is complete)."""
    import time

    from . import __version__
    from .fileio import atomic_write_json

    root = Path(root)
    for f in manifest.files:
        p = root / f.path
        f.sha256, f.bytes = sha256_file(p), p.stat().st_size
    manifest.kdp_edge_version = __version__
    manifest.created = manifest.created or time.time()
    return atomic_write_json(root / MANIFEST, manifest.to_dict())


def load_bundle(root: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and validate ``bundle.json``; with ``verify`` check every file's size and sha256."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"bundle directory not found: {root}. Create one with: kdp-edge export RUN_DIR --out {root}")
    mpath = root / MANIFEST
    if not mpath.exists():
        raise BundleError(f"{root} is not a bundle: {MANIFEST} is missing (an interrupted export writes it last; "
                          "re-run kdp-edge export)")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: not valid JSON ({exc}); the file is corrupted, re-export the bundle") from exc
    manifest = BundleManifest.from_dict(raw, str(mpath))
    if not manifest.files:
        raise BundleError(f"{mpath}: lists no model files; re-export the bundle")
    for f in manifest.files:
        if f.format not in FORMATS or f.precision not in PRECISIONS:
            raise BundleError(f"{mpath}: {f.path} has unknown format/precision {f.format}/{f.precision}")
        p = root / f.path
        if not p.is_file():
            raise BundleError(f"{root}: model file {f.path} is missing; copy the whole bundle directory")
        if not verify:
            continue
        size = p.stat().st_size
        if size != f.bytes:
            raise BundleError(f"{p}: {size} bytes, the manifest says {f.bytes} (truncated or replaced during copy); "
                              "copy the bundle again")
        digest = sha256_file(p)
        if digest != f.sha256:
            raise BundleError(f"{p}: sha256 {digest[:12]}… does not match the manifest's {f.sha256[:12]}… "
                              "(corrupted or modified); copy or re-export the bundle")
    return Bundle(root, manifest)
