"""What both servo packet decoders share (:mod:`.servo_feetech`, :mod:`.servo_dynamixel`): the receive
buffer, the counters, and dropping bytes while resynchronising. Each family's decoder implements
``feed`` (its header, length and check) on top."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DecoderStats:
    packets: int = 0
    malformed: int = 0
    resyncs: int = 0
    bytes_discarded: int = 0

    @property
    def check_errors(self) -> int:
        """Packets refused by the family's checksum or CRC (each family names its own counter)."""
        return 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class StreamDecoder:
    """Byte buffer of a streaming decoder; subclasses set ``stats_class`` and implement ``feed``."""

    stats_class = DecoderStats

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stats = self.stats_class()

    def reset(self) -> None:
        self._buf.clear()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _drop(self, n: int, resync: bool = True) -> None:
        """Discard the first ``n`` buffered bytes (counted as a resync unless ``resync`` is False)."""
        del self._buf[:n]
        self.stats.bytes_discarded += n
        self.stats.resyncs += int(resync)
