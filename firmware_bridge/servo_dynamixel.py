"""ROBOTIS Dynamixel Protocol 2.0 packets (written from the ROBOTIS e-Manual; no vendor SDK).

Framing::

    FF FF FD 00  ID  LEN_L LEN_H  INST  P1 .. PN  CRC_L CRC_H      LEN = N + 3 (INST + params + CRC)
    status:      INST = 0x55 and P1 is the ERROR byte

* CRC-16 over every byte before the CRC (header included): polynomial 0x8005, initial value 0, not
  reflected, no final XOR (ROBOTIS' ``updateCRC``; CRC-16/BUYPASS in catalogue terms), sent low byte first.
* Byte stuffing: inside INST + parameters, each ``FF FF FD`` is followed by an extra ``FD`` so the body
  never contains the header. LEN counts the stuffed bytes; the CRC is computed on the stuffed packet.
* IDs 0..252, 0xFE broadcast. Instructions used: PING 0x01 (reply: model number u16, firmware u8),
  READ 0x02 (addr u16, n u16), WRITE 0x03 (addr u16, data), SYNC_READ 0x82 (addr u16, n u16, id...;
  every listed servo answers with its own status packet), SYNC_WRITE 0x83 (addr u16, n u16, [id, data]...).
* ERROR byte: bit 7 is the hardware alert (details in Hardware Error Status, register 70); bits 0..6 an
  error number (1 result fail, 2 instruction, 3 CRC, 4 data range, 5 data length, 6 data limit, 7 access).

Registers are little-endian; positions and velocities are two's-complement (signed 32-bit).
:class:`PacketDecoder` resynchronises on garbage; bad input raises :class:`PacketError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .servo_stream import DecoderStats as _StreamStats
from .servo_stream import StreamDecoder

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC
STATUS = 0x55
MAX_LENGTH = 1024  # larger than any packet this bus link sends or expects


class Inst(enum.IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


class Reg(enum.IntEnum):
    """X-series control table addresses used here."""

    MODEL_NUMBER = 0  # 2 bytes
    ID = 7
    BAUD_RATE = 8
    DRIVE_MODE = 10
    OPERATING_MODE = 11
    HOMING_OFFSET = 20  # 4 bytes, signed
    MAX_POSITION_LIMIT = 48  # 4 bytes
    MIN_POSITION_LIMIT = 52  # 4 bytes
    TORQUE_ENABLE = 64
    HARDWARE_ERROR_STATUS = 70
    GOAL_POSITION = 116  # 4 bytes
    PRESENT_VELOCITY = 128  # 4 bytes, signed, 0.229 rpm
    PRESENT_POSITION = 132  # 4 bytes, signed


class ErrorNumber(enum.IntEnum):
    NONE = 0
    RESULT_FAIL = 1
    INSTRUCTION = 2
    CRC = 3
    DATA_RANGE = 4
    DATA_LENGTH = 5
    DATA_LIMIT = 6
    ACCESS = 7


ALERT = 0x80


class HardwareError(enum.IntFlag):
    """Bits of Hardware Error Status (register 70), reported through the ERROR byte's alert bit."""

    VOLTAGE = 1 << 0
    OVERHEAT = 1 << 2
    ENCODER = 1 << 3
    ELECTRICAL_SHOCK = 1 << 4
    OVERLOAD = 1 << 5


HARDWARE_ERROR_NAMES = {HardwareError.VOLTAGE: "voltage", HardwareError.OVERHEAT: "overheat",
                        HardwareError.ENCODER: "encoder", HardwareError.ELECTRICAL_SHOCK: "electrical_shock",
                        HardwareError.OVERLOAD: "overload"}

MODELS = {"xl330-m077": 1190, "xl330-m288": 1200, "xl430-w250": 1060, "xm430-w350": 1020, "xm430-w210": 1030,
          "xm540-w270": 1120, "xc430-w150": 1070}
RESOLUTION = {name: 4096 for name in MODELS}
VELOCITY_UNIT_TICKS_PER_S = 0.229 * 4096 / 60  # 0.229 rpm per unit, 4096 ticks per turn


