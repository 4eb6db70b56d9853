"""Wrap-around arithmetic for the protocol's u32 sequence numbers and u32 microsecond clocks.

Sequence numbers use serial-number arithmetic (RFC 1982): ``a`` is newer than ``b`` iff
``(a - b) mod 2**32`` lies in ``[1, 2**31)``.
"""

from __future__ import annotations

U32_MOD = 1 << 32
_HALF = 1 << 31


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two u32 sequence numbers, in ``[-2**31, 2**31)``."""
    d = (a - b) % U32_MOD
    return d - U32_MOD if d >= _HALF else d


def seq_newer(a: int, b: int) -> bool:
    """True iff sequence number ``a`` is strictly newer than ``b`` (wrap-aware)."""
    return 0 < (a - b) % U32_MOD < _HALF


def us_diff(later_us: int, earlier_us: int) -> int:
    """Elapsed microseconds between two wrapping u32 timestamps (assumes < 2**31 µs apart)."""
    return seq_diff(later_us, earlier_us)


class TimestampUnwrapper:
    """Turns a wrapping u32 µs clock into a monotonically growing int (µs).

    Feed timestamps in arrival order; jumps backwards of less than 2**31 µs are returned as-is
    (i.e. slightly smaller values), so an out-of-order frame does not fake a wrap.
    """

    def __init__(self) -> None:
        self._last: int | None = None
        self._total = 0

    def reset(self) -> None:
        """Forget history (call after a controller reboot)."""
        self._last = None
        self._total = 0

    def unwrap(self, ts_us: int) -> int:
        """Return the unwrapped value of ``ts_us`` in µs."""
        if self._last is None:
            self._last = ts_us
            self._total = ts_us
            return ts_us
        d = us_diff(ts_us, self._last)
        if d > 0:
            self._total += d
            self._last = ts_us
            return self._total
        return self._total + d
