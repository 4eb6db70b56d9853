"""kdp-edge serial protocol v1: message dataclasses, frame encoding and single-frame decoding.

The byte layout is specified in ``firmware_bridge/PROTOCOL.md``; the C twin is
``firmware_bridge/firmware/kdp_proto.c``. Summary::

    wire = COBS(raw) + b"\\x00"
    raw  = header(12) + payload + crc16_le(header + payload)
    header = <BBIIH: version, msg_type, seq (u32), timestamp_us (u32, wraps), payload_len

Every message carries the header fields ``seq`` and ``timestamp_us`` as keyword-only dataclass
fields. Float arrays are tuples of Python floats; they are rounded to float32 on the wire.
Use :class:`FrameDecoder` to decode a byte stream (arbitrary chunks, garbage, resynchronisation).
"""

from __future__ import annotations

import binascii
import enum
import math
import struct
from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from cobs import cobs

PROTOCOL_VERSION = 1
HEADER_SIZE = 12
CRC_SIZE = 2
MAX_STATE_DIM = 64
MAX_ACTION_DIM = 16
MAX_NAME_LEN = 32
MAX_TEXT_LEN = 64
MAX_PAYLOAD = 12 + 4 * MAX_STATE_DIM  # STATE with 64 floats = 268 bytes
MAX_RAW_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 282
MAX_ENCODED_FRAME = MAX_RAW_FRAME + MAX_RAW_FRAME // 254 + 1  # 284 (COBS worst case)
MAX_WIRE_FRAME = MAX_ENCODED_FRAME + 1  # 285 with the 0x00 delimiter
MIN_RAW_FRAME = HEADER_SIZE + CRC_SIZE

_HEADER = struct.Struct("<BBIIH")
_U32_MAX = 0xFFFFFFFF


class MsgType(enum.IntEnum):
    """Header ``msg_type`` values."""

    HELLO_REQ = 0x01
    HELLO = 0x02
    STATE = 0x03
    ACTION = 0x04
    HEARTBEAT = 0x05
    FAULT = 0x06
    ESTOP = 0x07
    STOP = 0x08
    RESET = 0x09


class StateFlags(enum.IntFlag):
    """Bits of ``State.flags`` (see PROTOCOL.md)."""

    WATCHDOG_TRIPPED = 1 << 0
    ESTOP = 1 << 1
    STOPPED = 1 << 2
    ACTIVE = 1 << 3
    SATURATED = 1 << 4
    FAULT = 1 << 5
    ACTION_REJECTED = 1 << 6
    SENSOR_INVALID = 1 << 7
    SUCCESS = 1 << 8


class FaultCode(enum.IntEnum):
    """Well-known FAULT / ESTOP codes; values >= 0x100 are vendor specific."""

    NONE = 0
    WATCHDOG = 1
    BAD_ACTION = 2
    SENSOR = 3
    OVERCURRENT = 4
    PROTOCOL = 5
    HOST = 6


class ResetCause(enum.IntEnum):
    """``ResetNotice.cause`` values."""

    UNKNOWN = 0
    POWER_ON = 1
    WATCHDOG = 2
    BROWN_OUT = 3
    SOFTWARE = 4
    EXTERNAL = 5


class ProtocolError(ValueError):
    """A frame could not be decoded. ``kind`` is one of ``cobs``, ``crc``, ``malformed``, ``version``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout)."""
    return binascii.crc_hqx(data, 0xFFFF)


