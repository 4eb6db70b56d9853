"""Keep third-party noise out of ``kdp-edge export``'s normal output (issue #23 item 5).

The exporters load torch.export, onnxruntime's quantiser, litert-torch (which pulls torchao and absl)
and ai-edge-quantizer. They print, on their own, library load failures (torchao ``_C_mxfp8``), absl /
TensorFlow Lite C++ log lines, "torchvision is not installed", FutureWarnings and UserWarnings: harmless,
but they read like a failed export. :func:`third_party_output_to` sends everything written to the
process's stdout and stderr file descriptors (C++ and Python alike) to a log file while the export runs;
our own progress lines (the ``log`` callable it yields) and our own Python warnings still reach the
terminal, and errors are raised after the descriptors are restored, so they print normally.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

# our packages: their warnings are ours to show (the rest is third-party noise)
_OURS = tuple(str(Path(__file__).resolve().parents[1] / p) for p in ("kdp_edge", "export", "calibration",
                                                                       "firmware_bridge"))


@contextlib.contextmanager
def third_party_output_to(log_path: Path, log: Callable[[str], None], verbose: bool = False
                          ) -> Iterator[Callable[[str], None]]:
    """Within the block, fds 1 and 2 write to ``log_path``; yields the ``log`` to use for our own lines
    (they go to the terminal and, for context, into the file too). ``verbose``: capture nothing."""
    if verbose:
        yield log
        return
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    fh = open(log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")

    def ours(message: str) -> None:
        fh.write(f"[kdp-edge] {message}\n")
        fh.flush()
        terminal.write(f"{message}\n")
        terminal.flush()

    def show(message, category, filename, lineno, file=None, line=None):
        text = warnings.formatwarning(message, category, filename, lineno, line)
        if str(filename).startswith(_OURS):
            terminal.write(text)  # our own warnings stay visible
            terminal.flush()
        fh.write(text)
        fh.flush()

    old_show = warnings.showwarning
    try:
        for fd in (1, 2):
            os.dup2(fh.fileno(), fd)
        warnings.showwarning = show
        yield ours
    finally:
        warnings.showwarning = old_show
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, orig in saved.items():
            os.dup2(orig, fd)
            os.close(orig)
        terminal.close()
        fh.close()