class PacketError(ValueError):
    """A packet that cannot be encoded or decoded. ``kind``: crc | malformed | length."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"dynamixel packet {kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class Packet:
    """A decoded packet, parameters unstuffed. Status packets: ``instruction == 0x55`` and ``error`` set."""

    id: int
    instruction: int
    params: bytes = b""
    error: int | None = None
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def is_status(self) -> bool:
        return self.instruction == STATUS

    @property
    def alert(self) -> bool:
        return bool((self.error or 0) & ALERT)

    @property
    def error_number(self) -> int:
        return (self.error or 0) & 0x7F


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16 with polynomial 0x8005, MSB first, initial value ``crc`` (0 for a packet)."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def stuff(body: bytes) -> bytes:
    """Insert ``FD`` after every ``FF FF FD`` (applied to INST + parameters)."""
    out = bytearray()
    for b in body:
        out.append(b)
        if b == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    """Remove the ``FD`` that follows every ``FF FF FD``; raises PacketError if it is missing."""
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        b = body[i]
        out.append(b)
        i += 1
        if b == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            if i >= n or body[i] != 0xFD:
                raise PacketError("malformed", "FF FF FD inside a packet without the stuffing byte")
            i += 1
    return bytes(out)


def _check_id(servo_id: int, broadcast_ok: bool = True) -> None:
    if not (0 <= servo_id <= MAX_ID or (broadcast_ok and servo_id == BROADCAST_ID)):
        raise PacketError("malformed", f"servo id must be 0..{MAX_ID} (or 0xFE broadcast), got {servo_id}")


def encode(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A whole packet: header, id, length, stuffed INST + params, CRC."""
    _check_id(servo_id)
    if not 0 <= instruction <= 0xFF:
        raise PacketError("malformed", f"instruction must be 0..255, got {instruction}")
    body = stuff(bytes((instruction,)) + bytes(params))
    length = len(body) + 2
    if length > MAX_LENGTH:
        raise PacketError("length", f"{len(params)} parameter bytes do not fit one packet (max {MAX_LENGTH})")
    pkt = HEADER + bytes((servo_id,)) + length.to_bytes(2, "little") + body
    return pkt + crc16(pkt).to_bytes(2, "little")


def ping(servo_id: int) -> bytes:
    return encode(servo_id, Inst.PING)


def read(servo_id: int, address: int, n: int) -> bytes:
    _check_id(servo_id, broadcast_ok=False)
    return encode(servo_id, Inst.READ, _u16(address, "address") + _u16(n, "length"))


def write(servo_id: int, address: int, data: bytes) -> bytes:
    return encode(servo_id, Inst.WRITE, _u16(address, "address") + bytes(data))


def sync_read(ids: list[int], address: int, n: int) -> bytes:
    for i in ids:
        _check_id(i, broadcast_ok=False)
    return encode(BROADCAST_ID, Inst.SYNC_READ, _u16(address, "address") + _u16(n, "length") + bytes(ids))


def sync_write(address: int, n: int, data: dict[int, bytes]) -> bytes:
    params = bytearray(_u16(address, "address") + _u16(n, "length"))
    for i, d in data.items():
        _check_id(i, broadcast_ok=False)
        if len(d) != n:
            raise PacketError("length", f"servo {i}: {len(d)} data bytes, the SYNC_WRITE carries {n} per servo")
        params.append(i)
        params += d
    return encode(BROADCAST_ID, Inst.SYNC_WRITE, bytes(params))


def status(servo_id: int, error: int = 0, params: bytes = b"") -> bytes:
    """A servo's reply (the virtual bus uses it)."""
    return encode(servo_id, STATUS, bytes((error & 0xFF,)) + bytes(params))


def _u16(v: int, what: str) -> bytes:
    if not 0 <= int(v) <= 0xFFFF:
        raise PacketError("malformed", f"{what} must be 0..65535, got {v}")
    return int(v).to_bytes(2, "little")


