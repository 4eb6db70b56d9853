"""Progress reporting for long work: a live line on a terminal, periodic lines in logs."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "train") as p: p.update(n, loss=0.1)``.

    On a TTY the line is redrawn in place; otherwise a line is printed at most every
    ``log_interval`` seconds (and at the end), so CI logs stay short.
    """

    def __init__(self, total: int, label: str, stream=None, log_interval: float = 10.0, enabled: bool = True):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval = log_interval
        self.enabled = enabled
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0
        self.fields: dict[str, object] = {}

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **fields) -> None:
        self.done += n
        self.fields.update(fields)
        now = time.perf_counter()
        if self.enabled and (now - self._last >= (0.2 if self.tty else self.log_interval) or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in self.fields.items())
        line = (f"{self.label}: {self.done}/{self.total} ({pct:5.1f}%) {_fmt(rate)}/s "
                f"elapsed {elapsed:6.1f}s eta {eta:6.1f}s {extra}")
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
