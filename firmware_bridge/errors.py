"""Exceptions raised by the host link. Each message says what went wrong *and* how to fix it."""

from __future__ import annotations


class LinkError(RuntimeError):
    """Base class of serial-link errors. ``fix`` holds the suggested remedy (also in ``str(err)``)."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix


class PortNotFoundError(LinkError):
    """The serial device does not exist (unplugged, wrong name)."""


class PortPermissionError(LinkError):
    """The serial device exists but the user may not open it (not in the device's group)."""


class PortBusyError(LinkError):
    """Another process holds the port (a second kdp-edge, ModemManager, a serial console...)."""


class NoResponseError(LinkError):
    """The port opened but not a single byte arrived."""


class NoValidFramesError(LinkError):
    """Bytes arrive but none forms a valid frame: usually a baud-rate mismatch."""


class ProtocolVersionError(LinkError):
    """Valid frames arrive but with another protocol version."""


class HelloTimeoutError(LinkError):
    """Frames arrive but the controller never answered HELLO_REQ (host → controller direction broken)."""


class LinkDisconnectedError(LinkError):
    """The port went away and could not be reopened within the reconnect timeout."""


class CapabilitiesChangedError(LinkError):
    """After a reconnect or controller reboot the controller reports different dimensions."""
