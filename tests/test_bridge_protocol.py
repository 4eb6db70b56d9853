"""Protocol encoding/decoding and the streaming decoder (firmware_bridge.protocol)."""

from __future__ import annotations

import math
import struct

import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol as P
from firmware_bridge.seqnum import TimestampUnwrapper, seq_diff, seq_newer

U32 = st.integers(0, 2**32 - 1)
F32 = st.floats(width=32, allow_nan=False, allow_infinity=True)


def _frame_with_raw(version: int, mtype: int, payload: bytes, plen: int | None = None) -> bytes:
    """A wire frame with a *valid* CRC around arbitrary header/payload contents."""
    body = struct.pack("<BBIIH", version, mtype, 1, 2, len(payload) if plen is None else plen) + payload
    return cobs.encode(body + struct.pack("<H", P.crc16(body))) + b"\x00"


SAMPLES: list[P.Message] = [
    P.HelloReq(0xA1B2C3D4, seq=0, timestamp_us=1),
    P.Hello(7, 0xDEADBEEF, P.fw_version_u32(1, 2, 3), 0x12345678, 20000, 64,
            tuple(-float(i) for i in range(1, 17)), tuple(float(i) for i in range(1, 17)),
            500, "x" * 32, seq=2**32 - 1, timestamp_us=2**32 - 1),
    P.Hello(0, 1, 0, 0, 1, 1, (-1.0,), (1.0,), seq=3),
    P.State(5, int(P.StateFlags.WATCHDOG_TRIPPED | P.StateFlags.SUCCESS), 99, (1.5, -2.25, 0.0, P.f32(1e30)), seq=4),
    P.State(5, 0, 0, tuple(1.25 * i + 0.5 for i in range(64)), seq=5, timestamp_us=123456),
    P.Action(4, 100, (0.5, -0.75), seq=6),
    P.Action(2**32 - 1, 65535, tuple(float(i) for i in range(16)), seq=7),
    P.Heartbeat(1, 2, False, seq=8),
    P.Heartbeat(3, 4, True, seq=9),
    P.Fault(P.FaultCode.WATCHDOG, "action expired", seq=10),
    P.Fault(0x1234, "é" * 32, seq=11),
    P.Estop(P.FaultCode.OVERCURRENT, "", seq=12),
    P.Stop(0, seq=13),
    P.ResetNotice(0xCAFEBABE, P.ResetCause.BROWN_OUT, seq=14),
]


def test_crc_check_value():
    assert P.crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_roundtrip_every_message(msg):
    wire = P.encode(msg)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    assert len(wire) <= P.MAX_WIRE_FRAME
    assert P.decode(wire) == msg
    dec = P.FrameDecoder()
    assert dec.feed(wire) == [msg]
    assert dec.stats.frames_ok == 1 and dec.stats.rejected == 0


def test_every_type_is_covered():
    assert {type(m).TYPE for m in SAMPLES} == set(P.MsgType)


def test_header_layout_little_endian():
    raw = P.encode_raw(P.Stop(0x0102, seq=0x11223344, timestamp_us=0x55667788))
    assert raw[:12] == bytes([1, 0x08, 0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55, 2, 0])
    assert raw[12:14] == b"\x02\x01"
    assert raw[14:] == struct.pack("<H", P.crc16(raw[:14]))


def test_size_limits():
    biggest = P.State(1, 0, 0, tuple(1.0 + i for i in range(64)))
    assert len(P.encode_raw(biggest)) == P.MAX_RAW_FRAME == 282
    assert len(P.encode(biggest)) <= P.MAX_WIRE_FRAME == 285
    hello = SAMPLES[1]
    assert len(hello.payload()) == 28 + 8 * 16 + 32 == 188


def test_nonfinite_state_is_decoded_not_rejected():
    s = P.State(1, 0, 0, (math.nan, math.inf, -math.inf, 1.0), seq=3)
    got = P.decode(P.encode(s))
    assert math.isnan(got.values[0]) and got.values[1] == math.inf and got.values[2] == -math.inf
    assert not got.finite
    assert P.State(1, 0, 0, (1.0, 2.0)).finite


