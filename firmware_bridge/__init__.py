"""Serial bridge between the kdp-edge planner (host) and a motor controller.

* :mod:`firmware_bridge.protocol` - frames, messages, streaming decoder (spec: ``PROTOCOL.md``)
* :mod:`firmware_bridge.link` - :class:`SerialLink`, the host endpoint
* :mod:`firmware_bridge.virtual_robot` - a virtual controller on a pty around any plant
* :mod:`firmware_bridge.cbuild` - build/run the C reference firmware (``firmware/``)
"""

from .errors import (
    CapabilitiesChangedError,
    HelloTimeoutError,
    LinkDisconnectedError,
    LinkError,
    NoResponseError,
    NoValidFramesError,
    PortBusyError,
    PortNotFoundError,
    PortPermissionError,
    ProtocolVersionError,
)
from .link import DEFAULT_BAUD, SerialLink, open_link
from .plants import IntegratorPlant, Plant
from .protocol import PROTOCOL_VERSION, FrameDecoder, Hello, State, StateFlags
from .virtual_robot import VirtualRobot, start_virtual_robot

__all__ = [
    "CapabilitiesChangedError", "HelloTimeoutError", "LinkDisconnectedError", "LinkError", "NoResponseError",
    "NoValidFramesError", "PortBusyError", "PortNotFoundError", "PortPermissionError", "ProtocolVersionError",
    "DEFAULT_BAUD", "SerialLink", "open_link", "IntegratorPlant", "Plant", "PROTOCOL_VERSION", "FrameDecoder",
    "Hello", "State", "StateFlags", "VirtualRobot", "start_virtual_robot",
]