def f32(x: float) -> float:
    """Round a Python float to the nearest float32 (what survives a round trip on the wire)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def fw_version_u32(major: int, minor: int, patch: int) -> int:
    """Pack a firmware version as ``major << 16 | minor << 8 | patch``."""
    return (major & 0xFFFF) << 16 | (minor & 0xFF) << 8 | (patch & 0xFF)


def fw_version_str(v: int) -> str:
    """Format a packed firmware version, e.g. ``0x010203 -> '1.2.3'``."""
    return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return values if type(values) is tuple else tuple(float(v) for v in values)


def _pack_floats(values: tuple[float, ...]) -> bytes:
    try:
        return struct.pack(f"<{len(values)}f", *values)
    except (OverflowError, struct.error) as e:
        raise ValueError(f"value not representable as float32: {e}") from None


def _utf8(text: str, limit: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > limit:
        raise ValueError(f"{what} is {len(raw)} bytes, at most {limit} allowed")
    return raw


def _check_uint(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{what}={value} does not fit in u{bits}")


@dataclass(frozen=True)
class Message:
    """Base of all messages. ``seq``/``timestamp_us`` are the frame header fields."""

    TYPE: ClassVar[MsgType]
    _: KW_ONLY
    seq: int = 0
    timestamp_us: int = 0

    def payload(self) -> bytes:  # pragma: no cover - overridden
        """Serialised payload (without header and CRC)."""
        raise NotImplementedError

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> Message:  # pragma: no cover
        """Parse a payload; raises ``ProtocolError('malformed', ...)``."""
        raise NotImplementedError


def _malformed(msg: str) -> ProtocolError:
    return ProtocolError("malformed", msg)


@dataclass(frozen=True)
class HelloReq(Message):
    """Host asks for the controller's capabilities; ``nonce`` is echoed in :class:`Hello`."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO_REQ
    nonce: int

    def payload(self) -> bytes:
        return struct.pack("<I", self.nonce)

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> HelloReq:
        if len(payload) != 4:
            raise _malformed(f"HELLO_REQ payload {len(payload)} != 4")
        return cls(struct.unpack("<I", payload)[0], seq=seq, timestamp_us=timestamp_us)


_HELLO_FIXED = struct.Struct("<IIIIIBBBBHH")  # 28 bytes