@pytest.mark.parametrize(
    "bad",
    [
        lambda: P.State(1, 0, 0, ()),
        lambda: P.State(1, 0, 0, (0.0,) * 65),
        lambda: P.Action(1, 10, (0.0,) * 17),
        lambda: P.Action(1, 70000, (0.0,)),
        lambda: P.Hello(0, 1, 0, 0, 1, 65, (0.0,), (1.0,)),
        lambda: P.Hello(0, 1, 0, 0, 1, 4, (0.0, 0.0), (1.0,)),
        lambda: P.Hello(0, 1, 0, 0, 1, 4, (0.0,), (1.0,), fw_name="n" * 33),
        lambda: P.Fault(1, "t" * 65),
        lambda: P.Stop(-1),
        lambda: P.State(1, 0, 0, (1e39,)),
        lambda: P.HelloReq(1, seq=2**32),
    ],
)
def test_encode_rejects_invalid_fields(bad):
    with pytest.raises(ValueError):
        P.encode(bad())


def test_byte_by_byte_feed_equals_bulk_feed():
    stream = b"".join(P.encode(m) for m in SAMPLES)
    dec = P.FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += dec.feed(stream[i:i + 1])
    assert got == SAMPLES
    assert dec.stats.bytes_in == len(stream)


def test_garbage_before_between_and_resync():
    a, b = P.encode(SAMPLES[3]), P.encode(SAMPLES[5])
    dec = P.FrameDecoder()
    out = dec.feed(b"\x13\x37garbage" + a[3:] + a + b"\xff" * 10 + b"\x00" + b)
    assert out == [SAMPLES[3], SAMPLES[5]]
    assert dec.stats.resyncs == 2
    assert dec.stats.rejected == 2
    assert dec.stats.bytes_discarded > 0


def test_empty_frames_are_ignored_silently():
    dec = P.FrameDecoder()
    assert dec.feed(b"\x00\x00" + P.encode(SAMPLES[0]) + b"\x00") == [SAMPLES[0]]
    assert dec.stats.rejected == 0 and dec.stats.resyncs == 0


def test_oversize_run_is_dropped_once_across_chunks():
    dec = P.FrameDecoder()
    for _ in range(10):
        assert dec.feed(b"\x55" * 100) == []
    assert dec.stats.oversize == 1
    assert dec.buffered == 0  # never buffers more than one max frame
    frame = P.encode(SAMPLES[0])
    assert dec.feed(frame) == []  # completes (ends) the oversize run
    assert dec.feed(frame) == [SAMPLES[0]]
    assert dec.stats.oversize == 1 and dec.stats.resyncs == 1


def test_oversize_segment_in_one_chunk():
    dec = P.FrameDecoder()
    assert dec.feed(b"\x55" * 400 + b"\x00" + P.encode(SAMPLES[0])) == [SAMPLES[0]]
    assert dec.stats.oversize == 1


def test_valid_crc_but_bad_structure_is_malformed():
    dec = P.FrameDecoder()
    frames = [
        _frame_with_raw(1, 0x03, b"\x00" * 12 + b"\x00" * 8),  # STATE with state_dim 0
        _frame_with_raw(1, 0x03, struct.pack("<IIHBB", 1, 0, 0, 2, 0) + b"\x00" * 4),  # dim 2, one float
        _frame_with_raw(1, 0x7E, b"\x01\x02"),  # unknown type
        _frame_with_raw(1, 0x08, b"\x00\x00", plen=5),  # payload_len lies
        _frame_with_raw(1, 0x05, struct.pack("<IIB", 1, 2, 7)),  # heartbeat is_reply = 7
    ]
    assert dec.feed(b"".join(frames)) == []
    assert dec.stats.malformed == len(frames) and dec.stats.crc_errors == 0


def test_other_protocol_version_is_counted():
    dec = P.FrameDecoder()
    assert dec.feed(_frame_with_raw(2, 0x08, b"\x00\x00")) == []
    assert dec.stats.version_mismatch == 1 and dec.stats.malformed == 0


def test_crc_error_counted():
    raw = bytearray(P.encode_raw(SAMPLES[3]))
    raw[20] ^= 0x04
    dec = P.FrameDecoder()
    assert dec.feed(cobs.encode(bytes(raw)) + b"\x00") == []
    assert dec.stats.crc_errors == 1


