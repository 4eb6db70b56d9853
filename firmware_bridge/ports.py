"""Serial-port diagnostics: list ports and turn ``open()`` failures into actionable errors."""

from __future__ import annotations

import errno
import getpass
import os

try:
    import grp
except ImportError:  # pragma: no cover - not POSIX
    grp = None  # type: ignore[assignment]

from serial.tools import list_ports

from .errors import LinkError, PortBusyError, PortNotFoundError, PortPermissionError

# Group that owns /dev/ttyUSB*, /dev/ttyACM* on common distributions.
DISTRO_SERIAL_GROUPS = {"Debian / Ubuntu / Raspberry Pi OS / Jetson L4T": "dialout", "Arch / Manjaro": "uucp"}


def available_ports() -> list[str]:
    """Human-readable list of the serial ports the OS knows (``device - description [hwid]``)."""
    out = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        desc = p.description if p.description and p.description != "n/a" else ""
        out.append(f"{p.device}" + (f" - {desc}" if desc else "") + (f" [{p.hwid}]" if p.hwid and p.hwid != "n/a" else ""))
    return out


def _ports_hint() -> str:
    ports = available_ports()
    if not ports:
        return "no serial ports found: is the controller plugged in (and does `dmesg | tail` show it)?"
    return "available ports: " + "; ".join(ports)


def device_group(path: str) -> str | None:
    """Name of the group owning device ``path`` (``None`` if it cannot be read)."""
    try:
        gid = os.stat(path).st_gid
    except OSError:
        return None
    if grp is None:  # pragma: no cover
        return None
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def permission_fix(path: str) -> str:
    """The command line that gives the current user access to ``path``."""
    group = device_group(path)
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no login name in some containers
        user = "$USER"
    if group is None:
        group = "dialout"
        where = "(dialout on Debian / Raspberry Pi OS, uucp on Arch)"
    else:
        where = f"({path} belongs to group '{group}'; the usual group is dialout on Debian / Raspberry Pi OS, uucp on Arch)"
    return f"sudo usermod -aG {group} {user}, then log out and back in {where}"


def describe_open_error(port: str, exc: BaseException, baud: int) -> LinkError:
    """Map an exception from ``serial.serial_for_url`` to a :class:`LinkError` with a fix."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text or "could not find port" in text.lower():
        return PortNotFoundError(f"serial port {port} not found ({text})", _ports_hint())
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return PortPermissionError(f"permission denied opening {port}", permission_fix(port))
    if code == errno.EBUSY or "busy" in text.lower() or "exclusively lock" in text.lower():
        return PortBusyError(
            f"serial port {port} is busy ({text})",
            f"another process has it open: `fuser -v {port}`; stop it (a second kdp-edge, ModemManager, "
            "a serial console such as screen/minicom, or the Raspberry Pi login console on the UART)",
        )
    return LinkError(f"could not open {port} at {baud} baud: {text}", _ports_hint())