@dataclass(frozen=True)
class Hello(Message):
    """Controller capabilities. Limits are float32 in controller units; ``state_period_us`` in µs."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    nonce: int
    boot_id: int
    fw_version: int
    fw_signature: int
    state_period_us: int
    state_dim: int
    action_min: tuple[float, ...]
    action_max: tuple[float, ...]
    max_valid_for_ms: int = 1000
    fw_name: str = ""
    proto_version: int = PROTOCOL_VERSION
    capabilities: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "action_min", _floats(self.action_min))
        object.__setattr__(self, "action_max", _floats(self.action_max))

    @property
    def action_dim(self) -> int:
        """Number of action channels (``len(action_min)``)."""
        return len(self.action_min)

    @property
    def state_period_s(self) -> float:
        """Nominal STATE period in seconds."""
        return self.state_period_us * 1e-6

    def payload(self) -> bytes:
        a = self.action_dim
        if not 1 <= a <= MAX_ACTION_DIM or len(self.action_max) != a:
            raise ValueError(f"action_min/max must both have 1..{MAX_ACTION_DIM} entries")
        if not 1 <= self.state_dim <= MAX_STATE_DIM:
            raise ValueError(f"state_dim must be 1..{MAX_STATE_DIM}, got {self.state_dim}")
        name = _utf8(self.fw_name, MAX_NAME_LEN, "fw_name")
        try:
            fixed = _HELLO_FIXED.pack(
                self.nonce, self.boot_id, self.fw_version, self.fw_signature, self.state_period_us,
                self.proto_version, self.state_dim, a, len(name), self.max_valid_for_ms, self.capabilities,
            )
        except struct.error as e:
            raise ValueError(f"HELLO field out of range: {e}") from None
        return fixed + _pack_floats(self.action_min) + _pack_floats(self.action_max) + name

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> Hello:
        if len(payload) < _HELLO_FIXED.size:
            raise _malformed("HELLO payload too short")
        (nonce, boot_id, fw_version, fw_sig, period, proto, sdim, adim, name_len, max_valid,
         caps) = _HELLO_FIXED.unpack_from(payload)
        if not (1 <= sdim <= MAX_STATE_DIM and 1 <= adim <= MAX_ACTION_DIM and name_len <= MAX_NAME_LEN):
            raise _malformed(f"HELLO dims out of range (state {sdim}, action {adim}, name {name_len})")
        if len(payload) != _HELLO_FIXED.size + 8 * adim + name_len:
            raise _malformed("HELLO payload length does not match its dims")
        lo = struct.unpack_from(f"<{adim}f", payload, 28)
        hi = struct.unpack_from(f"<{adim}f", payload, 28 + 4 * adim)
        name = payload[28 + 8 * adim:].decode("utf-8", errors="replace")
        return cls(nonce, boot_id, fw_version, fw_sig, period, sdim, lo, hi, max_valid, name, proto, caps,
                   seq=seq, timestamp_us=timestamp_us)


_STATE_FIXED = struct.Struct("<IIHBB")  # 12 bytes


@dataclass(frozen=True)
class State(Message):
    """Controller state sample: float32 ``values`` (controller units), :class:`StateFlags` ``flags``."""

    TYPE: ClassVar[MsgType] = MsgType.STATE
    boot_id: int
    flags: int
    last_action_seq: int
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _floats(self.values))

    @property
    def state_dim(self) -> int:
        """Number of state values."""
        return len(self.values)

    @property
    def finite(self) -> bool:
        """False if any value is NaN or infinite: the host must not plan from such a state."""
        return all(math.isfinite(v) for v in self.values)

    def has(self, flag: StateFlags) -> bool:
        """True if ``flag`` is set."""
        return bool(self.flags & flag)

    def payload(self) -> bytes:
        if not 1 <= len(self.values) <= MAX_STATE_DIM:
            raise ValueError(f"state_dim must be 1..{MAX_STATE_DIM}, got {len(self.values)}")
        try:
            fixed = _STATE_FIXED.pack(self.boot_id, self.last_action_seq, self.flags, len(self.values), 0)
        except struct.error as e:
            raise ValueError(f"STATE field out of range: {e}") from None
        return fixed + _pack_floats(self.values)

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> State:
        if len(payload) < _STATE_FIXED.size + 4:
            raise _malformed("STATE payload too short")
        boot_id, last_action_seq, flags, dim, _ = _STATE_FIXED.unpack_from(payload)
        if not 1 <= dim <= MAX_STATE_DIM or len(payload) != _STATE_FIXED.size + 4 * dim:
            raise _malformed(f"STATE payload length {len(payload)} does not match state_dim {dim}")
        values = struct.unpack_from(f"<{dim}f", payload, _STATE_FIXED.size)
        return cls(boot_id, flags, last_action_seq, values, seq=seq, timestamp_us=timestamp_us)


_ACTION_FIXED = struct.Struct("<IHBB")  # 8 bytes


@dataclass(frozen=True)
class Action(Message):
    """Command for the controller, planned from STATE ``state_seq``, valid for ``valid_for_ms`` ms."""

    TYPE: ClassVar[MsgType] = MsgType.ACTION
    state_seq: int
    valid_for_ms: int
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _floats(self.values))

    @property
    def action_dim(self) -> int:
        """Number of action channels."""
        return len(self.values)

    def payload(self) -> bytes:
        if not 1 <= len(self.values) <= MAX_ACTION_DIM:
            raise ValueError(f"action_dim must be 1..{MAX_ACTION_DIM}, got {len(self.values)}")
        try:
            fixed = _ACTION_FIXED.pack(self.state_seq, self.valid_for_ms, len(self.values), 0)
        except struct.error as e:
            raise ValueError(f"ACTION field out of range: {e}") from None
        return fixed + _pack_floats(self.values)

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> Action:
        if len(payload) < _ACTION_FIXED.size + 4:
            raise _malformed("ACTION payload too short")
        state_seq, valid_for_ms, dim, _ = _ACTION_FIXED.unpack_from(payload)
        if not 1 <= dim <= MAX_ACTION_DIM or len(payload) != _ACTION_FIXED.size + 4 * dim:
            raise _malformed(f"ACTION payload length {len(payload)} does not match action_dim {dim}")
        values = struct.unpack_from(f"<{dim}f", payload, _ACTION_FIXED.size)
        return cls(state_seq, valid_for_ms, values, seq=seq, timestamp_us=timestamp_us)


_HEARTBEAT = struct.Struct("<IIB")


@dataclass(frozen=True)
class Heartbeat(Message):
    """Liveness / round-trip probe; a reply echoes the request's ``nonce`` with ``is_reply=True``."""

    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    boot_id: int
    nonce: int
    is_reply: bool = False

    def payload(self) -> bytes:
        try:
            return _HEARTBEAT.pack(self.boot_id, self.nonce, 1 if self.is_reply else 0)
        except struct.error as e:
            raise ValueError(f"HEARTBEAT field out of range: {e}") from None

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> Heartbeat:
        if len(payload) != _HEARTBEAT.size:
            raise _malformed(f"HEARTBEAT payload {len(payload)} != {_HEARTBEAT.size}")
        boot_id, nonce, reply = _HEARTBEAT.unpack(payload)
        if reply > 1:
            raise _malformed("HEARTBEAT is_reply must be 0 or 1")
        return cls(boot_id, nonce, bool(reply), seq=seq, timestamp_us=timestamp_us)


