"""Robot I/O calibration (units, signs, limits) and loop-timing calibration for ``kdp-edge run``.

Two files, both versioned JSON written atomically (format in ``docs/calibration.md``):

* **robot calibration** (``"format": "kdp-edge-robot-calibration", "version": 1``), from
  ``kdp-edge calibrate io``: per state channel ``scale``, ``offset``, observed raw ``raw_min/raw_max``,
  ``model_min/model_max`` and ``units``; per action channel ``scale``, ``offset``, raw command limits
  ``raw_min/raw_max`` and ``units``; the controller's HELLO (dims, ``fw_name``, ``fw_version``,
  ``fw_signature``) and a UTC timestamp. Mapping directions::

      state:  model = (raw - offset) / scale
      action: raw   = scale * model + offset      (then clamped to [raw_min, raw_max])

* **timing calibration** (``"format": "kdp-edge-timing-calibration", "version": 1``), from
  ``kdp-edge calibrate latency``: serial RTT, STATE period/jitter and plan-latency percentiles and the
  recommended control rate and action execution offset. Rate: the STATE rate if p99 plan + p99 RTT/2
  fits in ``margin`` (0.8) of a STATE period, else the STATE rate divided by the smallest integer that
  makes it fit. Offset: p50 RTT. The loop executes plan step ``round((now + offset - t_state_rx) /
  step_dt)``, which already counts the time spent planning (``now - t_state_rx``); what it cannot see
  is the STATE's trip to the host before ``t_state_rx`` and the ACTION's trip to the controller after
  ``now``: one round trip (each leg ~RTT/2 on a symmetric link). The file also gives the offset in
  plan steps and the total STATE-to-actuation latency (p50 RTT + p50 plan).

How the state mapping is derived. A range recording alone cannot tell which model units the raw
numbers correspond to, so ``calibrate io`` matches the *observed raw range* of each channel with a
*reference model-unit range* of the same motion:

* ``--model-range CH:LO,HI`` (per channel, repeatable; ``LO > HI`` declares an inverted sign), or
* ``--reference FILE``: a robot calibration recorded earlier for the same motion (e.g. on the
  unscaled simulator, or the training robot); its ``model_min/model_max`` per channel are the reference.

Then ``scale = (raw_max - raw_min) / (model_max - model_min)`` and ``offset = raw_min - scale * model_min``
(a linear map is fixed by two points: the two range ends). Channels without a reference keep the
identity map (scale 1, offset 0): their range is still recorded (limits), and the file says
``"mapping": "identity"`` for them. The state sign is positive unless the reference range is inverted.

How the action mapping is derived (``--sweep``). The host holds raw commands at levels
``mid ± {0.25, 0.5} * half_range`` of each action channel (the HELLO limits; each level held for a fixed
number of STATEs, in the order +l, -l, -l, +l, -l, +l, +l, -l per level l: an integrator's velocity
and position return to rest and sweep a range that is symmetric whatever the actuator's sign, so the
range match below holds for reversed motors too), records the state, converts it
to model units with the state mapping above (or, better, with the state channels of an earlier hand
calibration, ``--state-from``: the sweep's own ranges shift by one tick whenever the host answers a STATE
late, and a sweep cannot tell a reversed sensor from a reversed motor), and fits per state channel the rate of change during
each hold (time = STATE seq * STATE period) against the command: ``rate = g * (cmd - c0)``. The
channel that responds best (highest R², e.g. the velocity of an integrator axis) is that action's
response channel; ``c0`` is the raw command that produces no motion, i.e. the action ``offset``. With
a reference file that has a ``response_gain`` g_ref (model-state rate per model-action unit) for the
channel, ``scale = g_ref / g`` (sign included: a reversed motor gives a negative scale); without one
the command range is mapped onto the bundle's [-1, 1] (``scale = half_range``, sign from the response
being positive on the response channel). The result's ``response_gain`` is stored in model units per
model action, so a sweep on the reference robot produces a reference file for the next one.

Deployment: :class:`CalibratedLoopIO` wraps the serial LoopIO of ``kdp-edge run`` and applies both
maps, clamping raw commands to the calibrated limits (``actions_clamped`` counted in the summary).
:func:`check_against_hello` refuses a file whose dims or firmware signature differ from the
controller's (:class:`CalibrationMismatchError`, a KDPError: exit code 2).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kdp_edge.errors import KDPError

FORMAT = "kdp-edge-robot-calibration"
TIMING_FORMAT = "kdp-edge-timing-calibration"
VERSION = 1


class CalibrationError(KDPError):
    """A calibration file is missing, malformed or of an unknown version."""


class CalibrationMismatchError(CalibrationError):
    """The calibration was made for another controller (dims or firmware signature differ)."""


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hello_dict(caps: Any) -> dict:
    """The HELLO facts a calibration is bound to."""
    from firmware_bridge.protocol import fw_version_str

    return {"state_dim": int(caps.state_dim), "action_dim": int(caps.action_dim), "fw_name": caps.fw_name,
            "fw_version": fw_version_str(caps.fw_version), "fw_signature": f"0x{caps.fw_signature:08x}",
            "state_period_us": int(caps.state_period_us),
            "action_min": [float(v) for v in caps.action_min], "action_max": [float(v) for v in caps.action_max]}


# ---------------------------------------------------------------------------------------------- file
@dataclass
class RobotCalibration:
    """Per-channel unit maps (see module docstring). ``state``/``action``: lists of channel dicts."""

    state: list[dict]
    action: list[dict]
    hello: dict = field(default_factory=dict)
    method: str = "manual"
    created: str = field(default_factory=_now_iso)
    notes: list[str] = field(default_factory=list)

    @property
    def state_dim(self) -> int:
        return len(self.state)

    @property
    def action_dim(self) -> int:
        return len(self.action)

    # arrays
    def _arr(self, chans: list[dict], key: str, default: float) -> np.ndarray:
        return np.array([float(c.get(key, default) if c.get(key) is not None else default) for c in chans])

    @property
    def state_scale(self) -> np.ndarray:
        return self._arr(self.state, "scale", 1.0)

    @property
    def state_offset(self) -> np.ndarray:
        return self._arr(self.state, "offset", 0.0)

    @property
    def action_scale(self) -> np.ndarray:
        return self._arr(self.action, "scale", 1.0)

    @property
    def action_offset(self) -> np.ndarray:
        return self._arr(self.action, "offset", 0.0)

    @property
    def action_raw_min(self) -> np.ndarray:
        return self._arr(self.action, "raw_min", -np.inf)

    @property
    def action_raw_max(self) -> np.ndarray:
        return self._arr(self.action, "raw_max", np.inf)

    # maps
    def state_to_model(self, raw) -> np.ndarray:
        """model = (raw - offset) / scale (float32)."""
        return ((np.asarray(raw, np.float64) - self.state_offset) / self.state_scale).astype(np.float32)

    def action_to_raw(self, action) -> tuple[np.ndarray, np.ndarray]:
        """raw = scale * action + offset, clamped to [raw_min, raw_max]; returns (raw, clamped mask)."""
        raw = self.action_scale * np.asarray(action, np.float64) + self.action_offset
        lo, hi = self.action_raw_min, self.action_raw_max
        tol = 1e-6 * np.maximum(1.0, np.abs(self.action_scale))  # float round-off at a limit is no clamp
        clamped = (raw < lo - tol) | (raw > hi + tol)
        return np.clip(raw, lo, hi).astype(np.float32), clamped

    # io
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "created": self.created, "method": self.method,
                "hello": self.hello, "state": self.state, "action": self.action, "notes": self.notes,
                "mapping": {"state": "model = (raw - offset) / scale",
                            "action": "raw = scale * model + offset, clamped to [raw_min, raw_max]"}}

    def save(self, path: str | Path) -> Path:
        from kdp_edge.fileio import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, source: str = "calibration") -> RobotCalibration:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise CalibrationError(f"{source} is not a robot calibration (\"format\": \"{FORMAT}\" missing); "
                                   "write one with `kdp-edge calibrate io`")
        if d.get("version") != VERSION:
            raise CalibrationError(f"{source} has calibration version {d.get('version')!r}, this kdp-edge reads "
                                   f"version {VERSION}: re-run `kdp-edge calibrate io`")
        st, ac = d.get("state"), d.get("action")
        if not isinstance(st, list) or not isinstance(ac, list):
            raise CalibrationError(f"{source}: 'state' and 'action' must be lists of channels")
        for kind, chans in (("state", st), ("action", ac)):
            for i, c in enumerate(chans):
                s = c.get("scale", 1.0) if isinstance(c, dict) else None
                if not isinstance(s, (int, float)) or not math.isfinite(s) or s == 0:
                    raise CalibrationError(f"{source}: {kind} channel {i} needs a finite non-zero 'scale', got {s!r}")
                if not isinstance(c.get("offset", 0.0), (int, float)):
                    raise CalibrationError(f"{source}: {kind} channel {i} 'offset' must be a number")
        return cls(state=st, action=ac, hello=d.get("hello") or {}, method=d.get("method", "manual"),
                   created=d.get("created", ""), notes=list(d.get("notes") or []))

    @classmethod
    def load(cls, path: str | Path) -> RobotCalibration:
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise CalibrationError(f"calibration file not found: {p}") from e
        except (OSError, ValueError) as e:
            raise CalibrationError(f"cannot read calibration {p}: {e}") from e
        return cls.from_dict(d, str(p))

    @classmethod
    def from_maps(cls, caps: Any, state_scale=1.0, state_offset=0.0, action_scale=1.0, action_offset=0.0,
                  method: str = "manual") -> RobotCalibration:
        """A calibration with known maps for the controller whose HELLO is ``caps`` (action limits: HELLO's)."""
        sd, ad = int(caps.state_dim), int(caps.action_dim)
        ss, so = np.broadcast_to(state_scale, sd), np.broadcast_to(state_offset, sd)
        a_s, a_o = np.broadcast_to(action_scale, ad), np.broadcast_to(action_offset, ad)
        state = [{"name": f"s{i}", "scale": float(ss[i]), "offset": float(so[i]), "units": "raw"} for i in range(sd)]
        action = [{"name": f"a{i}", "scale": float(a_s[i]), "offset": float(a_o[i]), "units": "raw",
                   "raw_min": float(caps.action_min[i]), "raw_max": float(caps.action_max[i])} for i in range(ad)]
        return cls(state, action, hello_dict(caps), method)


def _sig(sig: Any, source: str) -> int:
    try:
        return int(str(sig), 0)
    except ValueError as e:
        raise CalibrationError(f"{source}: fw_signature {sig!r} is not a number (e.g. \"0x1a2b3c4d\")") from e


def check_against_hello(cal: RobotCalibration, caps: Any, source: str = "the calibration") -> list[str]:
    """Raise :class:`CalibrationMismatchError` if ``cal`` was made for another controller; returns warnings."""
    h = cal.hello or {}
    if (cal.state_dim, cal.action_dim) != (caps.state_dim, caps.action_dim):
        raise CalibrationMismatchError(
            f"{source} maps {cal.state_dim} state / {cal.action_dim} action channels but the controller reports "
            f"state_dim {caps.state_dim} / action_dim {caps.action_dim}: it was made for another robot; "
            "re-run `kdp-edge calibrate io` on this one")
    warns = []
    sig = h.get("fw_signature")
    if sig is None:
        warns.append(f"{source} is not bound to a firmware (no fw_signature); dims match, using it")
    elif _sig(sig, source) != caps.fw_signature:
        raise CalibrationMismatchError(
            f"{source} was made for firmware {h.get('fw_name', '?')} signature {sig}, the controller runs "
            f"{caps.fw_name} signature 0x{caps.fw_signature:08x}: the firmware changed (units may have too); "
            "re-run `kdp-edge calibrate io`")
    return warns


# ---------------------------------------------------------------------------------------------- deploy
class CalibratedLoopIO:
    """LoopIO wrapper: raw STATE -> model units, model actions -> raw commands (clamped, counted)."""

    def __init__(self, inner: Any, cal: RobotCalibration):
        self.inner, self.cal = inner, cal
        self.actions_clamped = 0
        self.channel_clamps = [0] * cal.action_dim
        self.last_raw: np.ndarray | None = None
        self.last_raw_action: np.ndarray | None = None

    def read_observation(self, timeout: float):
        from dataclasses import replace

        obs = self.inner.read_observation(timeout)
        if obs is None:
            return None
        self.last_raw = np.asarray(obs.values, np.float32)
        if obs.values.shape[0] != self.cal.state_dim:
            return obs  # the planner reports the size mismatch
        return replace(obs, values=self.cal.state_to_model(obs.values))

    def send_action(self, action: np.ndarray, obs, valid_for_ms: int) -> bool:
        raw, clamped = self.cal.action_to_raw(action)
        if clamped.any():
            self.actions_clamped += 1
            for i in np.flatnonzero(clamped):
                self.channel_clamps[i] += 1
        self.last_raw_action = raw
        return self.inner.send_action(raw, obs, valid_for_ms)

    def send_stop(self) -> None:
        self.inner.send_stop()

    def summary(self, path: str) -> dict:
        return {"file": path, "actions_clamped": self.actions_clamped, "channel_clamps": list(self.channel_clamps)}


# ---------------------------------------------------------------------------------------------- recording
@dataclass
class Recording:
    """Raw STATE samples: values [N, state_dim], seq [N], host rx times [N] (monotonic s)."""

    values: np.ndarray
    seq: np.ndarray
    t_rx: np.ndarray
    interrupted: bool = False


def record_states(link: Any, seconds: float, progress=None, should_stop=None) -> Recording:
    """Read STATEs for ``seconds`` (Ctrl-C ends early, keeping what was recorded)."""
    vals, seqs, ts = [], [], []
    t_end = time.monotonic() + seconds
    last_report = 0.0
    interrupted = False
    try:
        while time.monotonic() < t_end and not (should_stop and should_stop()):
            s = link.read_state(0.2)
            if s is None or not s.finite:
                continue
            vals.append(s.values)
            seqs.append(s.seq)
            ts.append(link.latest_state_rx_time or time.monotonic())
            now = time.monotonic()
            if progress is not None and now - last_report >= 1.0:
                last_report = now
                progress(len(vals), max(0.0, t_end - now), np.min(vals, 0), np.max(vals, 0))
    except KeyboardInterrupt:
        interrupted = True
    return _recording(vals, seqs, ts, interrupted)


def _recording(vals, seqs, ts, interrupted=False) -> Recording:
    v = np.asarray(vals, np.float64).reshape(len(vals), -1) if vals else np.zeros((0, 0))
    return Recording(v, np.asarray(seqs, np.int64), np.asarray(ts, np.float64), interrupted)


def unwrap_seq(seq: np.ndarray) -> np.ndarray:
    """u32 STATE seqs made monotonic (wrap-aware)."""
    if len(seq) == 0:
        return seq.astype(np.float64)
    d = np.diff(seq.astype(np.int64)) % (1 << 32)
    d = np.where(d >= 1 << 31, d - (1 << 32), d)
    return np.concatenate([[0], np.cumsum(d)]).astype(np.float64)


@dataclass
class SweepResult:
    recording: Recording
    holds: list[tuple[int, float, int, int]]  # (action channel, raw command, first index, end index)


def sweep(link: Any, caps: Any, hold_states: int = 25, levels=(0.25, 0.5), progress=None,
          should_stop=None) -> SweepResult:
    """Drive each action channel through raw levels ``mid ± level * half_range`` (order: module docstring),
    each held for ``hold_states`` STATEs, the other channels at their mid; record every STATE."""
    lo, hi = np.asarray(caps.action_min, np.float64), np.asarray(caps.action_max, np.float64)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    period_ms = max(1, caps.state_period_us // 1000)
    valid = max(3 * period_ms, 50)
    vals, seqs, ts, holds = [], [], [], []
    plan = []
    for ch in range(len(lo)):
        seq_levels: list[float] = []
        for lvl in levels:  # an integrator comes back to rest, through a range symmetric whatever the sign
            seq_levels += [lvl, -lvl, -lvl, lvl, -lvl, lvl, lvl, -lvl]
        plan += [(ch, lvl) for lvl in seq_levels] + [(ch, 0.0)]
    interrupted = False
    pending = None
    try:
        for k, (ch, lvl) in enumerate(plan):
            cmd = mid.copy()
            cmd[ch] = mid[ch] + lvl * half[ch]
            start = len(vals)
            seq0 = None  # a hold lasts hold_states controller ticks (STATE seqs), whatever the host drops
            while True:
                if should_stop and should_stop():
                    raise KeyboardInterrupt
                s, pending = (pending, None) if pending is not None else (link.read_state(0.5), None)
                if s is None or not s.finite:
                    continue
                seq0 = s.seq if seq0 is None else seq0
                if (s.seq - seq0) % (1 << 32) >= hold_states:
                    pending = s  # the first STATE of the next level
                    break
                link.send_action(cmd, valid_for_ms=valid, state_seq=s.seq)
                vals.append(s.values)
                seqs.append(s.seq)
                ts.append(link.latest_state_rx_time or time.monotonic())
            if lvl != 0.0:
                holds.append((ch, float(cmd[ch]), start, len(vals)))
            if progress is not None:
                progress(k + 1, len(plan), ch, float(cmd[ch]))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        link.send_stop()
    return SweepResult(_recording(vals, seqs, ts, interrupted), holds)


def fit_action_response(model_states: np.ndarray, seq: np.ndarray, period_s: float,
                        holds: list[tuple[int, float, int, int]], action_dim: int,
                        settle_frac: float = 0.3) -> list[dict]:
    """Per action channel: the best-responding state channel and ``rate = g * (cmd - c0)`` (module docstring)."""
    t = unwrap_seq(seq) * period_s
    out = []
    for ch in range(action_dim):
        hs = [h for h in holds if h[0] == ch]
        cmds, rates = [], []
        for _, cmd, i0, i1 in hs:
            j0 = i0 + int(math.ceil(settle_frac * (i1 - i0)))
            if i1 - j0 < 3:
                continue
            tt = t[j0:i1]
            A = np.stack([tt - tt.mean(), np.ones_like(tt)], 1)
            coef, *_ = np.linalg.lstsq(A, model_states[j0:i1], rcond=None)
            cmds.append(cmd)
            rates.append(coef[0])  # [state_dim] slopes
        if len(cmds) < 2:
            out.append({"response_channel": None, "note": "too few holds recorded"})
            continue
        c = np.asarray(cmds)
        R = np.asarray(rates)  # [holds, state_dim]
        best = None
        for s in range(R.shape[1]):
            g, b = np.polyfit(c, R[:, s], 1)
            pred = g * c + b
            ss_tot = float(((R[:, s] - R[:, s].mean()) ** 2).sum())
            r2 = 1 - float(((R[:, s] - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
            if ss_tot > 0 and (best is None or r2 > best[1] + 1e-6):
                best = (s, r2, g, b)
        if best is None or best[2] == 0:
            out.append({"response_channel": None, "note": "no state channel responded"})
            continue
        s, r2, g, b = best
        out.append({"response_channel": int(s), "r2": float(r2), "gain_per_raw": float(g), "zero_cmd": float(-b / g)})
    return out


# ---------------------------------------------------------------------------------------------- derive
def parse_model_ranges(items: list[str] | tuple[str, ...], state_dim: int) -> dict[int, tuple[float, float]]:
    """``["0:-1,1", "2:-5,5"]`` -> {0: (-1, 1), 2: (-5, 5)}; ``"all:-1,1"`` applies to every channel."""
    out: dict[int, tuple[float, float]] = {}
    for it in items:
        try:
            ch, rng = it.split(":", 1)
            lo, hi = (float(x) for x in rng.split(","))
        except ValueError as e:
            raise CalibrationError(f"--model-range {it!r}: expected CH:LO,HI (e.g. 0:-1,1)") from e
        chans = range(state_dim) if ch.strip() == "all" else [int(ch)]
        for c in chans:
            if not 0 <= c < state_dim:
                raise CalibrationError(f"--model-range {it!r}: channel {c} not in 0..{state_dim - 1}")
            if lo == hi:
                raise CalibrationError(f"--model-range {it!r}: LO and HI must differ")
            out[c] = (lo, hi)
    return out


def reference_ranges(ref: RobotCalibration, state_dim: int) -> dict[int, tuple[float, float]]:
    """Model-unit ranges per channel of a reference calibration (model_min/model_max)."""
    if ref.state_dim != state_dim:
        raise CalibrationMismatchError(f"the reference calibration has {ref.state_dim} state channels, the "
                                       f"controller {state_dim}: use a reference recorded on the same kind of robot")
    return {i: (c["model_min"], c["model_max"]) for i, c in enumerate(ref.state)
            if c.get("model_min") is not None and c.get("model_max") is not None and c["model_max"] != c["model_min"]}


def derive_state_channels(raw: np.ndarray, ref: dict[int, tuple[float, float]], units: list[str] | None = None,
                          min_span: float = 1e-9) -> tuple[list[dict], list[str]]:
    """State channels from raw samples [N, D] and reference model-unit ranges (module docstring)."""
    notes = []
    chans = []
    d = raw.shape[1]
    for i in range(d):
        rmin, rmax = float(raw[:, i].min()), float(raw[:, i].max())
        c: dict[str, Any] = {"name": f"s{i}", "units": (units[i] if units and i < len(units) else "raw"),
                             "raw_min": rmin, "raw_max": rmax}
        if i in ref and rmax - rmin > min_span:
            lo, hi = ref[i]
            scale = (rmax - rmin) / (hi - lo)  # negative when the reference range is inverted
            offset = rmin - scale * lo  # the raw minimum is the model value LO (LO > HI: inverted sign)
            c.update(scale=scale, offset=offset, mapping="range-match")
        else:
            if i in ref:
                notes.append(f"state channel {i} did not move (range {rmin:g}..{rmax:g}): identity map kept")
            c.update(scale=1.0, offset=0.0, mapping="identity")
        lo_m, hi_m = sorted(((rmin - c["offset"]) / c["scale"], (rmax - c["offset"]) / c["scale"]))
        c.update(model_min=lo_m, model_max=hi_m)
        chans.append(c)
    return chans, notes


def derive_action_channels(caps_lo, caps_hi, fits: list[dict] | None, ref: RobotCalibration | None,
                           units: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """Action channels: raw limits from HELLO; scale/offset from the sweep fits (module docstring)."""
    lo, hi = np.asarray(caps_lo, np.float64), np.asarray(caps_hi, np.float64)
    chans, notes = [], []
    for i in range(len(lo)):
        c: dict[str, Any] = {"name": f"a{i}", "units": (units[i] if units and i < len(units) else "raw"),
                             "raw_min": float(lo[i]), "raw_max": float(hi[i])}
        f = fits[i] if fits and i < len(fits) else None
        if f is None or f.get("response_channel") is None:
            c.update(scale=1.0, offset=0.0, mapping="identity")
            if fits is not None:
                notes.append(f"action channel {i}: {f.get('note') if f else 'no sweep data'}; identity map kept")
        else:
            g, c0, s = f["gain_per_raw"], f["zero_cmd"], f["response_channel"]
            gref = None
            if ref is not None and i < ref.action_dim:
                rc = ref.action[i]
                if rc.get("response_gain") is not None and rc.get("response_channel") == s:
                    gref = float(rc["response_gain"])
            if gref is not None:
                scale, how = gref / g, "sweep-reference"
            else:
                half = (hi[i] - lo[i]) / 2
                scale, how = math.copysign(half, g), "sweep-range"
                notes.append(f"action channel {i}: no reference response gain; raw range mapped onto [-1, 1]")
            c.update(scale=float(scale), offset=float(c0), mapping=how, response_channel=s,
                     response_gain=float(g * scale), response_r2=f["r2"])
        chans.append(c)
    return chans, notes


def calibrate_from_states(raw: np.ndarray, caps: Any | None, ref_ranges: dict, method: str,
                          fits: list[dict] | None = None, ref: RobotCalibration | None = None,
                          action_dim: int | None = None, action_limits=None,
                          state_units=None, action_units=None) -> RobotCalibration:
    if raw.ndim != 2 or len(raw) < 2:
        raise CalibrationError(f"only {len(raw)} STATE samples recorded: record longer (--seconds)")
    state, notes = derive_state_channels(raw, ref_ranges, state_units)
    if caps is not None:
        lo, hi = caps.action_min, caps.action_max
    elif action_limits is not None:
        lo, hi = action_limits
    else:
        lo, hi = [-np.inf] * (action_dim or 0), [np.inf] * (action_dim or 0)
    action, n2 = derive_action_channels(lo, hi, fits, ref, action_units)
    for ch in action:  # JSON cannot hold inf: unknown limits are null
        for k in ("raw_min", "raw_max"):
            if not math.isfinite(ch[k]):
                ch[k] = None
    cal = RobotCalibration(state, action, hello_dict(caps) if caps is not None else {}, method, notes=notes + n2)
    cal.notes.append(f"{len(raw)} STATE samples")
    return cal


def states_from_log(path: str | Path) -> tuple[np.ndarray, int | None, tuple | None]:
    """Raw states (``obs_raw``, else ``obs``) of a ``kdp-edge run`` JSONL log; also action_dim and the
    observed raw action range (``action_raw``, else ``action``) if the log has actions."""
    vals, acts = [], []
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise CalibrationError(f"cannot read run log {p}: {e}") from e
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            if n == len(lines) - 1:
                continue  # a run killed mid-write
            raise CalibrationError(f"{p}:{n + 1} is not JSON: not a `kdp-edge run --log` file") from None
        v = r.get("obs_raw", r.get("obs"))
        if v is not None and all(math.isfinite(x) for x in v):
            vals.append(v)
        a = r.get("action_raw", r.get("action"))
        if a is not None:
            acts.append(a)
    if not vals:
        raise CalibrationError(f"{p} has no state values ('obs' fields): record it with this kdp-edge's "
                               "`kdp-edge run --log` (older logs lack them)")
    ad = len(acts[0]) if acts else None
    return np.asarray(vals, np.float64), ad, None


# ---------------------------------------------------------------------------------------------- timing
def _pct(xs, qs=(50, 90, 99)) -> dict:
    a = np.asarray(xs, np.float64)
    if a.size == 0:
        return {"n": 0}
    out = {f"p{q}_ms": float(np.percentile(a, q)) for q in qs}
    out.update(mean_ms=float(a.mean()), max_ms=float(a.max()), min_ms=float(a.min()), n=int(a.size))
    return out


def measure_link_timing(link: Any, caps: Any, pings: int = 50, state_seconds: float = 2.0) -> dict:
    """RTT percentiles (HEARTBEAT) and STATE period / jitter (host arrival times and controller stamps)."""
    rtts, lost = [], 0
    for _ in range(pings):
        r = link.ping(0.5)
        if r is None:
            lost += 1
        else:
            rtts.append(1e3 * r)
    rx, stamps, seqs = [], [], []
    t_end = time.monotonic() + state_seconds
    while time.monotonic() < t_end:
        s = link.read_state(0.2)
        if s is None:
            continue
        rx.append(link.latest_state_rx_time)
        stamps.append(s.timestamp_us)
        seqs.append(s.seq)
    nominal_ms = caps.state_period_us / 1e3
    out: dict[str, Any] = {"rtt_ms": _pct(rtts), "pings_lost": lost, "state_period_nominal_ms": nominal_ms}
    if len(rx) >= 3:
        ds = np.diff(unwrap_seq(np.asarray(seqs)))
        ok = ds > 0
        per_rx = 1e3 * np.diff(np.asarray(rx))[ok] / ds[ok]
        st = np.diff(np.asarray(stamps, np.int64)) % (1 << 32)
        per_fw = st[ok] / 1e3 / ds[ok]
        out["state_period_host_ms"] = _pct(per_rx)
        out["state_period_controller_ms"] = _pct(per_fw)
        out["state_jitter_host_ms"] = _pct(np.abs(per_rx - np.median(per_rx)))
        out["states_received"] = len(rx)
        out["states_missed"] = int((ds[ok] - 1).sum())
    return out


def measure_plan_latency(planner: Any, n: int = 200, obs_samples: np.ndarray | None = None) -> dict:
    """Plan latency percentiles on ``kdp-edge bench``'s sample conditions (plausible observations and
    goals: PointMaze positions in free cells); ``obs_samples`` (recorded states, model units) replace
    the observations when given."""
    from kdp_edge.runtime.bench import bench_conditions

    conds = bench_conditions(planner.manifest, n=min(n, 256))
    lat = []
    for i in range(n):
        obs, goal = conds[i % len(conds)]
        if obs_samples is not None and len(obs_samples):
            obs = np.asarray(obs_samples[i % len(obs_samples)], np.float32)
        t0 = time.perf_counter()
        planner.plan(obs, goal)
        lat.append(1e3 * (time.perf_counter() - t0))
    return _pct(lat)


def recommend(link_t: dict, plan_t: dict, step_dt_s: float, state_period_ms: float, margin: float = 0.8,
              max_divisor: int = 16) -> dict:
    """Control rate and execution offset from the measured percentiles (module docstring of timing)."""
    rtt, pl = link_t.get("rtt_ms", {}), plan_t
    budget = pl.get("p99_ms", 0.0) + rtt.get("p99_ms", 0.0) / 2
    k = next((k for k in range(1, max_divisor + 1) if budget <= margin * k * state_period_ms), max_divisor)
    rate = 1e3 / (k * state_period_ms)
    one_way = rtt.get("p50_ms", 0.0) / 2
    # The loop picks plan step round((now + offset - t_state_rx) / step_dt): the time spent planning
    # (now - t_state_rx) is already counted, so the offset is what it cannot see: the STATE's trip to
    # the host (measured before t_state_rx) plus the ACTION's trip to the controller = one RTT.
    offset = rtt.get("p50_ms", 0.0)
    total = offset + pl.get("p50_ms", 0.0)
    out = {"rate_hz": rate, "state_rate_divisor": k, "offset_ms": offset,
           "basis": {"budget_ms": budget, "budget": "p99 plan + p99 RTT / 2", "margin": margin,
                     "period_ms": k * state_period_ms, "state_period_ms": state_period_ms,
                     "plan_p99_ms": pl.get("p99_ms"), "rtt_p99_ms": rtt.get("p99_ms"),
                     "offset": "p50 RTT = STATE up + ACTION down (the loop adds the plan time it measures)",
                     "one_way_p50_ms": one_way, "plan_p50_ms": pl.get("p50_ms"),
                     "state_to_actuation_p50_ms": total}}
    if step_dt_s:
        out["offset_plan_steps"] = offset / (1e3 * step_dt_s)
        out["state_to_actuation_plan_steps"] = total / (1e3 * step_dt_s)
        out["step_dt_ms"] = 1e3 * step_dt_s
    if budget > margin * max_divisor * state_period_ms:
        out["warning"] = f"p99 plan + RTT/2 = {budget:.1f} ms does not fit even 1/{max_divisor} of the STATE rate"
    return out


def load_timing(path: str | Path) -> dict:
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CalibrationError(f"timing file not found: {p}") from e
    except (OSError, ValueError) as e:
        raise CalibrationError(f"cannot read timing file {p}: {e}") from e
    if not isinstance(d, dict) or d.get("format") != TIMING_FORMAT:
        raise CalibrationError(f"{p} is not a timing calibration (\"format\": \"{TIMING_FORMAT}\"); "
                               "write one with `kdp-edge calibrate latency`")
    if d.get("version") != VERSION:
        raise CalibrationError(f"{p} has timing version {d.get('version')!r}, expected {VERSION}")
    rec = d.get("recommended") or {}
    if not isinstance(rec.get("rate_hz"), (int, float)) or not isinstance(rec.get("offset_ms"), (int, float)):
        raise CalibrationError(f"{p}: 'recommended' needs numeric rate_hz and offset_ms")
    return d
