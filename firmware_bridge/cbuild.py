"""Build and run the C reference firmware's host programs (``firmware/Makefile``).

``build_firmware()`` runs ``make`` (gcc, C99, -Wall -Wextra -Werror) into a build directory;
:class:`CVirtualController` starts ``virtual_controller`` and exposes the pty it serves.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"


def toolchain_missing() -> str | None:
    """Why the C firmware cannot be built here (``None`` if gcc and make are available)."""
    missing = [tool for tool in ("gcc", "make") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (Debian: apt-get install build-essential)"
    return None


def build_firmware(build_dir: str | os.PathLike[str] | None = None, targets: tuple[str, ...] = ("all",)) -> Path:
    """Run ``make`` for ``targets`` with ``BUILD=build_dir``; returns the build directory.

    Raises RuntimeError with the compiler output when the build fails.
    """
    reason = toolchain_missing()
    if reason:
        raise RuntimeError(f"cannot build the C firmware: {reason}")
    out = Path(build_dir).resolve() if build_dir is not None else FIRMWARE_DIR / "build"
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["make", "-C", str(FIRMWARE_DIR), f"BUILD={out}", *targets],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"make {' '.join(targets)} failed:\n{proc.stdout}\n{proc.stderr}")
    return out


class CVirtualController:
    """Runs ``build/virtual_controller`` as a subprocess; ``.port`` is the pty it printed.

    ``args`` are passed through (``--rate 100 --latency-ms 5 ...``). Use as a context manager or
    call :meth:`close`, which stops it with SIGTERM and keeps its final stats line in ``.stats_line``.
    """

    def __init__(self, binary: str | os.PathLike[str], *args: str, start_timeout: float = 5.0) -> None:
        self.proc = subprocess.Popen(
            [str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stats_line = ""
        deadline = time.monotonic() + start_timeout
        line = ""
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                line = self.proc.stdout.readline().strip()
                break
            if self.proc.poll() is not None:
                break
        if not line.startswith("PTY "):
            err = self.close()
            raise RuntimeError(f"virtual_controller did not print its pty (got {line!r}); stderr: {err}")
        self.port = line.split(" ", 1)[1]

    def close(self) -> str:
        """Stop the process (SIGTERM) and return its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        for ln in (err or "").splitlines():
            if ln.startswith("stats "):
                self.stats_line = ln
        return err or ""

    def stats(self) -> dict[str, int]:
        """Parse the ``stats k=v ...`` line printed at exit (call after :meth:`close`)."""
        out: dict[str, int] = {}
        for item in self.stats_line.split()[1:]:
            k, _, v = item.partition("=")
            out[k] = int(v)
        return out

    def __enter__(self) -> CVirtualController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
