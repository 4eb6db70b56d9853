"""Feetech SCS/STS/SMS serial-bus servo packets (written from Feetech's protocol manual; no vendor SDK).

Framing (the same as ROBOTIS Dynamixel Protocol 1.0)::

    instruction  FF FF  ID  LEN  INST   P1 .. PN  CHK        LEN = N + 2
    status       FF FF  ID  LEN  ERROR  P1 .. PN  CHK        CHK = ~(ID + LEN + INST|ERROR + sum(P)) & 0xFF

IDs 0..253, 0xFE is broadcast (no reply, except SYNC_READ where each listed servo answers in turn
with its own status packet). Instructions used: PING 0x01, READ 0x02 (addr, n), WRITE 0x03 (addr, data),
SYNC_READ 0x82 (addr, n, id...), SYNC_WRITE 0x83 (addr, n, [id, data(n)]...).

Multi-byte registers: little-endian on the STS/SMS series, big-endian on the SCS series (SCS0009).
Signed registers use sign-magnitude (bit 15 for speeds, bit 11 for the homing offset).

Everything here is pure functions plus a streaming :class:`PacketDecoder` that resynchronises on
garbage; bad input raises :class:`PacketError` (``kind``: checksum | malformed | length).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .servo_stream import DecoderStats as _StreamStats
from .servo_stream import StreamDecoder

HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_ID = 0xFD
MAX_LENGTH = 250  # LEN byte: params + 2 (the SDK's TXPACKET_MAX_LEN is 250 bytes for the whole packet)


class Inst(enum.IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    RESET = 0x06
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


class Reg(enum.IntEnum):
    """STS/SMS control table addresses used here (SCS shares 3, 5, 40, 42, 56, 58)."""

    MODEL_NUMBER = 3  # 2 bytes, read-only
    ID = 5
    BAUD_RATE = 6
    MIN_POSITION_LIMIT = 9  # 2 bytes
    MAX_POSITION_LIMIT = 11  # 2 bytes
    HOMING_OFFSET = 31  # 2 bytes, sign-magnitude bit 11 (STS/SMS only)
    TORQUE_ENABLE = 40
    ACCELERATION = 41
    GOAL_POSITION = 42  # 2 bytes
    GOAL_SPEED = 46  # 2 bytes
    LOCK = 55
    PRESENT_POSITION = 56  # 2 bytes
    PRESENT_SPEED = 58  # 2 bytes, sign-magnitude bit 15, steps/s
    PRESENT_LOAD = 60
    PRESENT_VOLTAGE = 62
    PRESENT_TEMPERATURE = 63


class ErrorBit(enum.IntFlag):
    """Bits of a status packet's ERROR byte."""

    VOLTAGE = 1 << 0
    ANGLE = 1 << 1  # angle sensor / angle limit
    OVERHEAT = 1 << 2
    OVERCURRENT = 1 << 3
    OVERLOAD = 1 << 5


ERROR_NAMES = {ErrorBit.VOLTAGE: "voltage", ErrorBit.ANGLE: "angle", ErrorBit.OVERHEAT: "overheat",
               ErrorBit.OVERCURRENT: "overcurrent", ErrorBit.OVERLOAD: "overload"}

# Model numbers (register 3) and position resolution per model.
MODELS = {"sts3215": 777, "sts3250": 2825, "sm8512bl": 11272, "scs0009": 1284}
RESOLUTION = {"sts3215": 4096, "sts3250": 4096, "sm8512bl": 4096, "scs0009": 1024}
BIG_ENDIAN_MODELS = {"scs0009"}  # SCS series
SPEED_UNIT_TICKS_PER_S = 1.0  # STS Present_Speed counts position steps per second


class PacketError(ValueError):
    """A packet that cannot be encoded or decoded. ``kind``: checksum | malformed | length."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"feetech packet {kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class Packet:
    """One decoded packet. ``code`` is the instruction (host -> servo) or the error byte (servo -> host):
    the framing does not say which, the direction does."""

    id: int
    code: int
    params: bytes = b""
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def error(self) -> ErrorBit:
        return ErrorBit(self.code & 0x2F)


def checksum(body: bytes) -> int:
    """``~sum(body) & 0xFF`` over ID, LEN, INST/ERROR and the parameters."""
    return (~sum(body)) & 0xFF


def _check_id(servo_id: int, broadcast_ok: bool = True) -> None:
    if not (0 <= servo_id <= MAX_ID or (broadcast_ok and servo_id == BROADCAST_ID)):
        raise PacketError("malformed", f"servo id must be 0..{MAX_ID} (or 0xFE broadcast), got {servo_id}")


def encode(servo_id: int, code: int, params: bytes = b"") -> bytes:
    """A whole packet (instruction or status: the framing is the same)."""
    _check_id(servo_id)
    params = bytes(params)
    length = len(params) + 2
    if length > MAX_LENGTH:
        raise PacketError("length", f"{len(params)} parameter bytes do not fit one packet (max {MAX_LENGTH - 2})")
    if not 0 <= code <= 0xFF:
        raise PacketError("malformed", f"instruction / error byte must be 0..255, got {code}")
    body = bytes((servo_id, length, code)) + params
    return HEADER + body + bytes((checksum(body),))


def ping(servo_id: int) -> bytes:
    return encode(servo_id, Inst.PING)


def read(servo_id: int, address: int, n: int) -> bytes:
    _check_id(servo_id, broadcast_ok=False)
    return encode(servo_id, Inst.READ, bytes((_u8(address, "address"), _u8(n, "length"))))


def write(servo_id: int, address: int, data: bytes) -> bytes:
    return encode(servo_id, Inst.WRITE, bytes((_u8(address, "address"),)) + bytes(data))


def sync_read(ids: list[int], address: int, n: int) -> bytes:
    """Broadcast SYNC_READ: every listed servo answers with its own status packet of ``n`` data bytes."""
    for i in ids:
        _check_id(i, broadcast_ok=False)
    return encode(BROADCAST_ID, Inst.SYNC_READ, bytes((_u8(address, "address"), _u8(n, "length"))) + bytes(ids))


def sync_write(address: int, n: int, data: dict[int, bytes]) -> bytes:
    """Broadcast SYNC_WRITE of ``n`` bytes at ``address`` per servo (``{id: data}``); no reply."""
    params = bytearray((_u8(address, "address"), _u8(n, "length")))
    for i, d in data.items():
        _check_id(i, broadcast_ok=False)
        if len(d) != n:
            raise PacketError("length", f"servo {i}: {len(d)} data bytes, the SYNC_WRITE carries {n} per servo")
        params.append(i)
        params += d
    return encode(BROADCAST_ID, Inst.SYNC_WRITE, bytes(params))


def status(servo_id: int, error: int = 0, params: bytes = b"") -> bytes:
    """A servo's reply (the virtual bus uses it)."""
    return encode(servo_id, error, params)


