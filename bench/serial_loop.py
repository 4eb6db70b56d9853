"""Closed loop over the serial path: timing at 50 / 100 Hz, success vs direct evaluation, watchdog.

    python bench/serial_loop.py --bundle BUNDLE [--cycles 10000] [--episodes 20] [--out bench/results/serial]

1. Timing: ``kdp-edge run`` logic against the virtual PointMaze robot on a pty (``sim://``), STATE-
   paced, for ``--cycles`` cycles at each rate: plan latency, loop jitter, state-to-ACTION time
   (p50 / p99 / max), deadline misses, fallback actions, link errors.
2. Quality: the same episodes (D4RL UMaze protocol, seed 0) through the serial path at 100 Hz (one
   simulator step per cycle, the data's rate) and through direct in-process evaluation with the
   same bundle (``kdp_edge.evaluate.rollout``): normalised score and success side by side.
3. Watchdog: the host sends one ACTION with valid-for V and goes quiet; the time until the
   controller reports WATCHDOG_TRIPPED, for the Python virtual robot and the C reference firmware
   (host build on a pty), over ``--trials`` trials.

Writes ``serial.json`` and ``serial.md`` into ``--out``. Timings are wall-clock on a shared machine:
read medians and p99, not single runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_bridge import protocol as P  # noqa: E402
from firmware_bridge.link import SerialLink  # noqa: E402
from kdp_edge.app.run import RunOptions, run  # noqa: E402
from kdp_edge.metrics import percentiles_ms  # noqa: E402


def timing(bundle: str, rate: float, cycles: int, precision: str | None) -> dict:
    s = run(bundle, RunOptions(port="sim://pointmaze-umaze", rate_hz=rate, cycles=cycles, episodes=10**6,
                               precision=precision), log=lambda m: None)
    return {"rate_hz": rate, "cycles": cycles, "counts": s["counts"], "plan_ms": s["plan_ms"],
            "jitter_ms": s["jitter_ms"], "state_to_tx_ms": s["tick_to_tx_ms"],
            "link": {k: v for k, v in s["link"].items() if k.startswith("rx_") or k in ("controller_resets",)},
            "model": s["bundle"]["model"]}


def quality(bundle: str, episodes: int, precision: str | None) -> dict:
    from kdp_edge.evaluate import EvalProtocol, PlannerPolicy, rollout, summarize
    from kdp_edge.runtime import Planner

    serial = run(bundle, RunOptions(port="sim://pointmaze-umaze", rate_hz=100.0, episodes=episodes,
                                    precision=precision), log=lambda m: None)["sim"]
    planner = Planner.load(bundle, precision=precision)
    proto = EvalProtocol(env="pointmaze-umaze", episodes=episodes, seed=0, candidates=planner.k)
    pol = PlannerPolicy(planner)  # the same planner, E episodes per call instead of one over the serial link
    direct = summarize(rollout(pol, proto, progress=False))
    return {"episodes": episodes, "serial_100hz": {k: v for k, v in serial.items() if k != "per_episode"},
            "direct": direct, "protocol": proto.describe()}


def watchdog_trials(port: str, valid_for_ms: int, trials: int) -> list[float]:
    """Seconds from sending one ACTION to the first STATE with WATCHDOG_TRIPPED, per trial."""
    out = []
    with SerialLink(port, stop_on_close=False) as link:
        link.hello(3.0)
        for _ in range(trials):
            s = None
            while s is None or not s.finite:
                s = link.read_state(1.0)
            link.send_action([0.1, 0.1], valid_for_ms, s.seq)
            t0 = time.monotonic()
            active, trip = False, None
            while time.monotonic() - t0 < 2.0:
                st = link.read_state(0.05)
                if st is None:
                    continue
                active |= st.has(P.StateFlags.ACTIVE)
                if active and st.has(P.StateFlags.WATCHDOG_TRIPPED):
                    trip = link.latest_state_rx_time - t0
                    break
            if trip is not None:
                out.append(trip)
            time.sleep(0.05)
    return out


def watchdog(trials: int, rate: float = 100.0) -> dict:
    from firmware_bridge.cbuild import CVirtualController, build_firmware, toolchain_missing
    from firmware_bridge.plants import IntegratorPlant
    from firmware_bridge.virtual_robot import start_virtual_robot

    res = {}
    for v in (50, 100):
        with start_virtual_robot(IntegratorPlant(), rate_hz=rate) as robot:
            t = watchdog_trials(robot.port, v, trials)
        res[f"python_valid{v}ms"] = summarize_trip(t, v, trials)
    missing = toolchain_missing()
    if missing:
        res["c"] = f"skipped: {missing}"
        return res
    build = build_firmware(Path("/tmp/kdp-fw-bench"), targets=("all",))
    for v in (50, 100):
        with CVirtualController(build / "virtual_controller", "--rate", str(rate), "--max-valid-ms", "500") as c:
            t = watchdog_trials(c.port, v, trials)
        res[f"c_valid{v}ms"] = summarize_trip(t, v, trials)
    res["state_period_ms"] = 1e3 / rate
    return res


def summarize_trip(t: list[float], valid_ms: int, trials: int) -> dict:
    if not t:
        return {"valid_for_ms": valid_ms, "trials": trials, "tripped": 0}
    p = percentiles_ms(t)
    return {"valid_for_ms": valid_ms, "trials": trials, "tripped": len(t), "p50_ms": p["p50_ms"],
            "p99_ms": p["p99_ms"], "max_ms": p["max_ms"], "min_ms": float(1e3 * min(t))}


def to_markdown(res: dict) -> str:
    from kdp_edge.provenance import provenance_line

    lines = [provenance_line(res["provenance"]) if "provenance" in res else f"Command: `{res['command']}`", "", f"Machine: {res['machine']}; bundle model: {res['model']}", "",
             "**Closed loop over the pty (virtual PointMaze robot, STATE-paced)**", "",
             "| rate | cycles | plan p50 / p99 (ms) | jitter p50 / p99 (ms) | STATE rx to ACTION tx p50 / p99 / max (ms) | deadline misses | fallback actions | CRC errors |",
             "|---|---|---|---|---|---|---|---|"]
    for t in res["timing"]:
        c, pl, jt, tx = t["counts"], t["plan_ms"], t["jitter_ms"], t["state_to_tx_ms"]
        lines.append(f"| {t['rate_hz']:g} Hz | {c['cycles']} | {pl['p50_ms']:.2f} / {pl['p99_ms']:.2f} | "
                     f"{jt['p50_ms']:.3f} / {jt['p99_ms']:.3f} | {tx['p50_ms']:.2f} / {tx['p99_ms']:.2f} / {tx['max_ms']:.2f} | "
                     f"{c['deadline_misses']} | {c['fallback_actions']} | {t['link'].get('rx_crc_errors', 0)} |")
    q = res.get("quality")
    if q:
        s, d = q["serial_100hz"], q["direct"]
        lines += ["", f"**Serial path vs direct evaluation** ({q['protocol']})", "",
                  "| path | normalised score | success |", "|---|---|---|",
                  f"| serial, pty, 100 Hz | {s['normalized_score_mean']:.1f} ± {s['normalized_score_sem']:.1f} | {100 * s['success_rate']:.0f}% |",
                  f"| direct, in process | {d['normalized_score_mean']:.1f} ± {d['normalized_score_sem']:.1f} | {100 * d['success_rate']:.0f}% |"]
    w = res.get("watchdog")
    if w:
        lines += ["", f"**Watchdog**: time from the last ACTION to the first STATE reporting the trip "
                      f"(STATE period {w.get('state_period_ms', 10):g} ms)", "",
                  "| controller | valid-for | trips / trials | p50 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|---|---|"]
        for k, v in w.items():
            if isinstance(v, dict):
                lines.append(f"| {k.split('_')[0]} | {v['valid_for_ms']} ms | {v['tripped']} / {v['trials']} | "
                             f"{v.get('p50_ms', float('nan')):.1f} | {v.get('p99_ms', float('nan')):.1f} | {v.get('max_ms', float('nan')):.1f} |")
            elif k == "c":
                lines.append(f"| C | — | {v} | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--precision", default=None, help="fp32 | int8 (default: the bundle's preference)")
    ap.add_argument("--cycles", type=int, default=10_000)
    ap.add_argument("--rates", type=float, nargs="+", default=[50.0, 100.0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--skip", nargs="*", default=[], choices=["timing", "quality", "watchdog"])
    ap.add_argument("--out", default="bench/results/serial")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from kdp_edge.provenance import provenance

    res: dict = {"command": "python bench/serial_loop.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                 "provenance": provenance(),
                 "machine": f"{platform.machine()}, {platform.processor() or platform.system()}, python {platform.python_version()}"}
    if "timing" not in args.skip:
        res["timing"] = []
        for rate in args.rates:
            print(f"timing at {rate:g} Hz for {args.cycles} cycles ...", flush=True)
            res["timing"].append(timing(args.bundle, rate, args.cycles, args.precision))
        res["model"] = res["timing"][0]["model"]
    if "quality" not in args.skip:
        print(f"quality: {args.episodes} episodes serial vs direct ...", flush=True)
        res["quality"] = quality(args.bundle, args.episodes, args.precision)
    if "watchdog" not in args.skip:
        print(f"watchdog: {args.trials} trials per controller ...", flush=True)
        res["watchdog"] = watchdog(args.trials)
    res.setdefault("model", args.bundle)
    res.setdefault("timing", [])
    (out / "serial.json").write_text(json.dumps(res, indent=2, default=float))
    md = to_markdown(res)
    (out / "serial.md").write_text(md)
    print(md)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
