"""Where a result came from: the command, the commit (and whether the tree was dirty), the machine, the date.

Every benchmark result file carries :func:`provenance` under the key ``"provenance"`` and its
markdown table starts with :func:`provenance_line`, so a number can be traced to the exact code and
command that produced it and regenerated from a clean checkout. Standard library only (the device
runtime's ``kdp-edge bench`` uses it too).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def command_line(argv: list[str] | None = None) -> str:
    """The invocation as a shell line: ``python bench/x.py ...`` for scripts, ``kdp-edge ...`` for the CLI."""
    argv = list(sys.argv if argv is None else argv)
    prog = argv[0] if argv else "?"
    name = Path(prog).name
    if name in ("kdp-edge", "__main__.py") or prog.endswith("kdp_edge/cli.py"):
        head = "kdp-edge"
    else:
        try:
            head = "python " + str(Path(prog).resolve().relative_to(ROOT))
        except ValueError:
            head = "python " + prog
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


def provenance(argv: list[str] | None = None, command: str | None = None) -> dict:
    """JSON-able facts about this run: command, commit, dirty tree, machine, date (UTC)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": command or command_line(argv),
        "commit": commit or "unknown (not a git checkout)",
        "dirty": bool(status) if status is not None else None,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"system": platform.system(), "arch": platform.machine(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "host": platform.node()},
    }


def provenance_line(p: dict) -> str:
    """One markdown line: command, commit (+ dirty), machine, date."""
    dirty = " (dirty tree)" if p.get("dirty") else ""
    m = p.get("machine", {})
    return (f"Command: `{p['command']}`; commit {str(p['commit'])[:12]}{dirty}; "
            f"{m.get('arch', '?')} {m.get('cpus', '?')} CPUs, python {m.get('python', '?')}; {p['date']}")


__all__ = ["command_line", "provenance", "provenance_line"]