def _parse(pkt: bytes) -> Packet:
    servo_id = pkt[4]
    body = unstuff(pkt[7:-2])
    if not body:
        raise PacketError("malformed", "no instruction byte")
    inst, params = body[0], body[1:]
    if inst == STATUS:
        if not params:
            raise PacketError("malformed", "status packet without an error byte")
        return Packet(servo_id, inst, params[1:], params[0], pkt)
    return Packet(servo_id, inst, params, None, pkt)


def decode(packet: bytes) -> Packet:
    """Decode exactly one packet; raises :class:`PacketError`."""
    b = bytes(packet)
    if len(b) < 10 or b[:4] != HEADER:
        raise PacketError("malformed", f"not a packet: {b[:8].hex(' ')}")
    if b[4] == 0xFF or b[4] == 0xFD:
        raise PacketError("malformed", f"id 0x{b[4]:02x}")
    length = int.from_bytes(b[5:7], "little")
    if length < 3 or length > MAX_LENGTH:
        raise PacketError("length", f"LEN {length} out of 3..{MAX_LENGTH}")
    if len(b) != 7 + length:
        raise PacketError("length", f"LEN says {7 + length} bytes, got {len(b)}")
    want = crc16(b[:-2])
    got = int.from_bytes(b[-2:], "little")
    if want != got:
        raise PacketError("crc", f"CRC 0x{got:04x}, computed 0x{want:04x}")
    return _parse(b)


@dataclass
class DecoderStats(_StreamStats):
    crc_errors: int = 0

    @property
    def check_errors(self) -> int:
        return self.crc_errors


class PacketDecoder(StreamDecoder):
    """Streaming decoder: feed byte chunks, get whole packets whose CRC verified (parameters unstuffed).

    Bytes before a ``FF FF FD 00`` header are discarded; a candidate with a bad length, id, CRC or
    stuffing costs one byte and the header search restarts. :meth:`feed` never raises."""

    stats_class = DecoderStats

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        buf = self._buf
        out: list[Packet] = []
        while True:
            start = buf.find(HEADER)
            if start < 0:
                keep = 0  # keep a possible partial header at the end
                for k in (3, 2, 1):
                    if len(buf) >= k and bytes(buf[-k:]) == HEADER[:k]:
                        keep = k
                        break
                if len(buf) > keep:
                    self._drop(len(buf) - keep)
                return out
            if start:
                self._drop(start)
            if len(buf) < 7:
                return out
            length = int.from_bytes(buf[5:7], "little")
            if buf[4] in (0xFF, 0xFD) or length < 3 or length > MAX_LENGTH:
                self.stats.malformed += 1
                self._drop(1)
                continue
            total = 7 + length
            if len(buf) < total:
                return out
            pkt = bytes(buf[:total])
            if crc16(pkt[:-2]) != int.from_bytes(pkt[-2:], "little"):
                self.stats.crc_errors += 1
                self._drop(1)
                continue
            try:
                p = _parse(pkt)
            except PacketError:
                self.stats.malformed += 1
                self._drop(1)
                continue
            del buf[:total]
            self.stats.packets += 1
            out.append(p)


# ---- register values -------------------------------------------------------------------------------------
def to_bytes(value: int, n: int, signed: bool = False) -> bytes:
    try:
        return int(value).to_bytes(n, "little", signed=signed)
    except OverflowError as e:
        raise PacketError("malformed", f"{value} does not fit {n} {'signed' if signed else 'unsigned'} bytes") from e


def from_bytes(data: bytes, signed: bool = False) -> int:
    return int.from_bytes(bytes(data), "little", signed=signed)


def hardware_error_names(bits: int) -> list[str]:
    return [name for bit, name in HARDWARE_ERROR_NAMES.items() if bits & bit]


__all__ = ["HEADER", "BROADCAST_ID", "STATUS", "ALERT", "Inst", "Reg", "ErrorNumber", "HardwareError", "MODELS",
           "RESOLUTION", "PacketError", "Packet", "crc16", "stuff", "unstuff", "encode", "ping", "read", "write",
           "sync_read", "sync_write", "status", "decode", "PacketDecoder", "to_bytes", "from_bytes",
           "hardware_error_names"]
