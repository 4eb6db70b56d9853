"""Servo-bus cycle benchmark (issue #26): bus cycle time, its bound at the baud rate, and the control rate.

    python bench/servo_bus.py [--cycles 10000] [--loop-cycles 10000] [--realtime 50] [--out bench/results/servo]

For each family (Feetech STS Protocol 0, Dynamixel Protocol 2.0), 6 motors at 1 000 000 baud:

1. **Bound**: the bytes on the bus per cycle, from the real encoders (``servo_feetech`` / ``servo_dynamixel``):
   the SYNC_READ instruction, the 6 status packets, the SYNC_WRITE of goals; 10 bits a byte at the baud
   rate. Stated separately: the servos' return delay before each status packet, 6 x the factory default
   500 us (Return Delay Time 250 x 2 us: Dynamixel X register 9, ROBOTIS e-Manual; Feetech STS register 7,
   the default LeRobot's ``configure_motors`` states and sets to 0), and 0 (an arm set up by LeRobot).
2. **Cycle**: :class:`~firmware_bridge.servo_bus.ServoBusLink` (the link ``kdp-edge run --bus`` uses) against
   the virtual bus :class:`~firmware_bridge.servo_sim.ServoBusSim` in its own process: back-to-back sync read
   + sync write, ``--cycles`` times, positions only and positions + velocities, p50 / p99 / max of the time
   from one sync read's start to the next. Three buses: the bare pty (bytes move at once: the host's
   software overhead alone), and the sim's wire-time model at the baud rate with a return delay of 0 and
   of ``--return-delay-us``. The sim process stands in for hardware: it runs under SCHED_FIFO
   (``--sim-priority``, 0: the default policy) with a 1 ns timer slack; how late it wrote replies against
   the model is reported. The host side runs under the default policy, and with ``--realtime PRIO`` once
   more under SCHED_FIFO.
3. **Control rate**: ``kdp-edge run BUNDLE --port <the sim's pty> --bus FAMILY --motors 1,..,6 --rate 100
   --precision int8`` in a subprocess for ``--loop-cycles`` cycles, against the wire-time model with the
   factory return delay (the slowest bus of the three). The bundle: 6 joints (state_dim 6, action_dim 6),
   trained ``--train-steps`` steps with the default model size on made-up smooth joint trajectories and
   exported ``--quantize int8`` (plan latency is representative; the plans' quality does not matter here
   and is not measured); cached in ``OUT/work``. Reported from the run's summary and per-cycle log:
   deadline misses after warm-up, plan p50 / p99, STATE period p50 / p99 / max, jitter, missed STATEs.
   ``--realtime PRIO`` adds a run under SCHED_FIFO (``kdp-edge run --realtime``).

Writes ``servo-bus.json`` and ``servo-bus.md`` into ``--out``. Timings are wall-clock on a shared machine;
the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_bridge.servo_bus import FAMILIES, ServoBusLink, _Family  # noqa: E402
from firmware_bridge.servo_sim import DEFAULT_MODEL, ServoBusSim  # noqa: E402

BAUD = 1_000_000
BITS_PER_BYTE = 10  # start + 8 data + stop
FACTORY_RETURN_DELAY_US = 500.0  # Return Delay Time 250 x 2 us (Dynamixel X register 9; Feetech STS register 7)
MODES = ("pty", "wire", "wire+rd")


# ---------------------------------------------------------------------------------------------- bound
def cycle_packets(family: str, n_motors: int, velocity: bool) -> dict[str, Any]:
    """The packets of one bus cycle, made by the link's own encoders: the SYNC_READ the link sends, one
    status packet per motor (positions at mid-range, velocity 0) and the SYNC_WRITE of goals."""
    fam = _Family(family)
    mod = fam.mod
    ids = list(range(1, n_motors + 1))
    model = DEFAULT_MODEL[family]
    mid = mod.RESOLUTION[model] // 2
    if velocity:
        addr, n = min(fam.pos_addr, fam.vel_addr), fam.pos_len + fam.vel_len
    else:
        addr, n = fam.pos_addr, fam.pos_len
    regs = bytearray(n)
    regs[fam.pos_addr - addr:fam.pos_addr - addr + fam.pos_len] = fam.encode_pos(mid, model)
    request = mod.sync_read(ids, addr, n)
    statuses = [mod.status(i, 0, bytes(regs)) for i in ids]
    write = mod.sync_write(fam.goal_addr, fam.pos_len, {i: fam.encode_pos(mid, model) for i in ids})
    return {"request": request, "statuses": statuses, "sync_write": write}


def bound(family: str, n_motors: int, velocity: bool, baud: int = BAUD,
          return_delay_us: float = FACTORY_RETURN_DELAY_US) -> dict[str, Any]:
    """Bytes on the bus per cycle and their wire time; the return delays stated separately."""
    p = cycle_packets(family, n_motors, velocity)
    sizes = {"request": len(p["request"]), "status_each": [len(s) for s in p["statuses"]],
             "sync_write": len(p["sync_write"])}
    total = sizes["request"] + sum(sizes["status_each"]) + sizes["sync_write"]
    wire_ms = 1e3 * BITS_PER_BYTE * total / baud
    rd_ms = n_motors * return_delay_us / 1e3
    return {"family": family, "motors": n_motors, "velocity": velocity, "baud": baud, "bytes": sizes,
            "bytes_total": total, "wire_ms": wire_ms, "return_delay_us": return_delay_us,
            "return_delay_ms": rd_ms, "bound_ms": wire_ms + rd_ms,
            "max_rate_hz": 1e3 / wire_ms, "max_rate_hz_with_return_delay": 1e3 / (wire_ms + rd_ms)}


# ---------------------------------------------------------------------------------------------- sim process
def _timer_slack_ns(ns: int) -> bool:
    """PR_SET_TIMERSLACK for this thread (and the threads it starts): sleeps wake within ``ns``."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(29, int(ns), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _sim_child(conn: Any, family: str, ids: list[int], kwargs: dict, rt_prio: int | None) -> None:
    try:
        slack = _timer_slack_ns(1)
        policy = "default"
        if rt_prio:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(rt_prio)))
                policy = f"SCHED_FIFO {int(rt_prio)}"
            except (OSError, AttributeError) as e:  # not root / no CAP_SYS_NICE: say so in the result
                policy = f"default (SCHED_FIFO refused: {e})"
        sim = ServoBusSim(family, ids, **kwargs).start()  # its thread inherits the policy and the slack
        conn.send({"port": sim.port, "timer_slack_1ns": slack, "policy": policy})
        conn.recv()  # stop
        sim.close()
        late = np.array([r.t_sent - r.t_due for rec in sim.wire_log for r in rec.replies], float)
        out: dict[str, Any] = {"counters": dict(sim.counters), "wire_records": len(sim.wire_log)}
        if late.size:
            out["reply_lateness_ms"] = pct(late)
        conn.send(out)
    except BaseException as e:  # noqa: BLE001 - the parent reports it
        conn.send({"error": f"{type(e).__name__}: {e}"})