def _u8(v: int, what: str) -> int:
    if not 0 <= int(v) <= 0xFF:
        raise PacketError("malformed", f"{what} must be 0..255, got {v}")
    return int(v)


def decode(packet: bytes) -> Packet:
    """Decode exactly one packet; raises :class:`PacketError`."""
    b = bytes(packet)
    if len(b) < 6 or b[:2] != HEADER:
        raise PacketError("malformed", f"not a packet: {b[:8].hex(' ')}")
    servo_id, length = b[2], b[3]
    if servo_id == 0xFF:
        raise PacketError("malformed", "id 0xFF")
    if length < 2 or length > MAX_LENGTH:
        raise PacketError("length", f"LEN byte {length} out of 2..{MAX_LENGTH}")
    if len(b) != 4 + length:
        raise PacketError("length", f"LEN byte says {4 + length} bytes, got {len(b)}")
    if checksum(b[2:-1]) != b[-1]:
        raise PacketError("checksum", f"checksum 0x{b[-1]:02x}, computed 0x{checksum(b[2:-1]):02x}")
    return Packet(servo_id, b[4], b[5:-1], b)


@dataclass
class DecoderStats(_StreamStats):
    checksum_errors: int = 0

    @property
    def check_errors(self) -> int:
        return self.checksum_errors


class PacketDecoder(StreamDecoder):
    """Streaming decoder: feed byte chunks, get whole packets whose checksum verified.

    Resynchronisation: bytes before a ``FF FF`` header are discarded; a candidate with a bad LEN or a
    bad checksum costs one byte (the search restarts one byte later), so a header-looking pattern inside
    garbage or inside a corrupted packet cannot swallow the packet after it. :meth:`feed` never raises."""

    stats_class = DecoderStats

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        buf = self._buf
        while True:
            start = buf.find(HEADER)
            if start < 0:
                keep = 1 if buf[-1:] == b"\xff" else 0  # a header may be split across chunks
                if len(buf) > keep:
                    self._drop(len(buf) - keep)
                return out
            if start:
                self._drop(start)
            if len(buf) < 4:
                return out
            servo_id, length = buf[2], buf[3]
            if servo_id == 0xFF:  # FF FF FF ...: the header starts one byte later
                self._drop(1, resync=False)
                continue
            if length < 2 or length > MAX_LENGTH:
                self.stats.malformed += 1
                self._drop(1)
                continue
            total = 4 + length
            if len(buf) < total:
                return out
            pkt = bytes(buf[:total])
            if checksum(pkt[2:-1]) != pkt[-1]:
                self.stats.checksum_errors += 1
                self._drop(1)
                continue
            del buf[:total]
            self.stats.packets += 1
            out.append(Packet(pkt[2], pkt[4], pkt[5:-1], pkt))


# ---- register values -------------------------------------------------------------------------------------
def to_bytes(value: int, n: int, big_endian: bool = False) -> bytes:
    """Unsigned ``value`` in ``n`` bytes (little-endian on STS/SMS, big-endian on SCS)."""
    if not 0 <= value < 1 << (8 * n):
        raise PacketError("malformed", f"{value} does not fit {n} unsigned bytes")
    return int(value).to_bytes(n, "big" if big_endian else "little")


def from_bytes(data: bytes, big_endian: bool = False) -> int:
    return int.from_bytes(bytes(data), "big" if big_endian else "little")


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Feetech signed registers: magnitude in the low bits, 1 in ``sign_bit`` for negative."""
    mag = abs(int(value))
    if mag >= 1 << sign_bit:
        raise PacketError("malformed", f"{value} does not fit a sign-magnitude value with the sign in bit {sign_bit}")
    return mag | (1 << sign_bit) if value < 0 else mag


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    mag = raw & ((1 << sign_bit) - 1)
    return -mag if raw & (1 << sign_bit) else mag


def error_names(error: int) -> list[str]:
    """Names of the bits set in a status ERROR byte (unknown bits as ``bitN``)."""
    out = [name for bit, name in ERROR_NAMES.items() if error & bit]
    known = 0
    for bit in ERROR_NAMES:
        known |= int(bit)
    out += [f"bit{i}" for i in range(8) if error & (1 << i) and not known & (1 << i)]
    return out


__all__ = ["HEADER", "BROADCAST_ID", "Inst", "Reg", "ErrorBit", "MODELS", "RESOLUTION", "PacketError", "Packet",
           "checksum", "encode", "ping", "read", "write", "sync_read", "sync_write", "status", "decode",
           "PacketDecoder", "to_bytes", "from_bytes", "encode_sign_magnitude", "decode_sign_magnitude",
           "error_names"]