def test_seq_arithmetic():
    assert seq_newer(1, 0) and seq_newer(0, 2**32 - 1) and not seq_newer(5, 5) and not seq_newer(0, 1)
    assert seq_diff(3, 2**32 - 2) == 5 and seq_diff(2**32 - 2, 3) == -5
    u = TimestampUnwrapper()
    assert [u.unwrap(t) for t in (2**32 - 10, 5, 100)] == [2**32 - 10, 2**32 + 5, 2**32 + 100]


# ---------------------------------------------------------------- property-based fuzzing

messages = st.one_of(
    st.builds(P.HelloReq, U32, seq=U32, timestamp_us=U32),
    st.builds(P.State, U32, st.integers(0, 0xFFFF), U32, st.lists(F32, min_size=1, max_size=64).map(tuple),
              seq=U32, timestamp_us=U32),
    st.builds(P.Action, U32, st.integers(0, 0xFFFF), st.lists(F32, min_size=1, max_size=16).map(tuple),
              seq=U32, timestamp_us=U32),
    st.builds(P.Heartbeat, U32, U32, st.booleans(), seq=U32),
    st.builds(P.Fault, st.integers(0, 0xFFFF), st.text(max_size=16), seq=U32),
    st.builds(P.Stop, st.integers(0, 0xFFFF), seq=U32),
    st.builds(P.ResetNotice, U32, st.integers(0, 255), seq=U32),
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_fuzz_garbage_never_raises(data, chunks):
    dec = P.FrameDecoder()
    pos, i = 0, 0
    while pos < len(data):
        n = chunks[i % len(chunks)]
        for m in dec.feed(data[pos:pos + n]):
            assert isinstance(m, P.Message)
        pos, i = pos + n, i + 1
    assert dec.stats.bytes_in == len(data)
    assert dec.buffered <= P.MAX_ENCODED_FRAME


@FUZZ
@given(messages)
def test_fuzz_roundtrip(msg):
    got = P.decode(P.encode(msg))
    assert P.encode(got) == P.encode(msg)  # bytes compare: NaN-safe


OPS = ("none", "none", "bitflip", "truncate", "drop_delimiter", "garbage_after", "garbage_unterminated", "duplicate")


@FUZZ
@given(st.lists(st.tuples(messages, st.sampled_from(OPS), st.integers(0, 2**31 - 1)), min_size=1, max_size=12),
       st.lists(st.integers(1, 300), min_size=1, max_size=8))
def test_fuzz_corruption_resync_and_no_false_accept(items, chunks):
    """Corrupted streams: never raises, never yields a message that was not sent, and every
    untouched frame whose predecessor kept its delimiter is decoded (resynchronisation)."""
    stream = bytearray()
    sent: set[bytes] = set()
    expected: list[bytes] = []
    prev_op = "none"
    for msg, op, r in items:
        wire = P.encode(msg)
        sent.add(wire)
        body = bytearray(wire[:-1])
        if op == "none" or op == "duplicate":
            if prev_op not in ("drop_delimiter", "garbage_unterminated"):
                expected.append(wire)
        if op == "bitflip":
            body[r % len(body)] ^= 1 << (r % 8)
        elif op == "truncate":
            body = body[: r % len(body)]
        stream += body
        if op != "drop_delimiter":
            stream += b"\x00"
        if op == "duplicate":
            stream += wire
            expected.append(wire)
        elif op == "garbage_after":
            stream += bytes((r >> s) & 0xFF for s in range(0, 31, 3)) + b"\x00"
        elif op == "garbage_unterminated":
            stream += bytes(((r >> s) & 0xFF) or 1 for s in range(0, 31, 5))
        prev_op = op
    dec = P.FrameDecoder()
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        n = chunks[i % len(chunks)]
        got += [P.encode(m) for m in dec.feed(bytes(stream[pos:pos + n]))]
        pos, i = pos + n, i + 1
    assert all(g in sent for g in got), "decoder yielded a frame that was never sent"
    it = iter(got)
    assert all(any(e == g for g in it) for e in expected), "a clean frame was not recovered in order"