@dataclass(frozen=True)
class Fault(Message):
    """Informational fault report (``code`` from :class:`FaultCode`, UTF-8 ``text`` <= 64 bytes)."""

    TYPE: ClassVar[MsgType] = MsgType.FAULT
    code: int
    text: str = ""

    def payload(self) -> bytes:
        text = _utf8(self.text, MAX_TEXT_LEN, "text")
        _check_uint(self.code, 16, "code")
        return struct.pack("<HB", self.code, len(text)) + text

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> Fault:
        if len(payload) < 3:
            raise _malformed("FAULT/ESTOP payload too short")
        code, n = struct.unpack_from("<HB", payload)
        if n > MAX_TEXT_LEN or len(payload) != 3 + n:
            raise _malformed("FAULT/ESTOP text length mismatch")
        return cls(code, payload[3:].decode("utf-8", errors="replace"), seq=seq, timestamp_us=timestamp_us)


@dataclass(frozen=True)
class Estop(Fault):
    """Emergency stop: from the host it latches the controller's e-stop until reboot."""

    TYPE: ClassVar[MsgType] = MsgType.ESTOP


@dataclass(frozen=True)
class Stop(Message):
    """Host → controller: zero outputs now (clean shutdown); ``reason`` 0 = normal."""

    TYPE: ClassVar[MsgType] = MsgType.STOP
    reason: int = 0

    def payload(self) -> bytes:
        _check_uint(self.reason, 16, "reason")
        return struct.pack("<H", self.reason)

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> Stop:
        if len(payload) != 2:
            raise _malformed(f"STOP payload {len(payload)} != 2")
        return cls(struct.unpack("<H", payload)[0], seq=seq, timestamp_us=timestamp_us)


@dataclass(frozen=True)
class ResetNotice(Message):
    """Controller → host, once after boot: new ``boot_id`` and :class:`ResetCause`."""

    TYPE: ClassVar[MsgType] = MsgType.RESET
    boot_id: int
    cause: int = ResetCause.UNKNOWN

    def payload(self) -> bytes:
        try:
            return struct.pack("<IB", self.boot_id, self.cause)
        except struct.error as e:
            raise ValueError(f"RESET field out of range: {e}") from None

    @classmethod
    def from_payload(cls, payload: bytes, seq: int, timestamp_us: int) -> ResetNotice:
        if len(payload) != 5:
            raise _malformed(f"RESET payload {len(payload)} != 5")
        boot_id, cause = struct.unpack("<IB", payload)
        return cls(boot_id, cause, seq=seq, timestamp_us=timestamp_us)


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (HelloReq, Hello, State, Action, Heartbeat, Fault, Estop, Stop, ResetNotice)
}


