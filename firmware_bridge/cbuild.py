"""Build and run the C reference firmware's host programs (``firmware/Makefile``).

``build_firmware()`` runs ``make`` (gcc, C99, -Wall -Wextra -Werror) into a build directory;
:class:`CVirtualController` starts ``virtual_controller`` and exposes the pty it serves.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shutil
import signal
import subprocess
import threading
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

    ``commands=True`` starts it with ``--commands`` (fault injection, see virtual_controller.c):
    :meth:`command` sends one (``"reboot"``, ``"reopen 500"``, ``"garbage 256"``, ``"bitflip 5"``,
    ``"nan 5"``, ``"range 5"``, ``"stall 300"``) and returns its ``OK ...`` answer once it took effect;
    :meth:`live_stats` asks for the counters so far; :attr:`events` collects the ``EVENT ...`` lines
    (recoveries, watchdog trips) as parsed dicts. Give ``--link PATH`` for ``reopen`` (the port to use
    is then PATH, which follows the new pty).
    """

    def __init__(self, binary: str | os.PathLike[str], *args: str, start_timeout: float = 5.0,
                 commands: bool = False) -> None:
        self.commands = commands
        self.events: list[dict] = []
        self._replies: queue.Queue[str] = queue.Queue()
        self._reader: threading.Thread | None = None
        argv = [str(binary), *args] + (["--commands"] if commands else [])
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.PIPE if commands else subprocess.DEVNULL,
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
        if "--link" in args:
            self.port = str(args[list(args).index("--link") + 1])
        if commands:
            self._reader = threading.Thread(target=self._read_stdout, name="c-controller-stdout", daemon=True)
            self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("EVENT "):
                head, *kv = line.split()[1:]
                ev: dict = {"event": head, "t": time.monotonic()}
                for item in kv:
                    k, _, v = item.partition("=")
                    ev[k] = int(v) if v.lstrip("-").isdigit() else v
                self.events.append(ev)
            elif line:
                self._replies.put(line)

    def command(self, line: str, timeout: float = 10.0) -> str:
        """Send one fault-injection command; returns its ``OK ...`` line (RuntimeError on ``ERR`` / no answer)."""
        if not self.commands or self.proc.stdin is None:
            raise RuntimeError("start CVirtualController(..., commands=True) to send commands")
        try:
            self.proc.stdin.write(line.strip() + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise RuntimeError(f"virtual_controller is gone (exit {self.proc.poll()}): cannot send {line!r}") from e
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty as e:
            raise RuntimeError(f"virtual_controller did not answer {line!r} within {timeout} s") from e
        if not (reply.startswith("OK") or reply.startswith("STATS")):
            raise RuntimeError(f"virtual_controller refused {line!r}: {reply}")
        return reply

    def live_stats(self, timeout: float = 10.0) -> dict[str, int]:
        """The controller's counters so far (same keys as :meth:`stats`)."""
        return _parse_stats(self.command("stats", timeout))

    def close(self) -> str:
        """Stop the process (SIGTERM) and return its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            if self._reader is not None:  # stdout belongs to the reader thread
                self.proc.wait(timeout=5)
                self._reader.join(timeout=5)
                err = self.proc.stderr.read() if self.proc.stderr else ""
                if self.proc.stdin:
                    with contextlib.suppress(BrokenPipeError, OSError):
                        self.proc.stdin.close()
            else:
                _, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            err = self.proc.stderr.read() if self.proc.stderr else ""
        for ln in (err or "").splitlines():
            if ln.startswith("stats "):
                self.stats_line = ln
        return err or ""

    def stats(self) -> dict[str, int]:
        """Parse the ``stats k=v ...`` line printed at exit (call after :meth:`close`)."""
        return _parse_stats(self.stats_line)

    def __enter__(self) -> CVirtualController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_stats(line: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in line.split()[1:]:
        k, _, v = item.partition("=")
        out[k] = int(v)
    return out
