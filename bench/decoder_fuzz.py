#!/usr/bin/env python3
"""Decoder robustness/throughput benchmark: N frames, a fraction randomly corrupted, one stream.

    python bench/decoder_fuzz.py                     # 1e6 frames, half of them corrupted
    python bench/decoder_fuzz.py --frames 100000 --out decoder_fuzz.json

Frames are unique (seq = index) STATE / ACTION / HEARTBEAT / FAULT / STOP messages with random
float32 payloads. Corruptions (applied with numpy to the concatenated wire stream, one per
corrupted frame) model UART faults:

    bitflip1     one flipped bit (anywhere, delimiter included)
    bitflip3     2-3 flipped bits
    burst        1-4 consecutive bytes overwritten (noise burst)
    scatter      2-4 bytes overwritten at random places in the frame (worst case for a CRC-16)
    drop         1-3 bytes deleted (receiver overrun)
    insert       1-16 random bytes inserted inside the frame
    truncate     frame cut short (delimiter kept or lost)
    garbage      1-64 random bytes (zeros possible) before the frame
    duplicate    frame sent twice (not damage: both copies are legitimate frames)

The stream is fed to FrameDecoder in random chunks (1..--chunk-max bytes). Reported: decoded
frames, **false accepts** (a decoded frame that differs from every frame sent: must be 0),
clean frames recovered (every clean frame whose predecessor kept its 0x00 must come back: the
resynchronisation guarantee), decoder counters and decoder-only throughput. JSON with --out.
Exit status 1 if either guarantee is violated.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_bridge import protocol as P  # noqa: E402

KINDS = ("bitflip1", "bitflip3", "burst", "scatter", "drop", "insert", "truncate", "garbage", "duplicate")
WEIGHTS = np.array([3, 2, 2, 1, 2, 1, 2, 1, 1], dtype=np.float64)


def make_frames(n: int, rng: np.random.Generator) -> list[bytes]:
    """``n`` unique wire frames (seq = index)."""
    kind = rng.choice(5, size=n, p=[0.70, 0.20, 0.04, 0.03, 0.03])
    sdims = rng.choice([4, 8, 16, 64], size=n, p=[0.55, 0.2, 0.15, 0.10])
    adims = rng.integers(1, 17, size=n)
    vals = rng.standard_normal((n, 64)).astype(np.float32) * 10
    ts = rng.integers(0, 2**32, size=n)
    texts = ["watchdog", "overcurrent on channel 2", "", "sensor 3 invalid"]
    out: list[bytes] = []
    enc = P.encode
    for i in range(n):
        k, t = int(kind[i]), int(ts[i])
        if k == 0:
            m: P.Message = P.State(0xB007, i & 0xFF, i // 2, vals[i, : sdims[i]].tolist(), seq=i, timestamp_us=t)
        elif k == 1:
            m = P.Action(max(0, i - 1), 100, vals[i, : adims[i]].tolist(), seq=i, timestamp_us=t)
        elif k == 2:
            m = P.Heartbeat(0xB007, i * 7 & 0xFFFFFFFF, bool(i & 1), seq=i, timestamp_us=t)
        elif k == 3:
            m = P.Fault(i & 0xFFFF, texts[i % len(texts)], seq=i, timestamp_us=t)
        else:
            m = P.Stop(i & 0xFFFF, seq=i, timestamp_us=t)
        out.append(enc(m))
    return out


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for every (s, l)."""
    lens = lens.astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(np.cumsum(lens) - lens, lens)
    return np.repeat(starts.astype(np.int64), lens) + (np.arange(total) - offs)