def encode_raw(msg: Message) -> bytes:
    """Header + payload + CRC of ``msg`` (before COBS). Raises ``ValueError`` on out-of-range fields."""
    payload = msg.payload()
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if not (0 <= msg.seq <= _U32_MAX and 0 <= msg.timestamp_us <= _U32_MAX):
        raise ValueError("seq and timestamp_us must be u32 (wrap them with % 2**32)")
    body = _HEADER.pack(PROTOCOL_VERSION, msg.TYPE, msg.seq, msg.timestamp_us, len(payload)) + payload
    return body + struct.pack("<H", crc16(body))


def encode(msg: Message) -> bytes:
    """Wire bytes for ``msg``: ``COBS(header + payload + crc) + b'\\x00'``."""
    return cobs.encode(encode_raw(msg)) + b"\x00"


def decode_raw(raw: bytes) -> Message:
    """Decode one COBS-decoded frame. Raises :class:`ProtocolError` (never anything else)."""
    n = len(raw)
    if n < MIN_RAW_FRAME:
        raise _malformed(f"frame of {n} bytes is shorter than {MIN_RAW_FRAME}")
    if n > MAX_RAW_FRAME:
        raise ProtocolError("oversize", f"frame of {n} bytes exceeds {MAX_RAW_FRAME}")
    if crc16(raw[:-2]) != raw[-2] | raw[-1] << 8:
        raise ProtocolError("crc", "CRC mismatch")
    version, mtype, seq, ts, plen = _HEADER.unpack_from(raw)
    if plen != n - MIN_RAW_FRAME:
        raise _malformed(f"payload_len {plen} but frame carries {n - MIN_RAW_FRAME}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("version", f"protocol version {version}, expected {PROTOCOL_VERSION}")
    cls = MESSAGE_TYPES.get(mtype)
    if cls is None:
        raise _malformed(f"unknown message type 0x{mtype:02x}")
    return cls.from_payload(raw[HEADER_SIZE:-2], seq, ts)


def decode(wire: bytes) -> Message:
    """Decode exactly one wire frame (with or without the trailing 0x00). Raises :class:`ProtocolError`."""
    if wire.endswith(b"\x00"):
        wire = wire[:-1]
    if len(wire) > MAX_ENCODED_FRAME:
        raise ProtocolError("oversize", f"encoded frame of {len(wire)} bytes exceeds {MAX_ENCODED_FRAME}")
    try:
        raw = cobs.decode(wire)
    except cobs.DecodeError as e:
        raise ProtocolError("cobs", str(e)) from None
    return decode_raw(raw)


@dataclass
class DecoderStats:
    """Counters of a :class:`FrameDecoder`.

    ``malformed`` counts frames that are structurally wrong (bad COBS — also counted in ``cobs_errors`` —,
    too short, payload_len mismatch, unknown type, dims out of range). ``resyncs`` counts how often the
    decoder lost the frame stream (rejected or dropped bytes) and found it again: the number of good frames
    that directly follow one or more rejected segments.
    """

    bytes_in: int = 0
    frames_ok: int = 0
    crc_errors: int = 0
    malformed: int = 0
    cobs_errors: int = 0
    version_mismatch: int = 0
    oversize: int = 0
    resyncs: int = 0
    bytes_discarded: int = 0

    @property
    def rejected(self) -> int:
        """Frames (or oversize runs) dropped for any reason."""
        return self.crc_errors + self.malformed + self.version_mismatch + self.oversize

    def as_dict(self) -> dict[str, int]:
        """Plain dict copy of the counters."""
        return {k: int(v) for k, v in self.__dict__.items()}


class FrameDecoder:
    """Streaming decoder: feed arbitrary byte chunks, get decoded messages back.

    Frames are split at 0x00; each segment is COBS-decoded, CRC-checked and parsed. Bad segments are
    dropped and counted in :attr:`stats`; decoding resumes at the next delimiter. A run of more than
    ``MAX_ENCODED_FRAME`` bytes without a delimiter is dropped (``oversize``) and input is discarded up
    to the next 0x00. :meth:`feed` never raises on any input and only returns frames whose CRC verified.
    """

    def __init__(self, max_encoded: int = MAX_ENCODED_FRAME) -> None:
        self.max_encoded = max_encoded
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._discarding = False
        self._lost_sync = False

    def reset(self) -> None:
        """Drop any partial frame (e.g. after a reconnect). Counters are kept."""
        self._buf.clear()
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame currently held."""
        return len(self._buf)

    def _oversize(self, nbytes: int) -> None:
        self.stats.oversize += 1
        self.stats.bytes_discarded += nbytes
        self._lost_sync = True

    def _reject(self, seg_len: int) -> None:
        self.stats.bytes_discarded += seg_len + 1
        self._lost_sync = True

    def _decode_segment(self, seg: bytes) -> Message | None:
        st = self.stats
        if len(seg) > self.max_encoded:
            self._oversize(len(seg) + 1)
            return None
        try:
            msg = decode_raw(cobs.decode(seg))
        except cobs.DecodeError:
            st.malformed += 1
            st.cobs_errors += 1
            self._reject(len(seg))
            return None
        except ProtocolError as e:
            if e.kind == "crc":
                st.crc_errors += 1
            elif e.kind == "version":
                st.version_mismatch += 1
            elif e.kind == "oversize":
                st.oversize += 1
            else:
                st.malformed += 1
            self._reject(len(seg))
            return None
        except Exception:  # defensive: a decoder must never take the host down
            st.malformed += 1
            self._reject(len(seg))
            return None
        st.frames_ok += 1
        if self._lost_sync:
            st.resyncs += 1
            self._lost_sync = False
        return msg

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Consume ``data`` and return the messages completed by it, in stream order."""
        data = bytes(data)
        self.stats.bytes_in += len(data)
        out: list[Message] = []
        if b"\x00" not in data:
            if self._discarding:
                self.stats.bytes_discarded += len(data)
            else:
                self._buf += data
                if len(self._buf) > self.max_encoded:
                    self._oversize(len(self._buf))
                    self._buf.clear()
                    self._discarding = True
            return out
        parts = data.split(b"\x00")
        if self._buf:
            parts[0] = bytes(self._buf) + parts[0]
            self._buf.clear()
        tail = parts.pop()
        for seg in parts:
            if self._discarding:
                self._discarding = False
                self.stats.bytes_discarded += len(seg) + 1
                continue
            if seg:
                msg = self._decode_segment(seg)
                if msg is not None:
                    out.append(msg)
        if len(tail) > self.max_encoded:
            self._oversize(len(tail))
            self._discarding = True
        elif tail:
            self._buf += tail
        return out


__all__ = [
    "PROTOCOL_VERSION", "HEADER_SIZE", "CRC_SIZE", "MAX_STATE_DIM", "MAX_ACTION_DIM", "MAX_PAYLOAD",
    "MAX_RAW_FRAME", "MAX_ENCODED_FRAME", "MAX_WIRE_FRAME", "MsgType", "StateFlags", "FaultCode",
    "ResetCause", "ProtocolError", "Message", "HelloReq", "Hello", "State", "Action", "Heartbeat",
    "Fault", "Estop", "Stop", "ResetNotice", "MESSAGE_TYPES", "crc16", "f32", "fw_version_u32",
    "fw_version_str", "encode", "encode_raw", "decode", "decode_raw", "FrameDecoder", "DecoderStats",
]