class SimProcess:
    """A :class:`ServoBusSim` in a forked process (the servos are not in the host's process); ``port``
    is its pty. On exit the sim's counters and reply lateness come back in ``result``."""

    def __init__(self, family: str, ids: list[int], rt_prio: int | None = None, **kwargs: Any) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sim_child, args=(child, family, ids, kwargs, rt_prio), daemon=True)
        self.port = ""
        self.info: dict = {}
        self.result: dict = {}

    def __enter__(self) -> SimProcess:
        self.proc.start()
        if not self.conn.poll(30):
            raise RuntimeError("the virtual servo bus did not start within 30 s")
        self.info = self.conn.recv()
        if "error" in self.info:
            raise RuntimeError(f"virtual servo bus: {self.info['error']}")
        self.port = self.info["port"]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.send("stop")
            if self.conn.poll(30):
                self.result = self.conn.recv()
        except (OSError, EOFError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def sim_kwargs(mode: str, baud: int, return_delay_us: float) -> dict:
    if mode == "pty":
        return {}
    return {"wire_baud": baud, "return_delay_us": return_delay_us if mode == "wire+rd" else 0.0}


# ---------------------------------------------------------------------------------------------- cycle
def pct(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {}
    return {"p50_ms": float(1e3 * np.percentile(x, 50)), "p99_ms": float(1e3 * np.percentile(x, 99)),
            "max_ms": float(1e3 * np.max(x)), "mean_ms": float(1e3 * np.mean(x)), "n": int(len(x))}


def cycle_time(family: str, n_motors: int, velocity: bool, mode: str, cycles: int, warmup: int = 200,
               baud: int = BAUD, return_delay_us: float = FACTORY_RETURN_DELAY_US, host_rt: int | None = None,
               sim_prio: int | None = None) -> dict[str, Any]:
    """Back-to-back sync read + sync write through :class:`ServoBusLink`; cycle = one read's start to the next's.
    ``host_rt``: this thread under SCHED_FIFO at that priority while it runs the cycles."""
    from contextlib import ExitStack

    from kdp_edge.app.realtime import realtime

    ids = list(range(1, n_motors + 1))
    t_read, t_write, t_start = [], [], []
    missed = 0
    with SimProcess(family, ids, rt_prio=sim_prio, **sim_kwargs(mode, baud, return_delay_us)) as sim, ExitStack() as st:
        link = ServoBusLink(sim.port, family, ids, baud, velocity=velocity, reply_timeout_s=0.05)
        st.callback(link.close)
        link.hello()
        host = st.enter_context(realtime(host_rt)) or {"policy": "default"}
        first = link.read_state(0.0)
        base = np.asarray(first.values[:n_motors], float) if first is not None else np.full(n_motors, 2048.0)
        for i in range(warmup + cycles):
            t0 = time.perf_counter()
            s = link.read_state(0.0)
            t1 = time.perf_counter()
            if s is None:
                missed += int(i >= warmup)
                continue
            link.send_action(base + 20.0 * math.sin(i / 50.0), 100, s.seq)
            t2 = time.perf_counter()
            if i >= warmup:
                t_start.append(t0)
                t_read.append(t1 - t0)
                t_write.append(t2 - t1)
        t_start.append(time.perf_counter())  # the cycle after the last one would start now
        stats = link.stats
    res = {"family": family, "velocity": velocity, "mode": mode, "cycles": cycles, "warmup": warmup,
           "host_rt": host_rt, "host_scheduling": host, "sim_scheduling": sim.info.get("policy"),
           "cycle_ms": pct(np.diff(np.asarray(t_start))), "read_ms": pct(np.asarray(t_read)),
           "write_ms": pct(np.asarray(t_write)), "missed_states": missed,
           "bus_missing_replies": stats.get("bus_missing_replies", 0),
           "bus_checksum_errors": stats.get("bus_checksum_errors", 0), "sim": sim.result,
           "sim_timer_slack_1ns": sim.info.get("timer_slack_1ns")}
    if mode != "pty":
        res["sim_return_delay_us"] = return_delay_us if mode == "wire+rd" else 0.0
    return res


# ---------------------------------------------------------------------------------------------- bundle
BUNDLE_KEY_VERSION = 1


def make_dataset(path: Path, episodes: int = 50, steps: int = 200, seed: int = 0) -> None:
    """Made-up smooth joint trajectories in ticks (6 joints around mid-range); action = the next position."""
    rng = np.random.default_rng(seed)
    obs, act, ends = [], [], []
    for _ in range(episodes):
        t = np.arange(steps + 1)[:, None] / 100.0
        f, ph = rng.uniform(0.2, 1.0, 6), rng.uniform(0, 2 * np.pi, 6)
        amp, centre = rng.uniform(100, 500, 6), 2048 + rng.uniform(-300, 300, 6)
        q = centre + amp * np.sin(2 * np.pi * f * t + ph)
        obs.append(q[:-1])
        act.append(q[1:])
        e = np.zeros(steps, bool)
        e[-1] = True
        ends.append(e)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # OGBench layout (observations, actions, terminals): kdp-edge train --data
        np.savez(fh, observations=np.concatenate(obs).astype(np.float32),
                 actions=np.concatenate(act).astype(np.float32), terminals=np.concatenate(ends))


def kdp(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdp_edge.cli", *args]


def child_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def ensure_bundle(work: Path, train_steps: int, log=print) -> tuple[Path, dict]:
    """The 6-joint int8 bundle, trained and exported once and cached in ``work``."""
    key = {"version": BUNDLE_KEY_VERSION, "data": "made-up 6-joint sines, 50 x 200 steps, seed 0",
           "train_steps": train_steps, "model": "default size", "quantize": "int8", "rate_hz": 100}
    bundle, key_file = work / "bundle", work / "bundle-key.json"
    if (bundle / "bundle.json").exists() and key_file.exists() and json.loads(key_file.read_text()) == key:
        log(f"bundle: cached {bundle}")
        return bundle, key
    data, run_dir = work / "arm6.npz", work / "run"
    make_dataset(data)
    log(f"bundle: training {train_steps} steps on {data} ...")
    env = child_env()
    subprocess.run(kdp("train", "--data", str(data), "--out", str(run_dir), "--steps", str(train_steps),
                       "--threads", "1", "--quiet"), check=True, env=env)
    log("bundle: export --quantize int8 ...")
    subprocess.run(kdp("export", str(run_dir), "--out", str(bundle), "--quantize", "int8", "--rate", "100",
                       "--closed-loop-episodes", "0"), check=True, env=env, stdout=subprocess.DEVNULL)
    key_file.write_text(json.dumps(key))
    return bundle, key


# ---------------------------------------------------------------------------------------------- control loop
def loop_result(summary: dict, records: list[dict], cycles: int, rate_hz: float) -> dict[str, Any]:
    """What the target line needs, from ``kdp-edge run``'s summary and its per-cycle log."""
    c, link = summary.get("counts", {}), summary.get("link", {})
    ticks = np.asarray([r["t_tick"] for r in records if r.get("t_tick") is not None], float)
    period = np.diff(ticks)
    nominal = 1.0 / rate_hz
    out: dict[str, Any] = {
        "cycles": int(c.get("cycles", 0)), "cycles_wanted": cycles, "rate_hz": rate_hz,
        "deadline_misses": int(c.get("deadline_misses", 0)), "fallback_actions": int(c.get("fallback_actions", 0)),
        "no_state_cycles": int(c.get("no_obs", 0)), "missed_states": int(link.get("bus_states_missed", 0)),
        "bus_missing_replies": int(link.get("bus_missing_replies", 0)), "actions_sent": int(c.get("actions_sent", 0)),
        "plan_ms": summary.get("plan_ms", {}), "jitter_ms": summary.get("jitter_ms", {}),
        "state_to_tx_ms": summary.get("tick_to_tx_ms", {}), "warmup": summary.get("warmup", {}),
        "scheduling": summary.get("scheduling", {}), "model": (summary.get("bundle") or {}).get("model"),
        "period_ms": pct(period), "late_periods": int(np.sum(period > 1.5 * nominal)) if len(period) else 0,
        "sustained_hz": float(len(period) / (ticks[-1] - ticks[0])) if len(ticks) > 1 else 0.0,
    }
    if len(period):
        out["period_jitter_p99_ms"] = float(1e3 * np.percentile(np.abs(period - nominal), 99))
    out["pass"] = bool(out["cycles"] >= cycles and out["deadline_misses"] == 0
                       and out["sustained_hz"] >= 0.99 * rate_hz)
    return out


def control_loop(family: str, bundle: Path, cycles: int, rate_hz: float, work: Path, realtime: int | None,
                 baud: int = BAUD, return_delay_us: float = FACTORY_RETURN_DELAY_US,
                 sim_prio: int | None = None) -> dict[str, Any]:
    ids = [1, 2, 3, 4, 5, 6]
    tag = f"loop-{family}" + (f"-rt{realtime}" if realtime else "")
    summ, logp = work / f"{tag}.json", work / f"{tag}.jsonl"
    for p in (summ, logp):
        p.unlink(missing_ok=True)
    kw = sim_kwargs("wire+rd", baud, return_delay_us)
    with SimProcess(family, ids, rt_prio=sim_prio, **kw) as sim:
        cmd = kdp("run", str(bundle), "--port", sim.port, "--bus", family, "--motors", ",".join(map(str, ids)),
                  "--baud", str(baud), "--rate", f"{rate_hz:g}", "--cycles", str(cycles), "--precision", "int8",
                  "--summary", str(summ), "--log", str(logp))
        if realtime:
            cmd += ["--realtime", str(realtime)]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True,
                              timeout=120 + 3 * cycles / rate_hz)
        wall = time.monotonic() - t0
    if proc.returncode != 0 or not summ.exists():
        raise RuntimeError(f"kdp-edge run failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    summary = json.loads(summ.read_text())
    records = [json.loads(x) for x in logp.read_text().splitlines() if x.strip()]
    res = loop_result(summary, records, cycles, rate_hz)
    res.update({"family": family, "realtime": realtime, "wall_s": wall, "sim": sim.result,
                "sim_scheduling": sim.info.get("policy"),
                "sim_return_delay_us": return_delay_us, "command": " ".join(
                    ["kdp-edge", *cmd[3:]]).replace(sim.port, "<sim pty>")})
    return res


# ---------------------------------------------------------------------------------------------- report
def f2(d: dict, k: str, n: int = 2) -> str:
    return f"{d[k]:.{n}f}" if isinstance(d, dict) and k in d else "-"


def to_markdown(res: dict) -> str:
    from kdp_edge.provenance import provenance_line

    cfg = res["config"]
    la0, la1 = res["load_before"], res["load_after"]
    sp = cfg.get("sim_priority")
    lines = [provenance_line(res["provenance"]), "",
             f"Machine: {res['machine']}; the virtual bus in its own process under "
             f"{'SCHED_FIFO ' + str(sp) if sp else 'the default policy'}, timer slack 1 ns; load average (1 / 5 / 15 min) before {la0[0]:.2f} / {la0[1]:.2f} / "
             f"{la0[2]:.2f}, after {la1[0]:.2f} / {la1[1]:.2f} / {la1[2]:.2f}. {cfg['motors']} motors at "
             f"{cfg['baud']} baud; factory return delay {cfg['return_delay_us']:g} us per status packet "
             "(Return Delay Time 250 x 2 us: Dynamixel X register 9, ROBOTIS e-Manual; Feetech STS register 7, "
             "the default LeRobot's configure_motors states and sets to 0).", ""]
    lines += ["**Bound per cycle** (SYNC_READ + 6 status packets + SYNC_WRITE of goals; sizes from the encoders, "
              "10 bits a byte)", "",
              "| family | state | bytes: read / status each / write = total | wire (ms) | + return delays (ms) | "
              "bound with delays (ms) | max rate wire only / with delays (Hz) |", "|---|---|---|---|---|---|---|"]
    for b in res["bounds"]:
        by = b["bytes"]
        lines.append(f"| {b['family']} | {'pos+vel' if b['velocity'] else 'pos'} | {by['request']} / "
                     f"{by['status_each'][0]} / {by['sync_write']} = {b['bytes_total']} | {b['wire_ms']:.3f} | "
                     f"{b['return_delay_ms']:.3f} | {b['bound_ms']:.3f} | {b['max_rate_hz']:.0f} / "
                     f"{b['max_rate_hz_with_return_delay']:.0f} |")
    bmap = {(b["family"], b["velocity"]): b for b in res["bounds"]}
    mode_name = {"pty": "bare pty (software only)", "wire": "1 Mbaud model, return delay 0",
                 "wire+rd": f"1 Mbaud model, return delay {cfg['return_delay_us']:g} us"}
    lines += ["", f"**Bus cycle through ServoBusLink** (back-to-back sync read + sync write, {cfg['cycles']} cycles "
              "after 200 warm-up; cycle = one sync read's start to the next's)", "",
              "| family | state | bus | host | cycle p50 / p99 / max (ms) | sync read p50 / p99 (ms) | bound (ms) | "
              "p50 - bound (ms) | sim reply lateness p99 (ms) | missed STATEs |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in res["cycle"]:
        b = bmap[(c["family"], c["velocity"])]
        bd = None if c["mode"] == "pty" else (b["wire_ms"] if c["mode"] == "wire" else b["bound_ms"])
        cy = c["cycle_ms"]
        lines.append(f"| {c['family']} | {'pos+vel' if c['velocity'] else 'pos'} | {mode_name[c['mode']]} | "
                     f"{'SCHED_FIFO ' + str(c['host_rt']) if c.get('host_rt') else 'default'} | {f2(cy, 'p50_ms', 3)} / {f2(cy, 'p99_ms', 3)} / {f2(cy, 'max_ms', 3)} | "
                     f"{f2(c['read_ms'], 'p50_ms', 3)} / {f2(c['read_ms'], 'p99_ms', 3)} | "
                     + ("0 (no wire)" if bd is None else f"{bd:.3f}") + " | "
                     + (f"{cy['p50_ms']:.3f}" if bd is None else f"{cy['p50_ms'] - bd:.3f}") + " | "
                     + f"{f2(c['sim'].get('reply_lateness_ms', {}), 'p99_ms', 3)} | {c['missed_states']} |")
    if res.get("loop"):
        lines += ["", f"**Control rate**: `kdp-edge run` (int8 planner, state_dim 6, action_dim 6) at "
                  f"{cfg['rate_hz']:g} Hz for {cfg['loop_cycles']} cycles against the 1 Mbaud model with return delay "
                  f"{cfg['return_delay_us']:g} us; bundle trained {cfg['train_steps']} steps on made-up joint data "
                  "(plan latency is what matters; plan quality is not measured)", "",
                  "| family | scheduling | cycles | sustained (Hz) | deadline misses | plan p50 / p99 / max (ms) | "
                  "STATE period mean / p50 / p99 / max (ms) | period jitter p99 (ms) | STATE rx to ACTION tx p99 (ms) | "
                  "missed STATEs | fallback actions | target |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["loop"]:
            pl, pe = r["plan_ms"], r["period_ms"]
            lines.append(f"| {r['family']} | {'SCHED_FIFO ' + str(r['realtime']) if r['realtime'] else 'default'} | "
                         f"{r['cycles']} | {r['sustained_hz']:.2f} | {r['deadline_misses']} | {f2(pl, 'p50_ms')} / "
                         f"{f2(pl, 'p99_ms')} / {f2(pl, 'max_ms')} | {f2(pe, 'mean_ms', 3)} / {f2(pe, 'p50_ms')} / "
                         f"{f2(pe, 'p99_ms')} / "
                         f"{f2(pe, 'max_ms')} | {r.get('period_jitter_p99_ms', float('nan')):.2f} | "
                         f"{f2(r['state_to_tx_ms'], 'p99_ms')} | {r['missed_states']} | {r['fallback_actions']} | "
                         f"{'PASS' if r['pass'] else 'FAIL'} |")
        v = res["verdict"]
        lines += ["", f"**Target** ({v['target']}): **{'PASS' if v['pass'] else 'FAIL'}**. {v['text']}"]
        lines += ["", "Run commands (the pty is the virtual bus's): "
                  + "; ".join(f"`{r['command']}`" for r in res["loop"])]
    lines += ["", "Not modelled: the USB adapter's latency (FTDI latency timer, USB frames), the servos' "
              "processing time beyond the return delay. The bare-pty rows are the host's software overhead; the "
              "model rows add the wire and return-delay time the sim waits before writing each reply."]
    return "\n".join(lines) + "\n"


def verdict(loops: list[dict], cycles_rows: list[dict], cfg: dict) -> dict:
    """PASS when every run reached its cycles with 0 deadline misses at >= 99 % of the rate; the text gives each
    run's numbers and, for a FAIL, why, from what was measured."""
    target = f"{cfg['rate_hz']:g} Hz with 0 deadline misses in {cfg['loop_cycles']} cycles"
    ok = bool(loops) and all(r["pass"] for r in loops)
    nominal_ms = 1e3 / cfg["rate_hz"]
    parts = []
    for r in loops:
        slow = [c for c in cycles_rows if c["family"] == r["family"] and c["mode"] == "wire+rd" and not c["velocity"]]
        slow = [c for c in slow if c.get("host_rt") == r["realtime"]] or slow
        bus = slow[0]["cycle_ms"] if slow else {}
        pl, pe = r["plan_ms"], r["period_ms"]
        sched = f"SCHED_FIFO {r['realtime']}" if r["realtime"] else "default scheduling"
        s = (f"{r['family']} ({sched}): {r['cycles']} cycles at {r['sustained_hz']:.2f} Hz, "
             f"{r['deadline_misses']} deadline misses, {r['missed_states']} missed STATEs")
        if bus.get("p50_ms") and pl.get("p50_ms"):
            s += (f"; modelled bus cycle + plan = {bus['p50_ms']:.2f} + {pl['p50_ms']:.2f} ms at p50, "
                  f"{bus.get('p99_ms', float('nan')):.2f} + {pl.get('p99_ms', float('nan')):.2f} ms at p99 "
                  f"(room for about {1e3 / (bus['p50_ms'] + pl['p50_ms']):.0f} / "
                  f"{1e3 / (bus.get('p99_ms', 0) + pl.get('p99_ms', 0) or float('nan')):.0f} Hz)")
        why = []
        if r["cycles"] < r["cycles_wanted"]:
            why.append(f"{r['cycles']} of {r['cycles_wanted']} cycles")
        if r["deadline_misses"]:
            why.append(f"plan max {pl.get('max_ms', float('nan')):.1f} ms against the {nominal_ms:.0f} ms deadline "
                       "(a stall of the process on the loaded machine: plan p99 is "
                       f"{pl.get('p99_ms', float('nan')):.2f} ms)")
        if r["sustained_hz"] < 0.99 * cfg["rate_hz"]:
            why.append(f"STATE period mean {pe.get('mean_ms', float('nan')):.3f} ms (p50 {pe.get('p50_ms', float('nan')):.2f}, "
                       f"p99 {pe.get('p99_ms', float('nan')):.2f} ms): the link paces each sync read "
                       "from the previous read's start, so every late wake-up is lost for good, and late "
                       "wake-ups are frequent under this load")
        if why:
            s += " (FAIL: " + "; ".join(why) + ")"
        parts.append(s)
    return {"target": target, "pass": ok, "text": ". ".join(parts) + "."}


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    ap.add_argument("--motors", type=int, default=6)
    ap.add_argument("--baud", type=int, default=BAUD)
    ap.add_argument("--cycles", type=int, default=10_000, help="bus cycles per family, state layout and bus model")
    ap.add_argument("--warmup", type=int, default=200, help="bus cycles before the counted ones")
    ap.add_argument("--return-delay-us", type=float, default=FACTORY_RETURN_DELAY_US,
                    help="return delay of the slow bus model (default: the servos' factory 500 us)")
    ap.add_argument("--loop-cycles", type=int, default=10_000, help="kdp-edge run cycles per family")
    ap.add_argument("--rate", type=float, default=100.0, help="control rate of the kdp-edge run part (Hz)")
    ap.add_argument("--realtime", type=int, default=None, metavar="PRIO",
                    help="also run the host side (the bus cycles' thread; kdp-edge run --realtime) under SCHED_FIFO")
    ap.add_argument("--sim-priority", type=int, default=50, metavar="PRIO",
                    help="SCHED_FIFO priority of the virtual bus's process (it stands in for hardware); 0: default")
    ap.add_argument("--skip-loop", action="store_true", help="no kdp-edge run part (no bundle needed)")
    ap.add_argument("--bundle", default=None, help="use this int8 bundle (6 motors) instead of training one")
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--out", default="bench/results/servo")
    ap.add_argument("--work", default=None, help="bundle cache and run logs (default: OUT/work, not committed)")
    args = ap.parse_args(argv)
    if args.cycles < 1 or args.loop_cycles < 2 or args.motors < 1 or args.baud <= 0 or args.rate <= 0:
        print("error: --cycles >= 1, --loop-cycles >= 2, --motors >= 1, --baud > 0 and --rate > 0. "
              "fix: e.g. --cycles 1000", file=sys.stderr)
        return 2
    from kdp_edge.fileio import atomic_write_json, atomic_write_text
    from kdp_edge.provenance import provenance

    out = Path(args.out)
    work = Path(args.work) if args.work else out / "work"
    work.mkdir(parents=True, exist_ok=True)
    cfg = {"families": args.families, "motors": args.motors, "baud": args.baud, "cycles": args.cycles,
           "warmup": args.warmup, "return_delay_us": args.return_delay_us, "loop_cycles": args.loop_cycles,
           "rate_hz": args.rate, "realtime": args.realtime, "sim_priority": args.sim_priority,
           "train_steps": args.train_steps,
           "bundle": args.bundle}
    res: dict[str, Any] = {"provenance": provenance(), "config": cfg, "load_before": list(os.getloadavg()),
                           "machine": f"{platform.machine()}, {platform.processor() or platform.system()}, "
                                      f"{os.cpu_count()} CPUs, python {platform.python_version()}"}
    res["bounds"] = [bound(f, args.motors, v, args.baud, args.return_delay_us)
                     for f in args.families for v in (False, True)]
    res["cycle"] = []
    sim_prio = args.sim_priority or None
    for f in args.families:
        for v in (False, True):
            for rt in [None] + ([args.realtime] if args.realtime else []):
                for mode in MODES:
                    print(f"cycle: {f}, {'pos+vel' if v else 'pos'}, {mode}" + (f", host SCHED_FIFO {rt}" if rt else "")
                          + f", {args.cycles} cycles ...", flush=True)
                    res["cycle"].append(cycle_time(f, args.motors, v, mode, args.cycles, args.warmup, args.baud,
                                                   args.return_delay_us, rt, sim_prio))
    res["loop"] = []
    if not args.skip_loop:
        if args.motors != 6:
            print("note: the control-loop part uses 6 motors (the bundle's); --motors applies to the bus part",
                  file=sys.stderr)
        if args.bundle:
            bundle, key = Path(args.bundle), {"given": args.bundle}
        else:
            bundle, key = ensure_bundle(work, args.train_steps)
        res["bundle"] = {"path": str(bundle), **key}
        for f in args.families:
            for rt in [None] + ([args.realtime] if args.realtime else []):
                print(f"loop: {f}, {args.loop_cycles} cycles at {args.rate:g} Hz"
                      + (f", SCHED_FIFO {rt}" if rt else "") + " ...", flush=True)
                res["loop"].append(control_loop(f, bundle, args.loop_cycles, args.rate, work, rt, args.baud,
                                                args.return_delay_us, sim_prio))
        res["verdict"] = verdict(res["loop"], res["cycle"], cfg)
    res["load_after"] = list(os.getloadavg())
    atomic_write_json(out / "servo-bus.json", res)
    md = to_markdown(res)
    atomic_write_text(out / "servo-bus.md", md)
    print(md)
    print(f"wrote {out / 'servo-bus.json'} and {out / 'servo-bus.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