def corrupt(stream: np.ndarray, starts: np.ndarray, lens: np.ndarray, prob: float, rng: np.random.Generator,
            kinds: tuple[str, ...] = KINDS):
    """Apply one random corruption to a fraction ``prob`` of frames.

    Returns (new stream, kind index per frame or -1, whether each frame's 0x00 delimiter survived).
    """
    n = len(starts)
    kind = np.full(n, -1, dtype=np.int8)
    hit = rng.random(n) < prob
    w = np.array([WEIGHTS[i] if k in kinds else 0.0 for i, k in enumerate(KINDS)])
    kind[hit] = rng.choice(len(KINDS), size=int(hit.sum()), p=w / w.sum())
    out = stream.copy()
    keep = np.ones(len(stream), dtype=bool)
    ins_pos: list[np.ndarray] = []
    ins_val: list[np.ndarray] = []

    def sel(name: str) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(kind == KINDS.index(name))
        return starts[idx], lens[idx]

    def rand_off(ls: np.ndarray) -> np.ndarray:
        return (rng.random(len(ls)) * ls).astype(np.int64)

    # bit flips (XOR; np.bitwise_xor.at handles repeated positions)
    for name, lo, hi in (("bitflip1", 1, 1), ("bitflip3", 2, 3)):
        s, ls = sel(name)
        k = rng.integers(lo, hi + 1, size=len(s))
        s_rep, l_rep = np.repeat(s, k), np.repeat(ls, k)
        pos = s_rep + rand_off(l_rep)
        np.bitwise_xor.at(out, pos, (1 << rng.integers(0, 8, size=len(pos))).astype(np.uint8))
    # burst: consecutive overwrite
    s, ls = sel("burst")
    b = np.minimum(rng.integers(1, 5, size=len(s)), ls)
    first = s + (rng.random(len(s)) * (ls - b + 1)).astype(np.int64)
    pos = _ranges(first, b)
    out[pos] = rng.integers(0, 256, size=len(pos), dtype=np.uint8)
    # scatter: k random positions in the frame
    s, ls = sel("scatter")
    k = rng.integers(2, 5, size=len(s))
    pos = np.repeat(s, k) + rand_off(np.repeat(ls, k))
    out[pos] = rng.integers(0, 256, size=len(pos), dtype=np.uint8)
    # drop: 1-3 random bytes deleted
    s, ls = sel("drop")
    k = rng.integers(1, 4, size=len(s))
    keep[np.repeat(s, k) + rand_off(np.repeat(ls, k))] = False
    # truncate: delete from a random cut to the end (the delimiter kept half of the time)
    s, ls = sel("truncate")
    cut = 1 + (rng.random(len(s)) * (ls - 2)).astype(np.int64)
    lose_delim = rng.random(len(s)) < 0.5
    keep[_ranges(s + cut, ls - cut - 1 + lose_delim)] = False
    # insert: 1-16 random bytes somewhere inside the frame
    s, ls = sel("insert")
    k = rng.integers(1, 17, size=len(s))
    ins_pos.append(np.repeat(s + rand_off(ls), k))
    ins_val.append(rng.integers(0, 256, size=int(k.sum()), dtype=np.uint8))
    # garbage before the frame
    s, ls = sel("garbage")
    k = rng.integers(1, 65, size=len(s))
    ins_pos.append(np.repeat(s, k))
    ins_val.append(rng.integers(0, 256, size=int(k.sum()), dtype=np.uint8))
    # duplicate: the (intact) frame again right after it
    s, ls = sel("duplicate")
    ins_pos.append(np.repeat(s + ls, ls))
    ins_val.append(stream[_ranges(s, ls)])

    ends = starts + lens - 1
    delim_ok = (out[ends] == 0) & keep[ends]
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    base = out[keep]
    pos = np.concatenate(ins_pos)
    vals = np.concatenate(ins_val)
    final = np.insert(base, kept_before[pos], vals) if len(pos) else base
    return final, kind, delim_ok


def run(n: int, prob: float, seed: int, chunk_max: int, kinds: tuple[str, ...] = KINDS) -> dict:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    frames = make_frames(n, rng)
    t_enc = time.perf_counter() - t0
    lens = np.fromiter((len(f) for f in frames), dtype=np.int64, count=n)
    starts = np.cumsum(lens) - lens
    orig = np.frombuffer(b"".join(frames), dtype=np.uint8)
    del frames
    t0 = time.perf_counter()
    stream, kind, delim_ok = corrupt(orig, starts, lens, prob, rng, kinds)
    t_cor = time.perf_counter() - t0
    data = stream.tobytes()

    # chunk boundaries
    cuts = np.cumsum(rng.integers(1, chunk_max + 1, size=len(data) // max(1, (chunk_max + 1) // 2) + 2))
    cuts = cuts[cuts < len(data)].tolist()
    dec = P.FrameDecoder()
    decoded: list[P.Message] = []
    t0 = time.perf_counter()
    prev = 0
    for c in cuts + [len(data)]:
        decoded += dec.feed(data[prev:c])
        prev = c
    t_dec = time.perf_counter() - t0

    # verify: every decoded frame must be byte-identical to the frame sent with its seq
    false_accepts = 0
    got = np.zeros(n, dtype=bool)
    for m in decoded:
        i = m.seq
        if 0 <= i < n and P.encode(m) == orig[starts[i]: starts[i] + lens[i]].tobytes():
            got[i] = True
        else:
            false_accepts += 1
    clean = kind < 0
    # a clean frame must come back unless the frame before it lost its delimiter (then they merge)
    expected = clean & np.concatenate([[True], delim_ok[:-1]])
    per_kind = {k: int((kind == i).sum()) for i, k in enumerate(KINDS)}
    st = dec.stats
    return {
        "frames": n,
        "corrupt_prob": prob,
        "corrupted": int((~clean).sum()),
        "corrupted_by_kind": per_kind,
        "stream_bytes": len(data),
        "decoded": len(decoded),
        "false_accepts": false_accepts,
        "clean_frames": int(clean.sum()),
        "clean_recovered": int((got & clean).sum()),
        "clean_expected": int(expected.sum()),
        "clean_expected_recovered": int((got & expected).sum()),
        "corrupted_frames_recovered_intact": int((got & ~clean).sum()),
        "decoder": st.as_dict(),
        "decode_seconds": round(t_dec, 3),
        "frames_per_second": round(n / t_dec),
        "megabytes_per_second": round(len(data) / t_dec / 1e6, 2),
        "encode_seconds": round(t_enc, 2),
        "corrupt_seconds": round(t_cor, 2),
        "seed": seed,
        "chunk_max": chunk_max,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=float, default=1e6, help="number of frames (default 1e6)")
    ap.add_argument("--corrupt-prob", type=float, default=0.5, help="fraction of frames corrupted (default 0.5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-max", type=int, default=4096, help="largest chunk handed to feed() (default 4096)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    a = ap.parse_args(argv)
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    if not kinds or not set(kinds) <= set(KINDS):
        ap.error(f"--kinds must be a subset of {','.join(KINDS)}")
    t0 = time.perf_counter()
    r = run(int(a.frames), a.corrupt_prob, a.seed, a.chunk_max, kinds)
    r["total_seconds"] = round(time.perf_counter() - t0, 2)
    d = r["decoder"]
    rows = [
        ("frames sent", r["frames"]),
        ("corrupted", f"{r['corrupted']} ({r['corrupt_prob']:.0%})"),
        *[(f"  {k}", v) for k, v in r["corrupted_by_kind"].items()],
        ("stream bytes", r["stream_bytes"]),
        ("frames decoded", r["decoded"]),
        ("FALSE ACCEPTS", r["false_accepts"]),
        ("clean frames recovered", f"{r['clean_recovered']} / {r['clean_frames']}"),
        ("  after an intact 0x00", f"{r['clean_expected_recovered']} / {r['clean_expected']} (must be all)"),
        ("crc_errors", d["crc_errors"]),
        ("malformed (cobs)", f"{d['malformed']} ({d['cobs_errors']})"),
        ("oversize", d["oversize"]),
        ("resyncs", d["resyncs"]),
        ("bytes discarded", d["bytes_discarded"]),
        ("decode time", f"{r['decode_seconds']} s"),
        ("throughput", f"{r['frames_per_second']:,} frames/s, {r['megabytes_per_second']} MB/s"),
        ("total time", f"{r['total_seconds']} s (encode {r['encode_seconds']} s, corrupt {r['corrupt_seconds']} s)"),
    ]
    w = max(len(k) for k, _ in rows)
    print("decoder fuzz benchmark")
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    if a.out:
        from kdp_edge.provenance import provenance

        a.out.write_text(json.dumps(r | {"provenance": provenance()}, indent=2) + "\n")
        print(f"  json -> {a.out}")
    return 1 if r["false_accepts"] or r["clean_expected_recovered"] != r["clean_expected"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
