"""Our servo code against the manufacturers' Python SDKs (#26), and a stop signal on the virtual bus.

1. Byte equality. The SDKs' PacketHandlers write to a stand-in PortHandler (:class:`WirePort`: it keeps
   what is written and plays back status packets we built), so every packet type we use is compared
   byte for byte with our builders for the same arguments: PING, READ, WRITE, SYNC_READ, SYNC_WRITE of
   both families, the Feetech checksum and the Dynamixel CRC-16 (random packets), Dynamixel byte
   stuffing (against the SDK's own ``addStuffing``), Feetech sign-magnitude and SCS big-endian words.
   The other direction too: the SDKs parse our status packets (the values, the error byte, and a bad
   checksum / CRC is refused).
2. The SDKs as clients of the virtual bus (:mod:`firmware_bridge.servo_sim`) on its pseudo-terminal, the
   way they open a USB adapter: ping, read present position, write torque and goal, group sync write and
   group sync read; the answers are what a real bus gives (model numbers, positions moving to the
   goals, checksums / CRCs the SDK accepts, error byte 0, error bits when a servo faults).
3. ``kdp-edge run`` on the virtual bus in a subprocess, stopped by SIGINT / SIGTERM with
   ``--on-stop torque-off``: exit 130 / 143, torque off on every servo, the summary says so.

The SDKs are the ``servo-sdk`` extra (pip install -e ".[servo-sdk]"; scripts/setup.sh installs it); the
tests that need them skip without it, naming the extra. No sleeps to synchronise: polls with deadlines.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import pytest
from conftest import SIGINT_DEFAULT, kdp_cmd

from firmware_bridge import servo_dynamixel as dxl
from firmware_bridge import servo_feetech as ft
from firmware_bridge.servo_sim import ServoBusSim

EXTRA = "install the servo-sdk extra: pip install -e '.[servo-sdk]' (scripts/setup.sh does)"


@pytest.fixture
def scs():
    """feetech-servo-sdk with STS byte order (its PacketHandler sets a module-wide end flag: reset after)."""
    mod = pytest.importorskip("scservo_sdk", reason=f"feetech-servo-sdk is not installed: {EXTRA}")
    mod.SCS_SETEND(0)
    yield mod
    mod.SCS_SETEND(0)


@pytest.fixture
def dx():
    return pytest.importorskip("dynamixel_sdk", reason=f"dynamixel-sdk is not installed: {EXTRA}")


class WirePort:
    """What a PacketHandler uses of a PortHandler: writes are kept (one entry per packet), reads play back
    ``replies``; once they are used up the reply 'times out' at once."""

    def __init__(self, replies: bytes = b"") -> None:
        self.is_using = False
        self.written: list[bytes] = []
        self.rx = bytearray(replies)

    def clearPort(self):  # noqa: N802  (the SDKs' method names)
        pass

    def writePort(self, packet):  # noqa: N802
        self.written.append(bytes(packet))
        return len(packet)

    def readPort(self, n):  # noqa: N802
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def setPacketTimeout(self, _n):  # noqa: N802
        pass

    def setPacketTimeoutMillis(self, _ms):  # noqa: N802
        pass

    def isPacketTimeout(self):  # noqa: N802
        return not self.rx

    def getBaudRate(self):  # noqa: N802
        return 1_000_000


def poll(cond, timeout=30.0, what="condition"):
    """``cond()`` until it is true (returned); fails after a generous deadline."""
    t_end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < t_end, f"{what} not reached within {timeout} s"
        time.sleep(0.01)


def rand_bytes(rng: random.Random, n: int) -> bytes:
    """Random bytes rich in FF / FD / 00 (the header and stuffing bytes)."""
    return bytes(rng.choice((0xFF, 0xFD, 0x00, rng.randrange(256))) for _ in range(n))


# ---------------------------------------------------------------------------------------------- Feetech
def test_feetech_ping_matches_sdk(scs):
    ph = scs.PacketHandler(0)
    for i in (0, 1, 17, 0xFD):
        # the SDK's ping is PING then READ of the model number (register 3, 2 bytes)
        port = WirePort(ft.status(i) + ft.status(i, 0, ft.to_bytes(ft.MODELS["sts3215"], 2)))
        assert ph.ping(port, i) == (777, scs.COMM_SUCCESS, 0)
        assert port.written == [ft.ping(i), ft.read(i, ft.Reg.MODEL_NUMBER, 2)]
    port = WirePort()
    assert ph.ping(port, 5)[1] == scs.COMM_RX_TIMEOUT and port.written == [ft.ping(5)]


def test_feetech_read_write_match_sdk(scs):
    ph = scs.PacketHandler(0)
    for i, addr, value in ((1, ft.Reg.PRESENT_POSITION, 2048), (6, ft.Reg.PRESENT_POSITION, 4095),
                           (3, ft.Reg.PRESENT_SPEED, ft.encode_sign_magnitude(-300, 15))):
        port = WirePort(ft.status(i, 0, ft.to_bytes(value, 2)))
        assert ph.read2ByteTxRx(port, i, addr) == (value, scs.COMM_SUCCESS, 0)
        assert port.written == [ft.read(i, addr, 2)]
    port = WirePort(ft.status(2, 0, b"\x1e"))
    assert ph.read1ByteTxRx(port, 2, ft.Reg.PRESENT_TEMPERATURE) == (30, scs.COMM_SUCCESS, 0)
    assert port.written == [ft.read(2, ft.Reg.PRESENT_TEMPERATURE, 1)]
    for i, addr, value in ((1, ft.Reg.GOAL_POSITION, 3000), (2, ft.Reg.GOAL_POSITION, 0),
                           (4, ft.Reg.HOMING_OFFSET, ft.encode_sign_magnitude(-1470, 11))):
        port = WirePort(ft.status(i))
        assert ph.write2ByteTxRx(port, i, addr, value) == (scs.COMM_SUCCESS, 0)
        assert port.written == [ft.write(i, addr, ft.to_bytes(value, 2))]
    assert_torque_writes_match(ph, ft, scs.COMM_SUCCESS, 3)


def assert_torque_writes_match(ph, ours, success: int, servo_id: int) -> None:
    """The SDK's torque on / off WRITE to one servo and its broadcast torque-off are our packets, byte for
    byte (``ours``: our packet module of the same family, ``success``: the SDK's COMM_SUCCESS)."""
    for v in (1, 0):
        port = WirePort(ours.status(servo_id))
        assert ph.write1ByteTxRx(port, servo_id, ours.Reg.TORQUE_ENABLE, v) == (success, 0)
        assert port.written == [ours.write(servo_id, ours.Reg.TORQUE_ENABLE, bytes((v,)))]
    port = WirePort()  # broadcast WRITE: no reply awaited
    assert ph.write1ByteTxRx(port, ours.BROADCAST_ID, ours.Reg.TORQUE_ENABLE, 0)[0] == success
    assert port.written == [ours.write(ours.BROADCAST_ID, ours.Reg.TORQUE_ENABLE, b"\x00")]


def assert_torque_off_sync_write_matches(sdk, ph, ours, ids) -> None:
    """The SDK's group torque-off (SYNC WRITE of TORQUE_ENABLE = 0 to ``ids``) is our packet, byte for byte
    (``sdk``: the SDK module, ``ours``: our packet module of the same family)."""
    port = WirePort()
    group = sdk.GroupSyncWrite(port, ph, ours.Reg.TORQUE_ENABLE, 1)
    for i in ids:
        group.addParam(i, [0])
    assert group.txPacket() == sdk.COMM_SUCCESS
    assert port.written == [ours.sync_write(ours.Reg.TORQUE_ENABLE, 1, {i: b"\x00" for i in ids})]


def sdk_sync_read(sdk, ph, ours, ids, blocks: dict, start: int, length: int):
    """The SDK's GroupSyncRead of ``length`` bytes at ``start`` from ``ids``, answered with our status packets
    carrying ``blocks`` [id -> bytes]; asserts the SDK sent our SYNC_READ and returns the group."""
    port = WirePort(b"".join(ours.status(i, 0, blocks[i]) for i in ids))
    group = sdk.GroupSyncRead(port, ph, start, length)
    for i in ids:
        assert group.addParam(i)
    assert group.txRxPacket() == sdk.COMM_SUCCESS
    assert port.written == [ours.sync_read(ids, start, length)]
    return group


def test_feetech_sync_read_and_sync_write_match_sdk(scs):
    ph = scs.PacketHandler(0)
    ids = [1, 2, 3, 4, 5, 6]
    regs = {i: ft.to_bytes(1000 + 111 * i, 2) + ft.to_bytes(ft.encode_sign_magnitude(-7 * i, 15), 2) for i in ids}
    group = sdk_sync_read(scs, ph, ft, ids, regs, ft.Reg.PRESENT_POSITION, 4)  # position and speed in one block
    for i in ids:
        assert group.getData(i, ft.Reg.PRESENT_POSITION, 2) == 1000 + 111 * i
        assert scs.SCS_TOHOST(group.getData(i, ft.Reg.PRESENT_SPEED, 2), 15) == -7 * i
    goals = {1: 2048, 2: 0, 3: 4095, 4: ft.encode_sign_magnitude(-5, 15), 5: 0x00FF, 6: 0xFFFF}
    port = WirePort()
    group = scs.GroupSyncWrite(port, ph, ft.Reg.GOAL_POSITION, 2)
    for i, g in goals.items():
        assert group.addParam(i, [scs.SCS_LOBYTE(g), scs.SCS_HIBYTE(g)])
    assert group.txPacket() == scs.COMM_SUCCESS
    assert port.written == [ft.sync_write(ft.Reg.GOAL_POSITION, 2, {i: ft.to_bytes(g, 2) for i, g in goals.items()})]
    assert_torque_off_sync_write_matches(scs, ph, ft, ids)  # what the link's torque-off sends


def test_feetech_checksum_matches_sdk_on_random_packets(scs):
    ph = scs.PacketHandler(0)
    rng = random.Random(26)
    for _ in range(400):
        i, addr = rng.randrange(0, 0xFE), rng.randrange(256)
        data = rand_bytes(rng, rng.randrange(1, 40))
        port = WirePort()
        ph.writeTxOnly(port, i, addr, len(data), list(data))
        assert port.written == [ft.write(i, addr, data)]
        n = rng.randrange(1, 30)  # the other way: the SDK accepts our status packets' checksums
        reply = ft.status(i if i < 0xFE else 1, rng.choice((0, 0, 1, 32)), rand_bytes(rng, n))
        port = WirePort(reply)
        data_read, result, error = ph.readTxRx(port, reply[2], addr, n)
        assert (bytes(data_read), result, error) == (reply[5:-1], scs.COMM_SUCCESS, reply[4])
    bad = bytearray(ft.status(1, 0, b"\x00\x08"))
    bad[-1] ^= 0x01
    assert ph.read2ByteTxRx(WirePort(bytes(bad)), 1, ft.Reg.PRESENT_POSITION)[1] == scs.COMM_RX_CORRUPT


def test_feetech_sign_magnitude_and_scs_byte_order_match_sdk(scs):
    for v in (0, 1, -1, 300, -300, 2047, -2047, 32767, -32767):
        assert ft.encode_sign_magnitude(v, 15) == scs.SCS_TOSCS(v, 15)
        assert ft.decode_sign_magnitude(scs.SCS_TOSCS(v, 15), 15) == scs.SCS_TOHOST(scs.SCS_TOSCS(v, 15), 15) == v
    for v in (0, -1470, 1407, 2047, -2047):  # the homing offset: sign in bit 11
        assert ft.encode_sign_magnitude(v, 11) == scs.SCS_TOSCS(v, 11)
    ph = scs.PacketHandler(1)  # SCS series (SCS0009): big-endian words
    port = WirePort(ft.status(1))
    assert ph.write2ByteTxRx(port, 1, ft.Reg.GOAL_POSITION, 0x0123) == (scs.COMM_SUCCESS, 0)
    assert port.written == [ft.write(1, ft.Reg.GOAL_POSITION, ft.to_bytes(0x0123, 2, big_endian=True))]
    port = WirePort(ft.status(1) + ft.status(1, 0, ft.to_bytes(ft.MODELS["scs0009"], 2, big_endian=True)))
    assert ph.ping(port, 1) == (1284, scs.COMM_SUCCESS, 0)


# ---------------------------------------------------------------------------------------------- Dynamixel
def test_dynamixel_ping_matches_sdk(dx):
    ph = dx.PacketHandler(2.0)
    for i, model in ((1, "xl430-w250"), (0, "xm430-w350"), (0xFC, "xl330-m288")):
        port = WirePort(dxl.status(i, 0, dxl.to_bytes(dxl.MODELS[model], 2) + b"\x2d"))
        assert ph.ping(port, i) == (dxl.MODELS[model], dx.COMM_SUCCESS, 0)
        assert port.written == [dxl.ping(i)]
    port = WirePort()
    assert ph.ping(port, 7)[1] == dx.COMM_RX_TIMEOUT and port.written == [dxl.ping(7)]


def test_dynamixel_read_write_match_sdk(dx):
    ph = dx.PacketHandler(2.0)
    for i, value in ((1, 2048), (2, -1), (3, -4096 * 3 + 5), (4, 1_000_000)):
        raw = dxl.to_bytes(value, 4, signed=True)
        port = WirePort(dxl.status(i, 0, raw))
        assert ph.read4ByteTxRx(port, i, dxl.Reg.PRESENT_POSITION) == (dxl.from_bytes(raw), dx.COMM_SUCCESS, 0)
        assert port.written == [dxl.read(i, dxl.Reg.PRESENT_POSITION, 4)]
        port = WirePort(dxl.status(i))
        assert ph.write4ByteTxRx(port, i, dxl.Reg.GOAL_POSITION, dxl.from_bytes(raw)) == (dx.COMM_SUCCESS, 0)
        assert port.written == [dxl.write(i, dxl.Reg.GOAL_POSITION, raw)]
    port = WirePort(dxl.status(5, 0, dxl.to_bytes(1060, 2)))
    assert ph.read2ByteTxRx(port, 5, dxl.Reg.MODEL_NUMBER) == (1060, dx.COMM_SUCCESS, 0)
    assert port.written == [dxl.read(5, dxl.Reg.MODEL_NUMBER, 2)]
    port = WirePort(dxl.status(5, 0, b"\x20"))
    assert ph.read1ByteTxRx(port, 5, dxl.Reg.HARDWARE_ERROR_STATUS) == (32, dx.COMM_SUCCESS, 0)
    assert port.written == [dxl.read(5, dxl.Reg.HARDWARE_ERROR_STATUS, 1)]
    assert_torque_writes_match(ph, dxl, dx.COMM_SUCCESS, 6)


def test_dynamixel_sync_read_and_sync_write_match_sdk(dx):
    ph = dx.PacketHandler(2.0)
    ids = [1, 2, 3, 4, 5, 6]
    regs = {i: dxl.to_bytes(-40 * i, 4, signed=True) + dxl.to_bytes(1500 + 100 * i, 4, signed=True) for i in ids}
    group = sdk_sync_read(dx, ph, dxl, ids, regs, dxl.Reg.PRESENT_VELOCITY, 8)  # velocity and position in one block
    for i in ids:
        assert group.getData(i, dxl.Reg.PRESENT_POSITION, 4) == 1500 + 100 * i
        assert group.getData(i, dxl.Reg.PRESENT_VELOCITY, 4) == dxl.from_bytes(dxl.to_bytes(-40 * i, 4, signed=True))
    goals = {1: 2048, 2: 0, 3: 4095, 4: -5, 5: 150, 6: 1_048_575}
    port = WirePort()
    group = dx.GroupSyncWrite(port, ph, dxl.Reg.GOAL_POSITION, 4)
    for i, g in goals.items():
        assert group.addParam(i, list(dxl.to_bytes(g, 4, signed=True)))
    assert group.txPacket() == dx.COMM_SUCCESS
    assert port.written == [dxl.sync_write(dxl.Reg.GOAL_POSITION, 4,
                                           {i: dxl.to_bytes(g, 4, signed=True) for i, g in goals.items()})]
    assert_torque_off_sync_write_matches(dx, ph, dxl, ids)


def test_dynamixel_crc_matches_sdk_on_random_packets(dx):
    ph = dx.PacketHandler(2.0)
    rng = random.Random(26)
    for _ in range(300):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        assert dxl.crc16(blob) == ph.updateCRC(0, list(blob), len(blob))
    n_packets = 0
    while n_packets < 300:
        i, addr = rng.randrange(0, 0xFD), rng.randrange(0, 700)
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        if b"\xff\xff\xfd" in dxl.stuff(bytes((dxl.Inst.WRITE,)) + addr.to_bytes(2, "little") + data):
            continue  # stuffing needed: see the byte stuffing test (the SDK's txPacket does not stuff)
        port = WirePort()
        ph.writeTxOnly(port, i, addr, len(data), list(data))
        assert port.written == [dxl.write(i, addr, data)]
        n_packets += 1
        reply = dxl.status(i, rng.choice((0, 0, 0x80, 4)), data)  # the SDK accepts our statuses' CRCs
        data_read, result, error = ph.readTxRx(WirePort(reply), i, addr, len(data))
        assert (bytes(data_read), result, error) == (data, dx.COMM_SUCCESS, reply[8])
    bad = bytearray(dxl.status(1, 0, b"\x00\x08\x00\x00"))
    bad[-2] ^= 0x01
    assert ph.read4ByteTxRx(WirePort(bytes(bad)), 1, dxl.Reg.PRESENT_POSITION)[1] == dx.COMM_RX_CORRUPT


def sdk_packet(ph, servo_id: int, instruction: int, params: bytes) -> bytes:
    """A whole instruction packet the way the SDK's txPacket assembles it (header, LEN, ``addStuffing``,
    CRC via ``updateCRC``), keeping the list addStuffing returns: txPacket drops it (see the test)."""
    length = len(params) + 3
    pkt = [0xFF, 0xFF, 0xFD, 0x00, servo_id, length & 0xFF, length >> 8, instruction, *params, 0, 0]
    pkt = ph.addStuffing(pkt)
    total = (pkt[5] | pkt[6] << 8) + 7
    pkt = pkt[:total]
    crc = ph.updateCRC(0, pkt, total - 2)
    pkt[-2:] = [crc & 0xFF, crc >> 8]
    return bytes(pkt)


def test_dynamixel_byte_stuffing_matches_sdk(dx):
    ph = dx.PacketHandler(2.0)
    rng = random.Random(26)
    cases = [b"\xff\xff\xfd\x00", b"\x00\xff\xff\xfd", b"\xff\xff\xfd\xff\xff\xfd", b"\xff\xff\xff\xfd\xfd"]
    cases += [rand_bytes(rng, rng.randrange(0, 16)) for _ in range(2000)]
    stuffed = 0
    for data in cases:
        params = b"\x74\x00" + data
        ours = dxl.encode(1, dxl.Inst.WRITE, params)
        assert ours == sdk_packet(ph, 1, dxl.Inst.WRITE, params), data.hex(" ")
        assert dxl.decode(ours).params == params
        stuffed += len(ours) != len(params) + 10
    assert stuffed > 100  # the random cases did exercise the stuffing
    # the SDK unstuffs a status packet of ours: Present Position 0x00FDFFFF is FF FF FD 00 on the wire
    reply = dxl.status(1, 0, dxl.to_bytes(0x00FDFFFF, 4))
    assert b"\xff\xff\xfd\xfd\x00" in reply
    assert dx.PacketHandler(2.0).read4ByteTxRx(WirePort(reply), 1, dxl.Reg.PRESENT_POSITION) == (
        0x00FDFFFF, dx.COMM_SUCCESS, 0)


# ---------------------------------------------------------------------------------------------- SDK clients
@pytest.mark.parametrize("family", ["feetech", "dynamixel"])
def test_virtual_bus_broadcast_write_and_ping(family):
    """What the SDK clients found (no SDK needed here): a broadcast WRITE is executed by every servo with no
    reply, and a Dynamixel broadcast PING is answered by every servo in ID order (a Feetech one by none)."""
    import serial

    mod = ft if family == "feetech" else dxl
    with ServoBusSim(family, [3, 1, 2]) as sim:
        ser = serial.serial_for_url(sim.port, baudrate=1_000_000, timeout=0.05)
        try:
            ser.write(mod.write(mod.BROADCAST_ID, mod.Reg.TORQUE_ENABLE, b"\x01"))
            poll(lambda: all(sim.torque().values()), what="torque on for every servo")
            ser.write(mod.ping(mod.BROADCAST_ID))
            want = 3 if family == "dynamixel" else 0
            dec, got = mod.PacketDecoder(), []
            ser.write(mod.ping(1))  # a unicast PING after it: its reply comes last
            poll(lambda: got.extend(dec.feed(ser.read(64))) or (got and got[-1].id == 1 and len(got) > want),
                 what="the PING replies")
            assert [p.id for p in got] == [1, 2, 3, 1][-(want + 1):]
            if family == "dynamixel":
                assert all(dxl.from_bytes(p.params[:2]) == dxl.MODELS["xl430-w250"] and p.error == 0 for p in got)
            assert sim.counters["write"] == 1 and sim.counters["replies"] == want + 1  # the WRITE: no reply
            assert sim.write_log[-1] == (f"write@{int(mod.Reg.TORQUE_ENABLE)}", {3: 1, 1: 1, 2: 1})
        finally:
            ser.close()


def patient_port(base):
    """The SDK's own PortHandler with a longer reply timeout: its default (about 34 ms) is a real bus's,
    and this machine's load can delay the virtual bus's thread past it. ``floor_ms = 0``: the SDK's own."""

    class PatientPort(base):
        floor_ms = 3000.0

        def setPacketTimeout(self, packet_length):  # noqa: N802
            super().setPacketTimeout(packet_length)
            self.packet_timeout = max(self.packet_timeout, self.floor_ms)

    return PatientPort


CLIENTS = {  # family, model, sdk end flag
    "sts3215": ("feetech", "sts3215", 0),
    "scs0009": ("feetech", "scs0009", 1),
    "xl430-w250": ("dynamixel", "xl430-w250", None),
}


@pytest.mark.parametrize("model", list(CLIENTS))
def test_sdk_client_on_the_virtual_bus(model, request):
    family, model, end = CLIENTS[model]
    if family == "feetech":
        sdk = request.getfixturevalue("scs")
        ph = sdk.PacketHandler(end)
        mod, pos_len, fault = ft, 2, ft.ErrorBit.OVERLOAD
    else:
        sdk = request.getfixturevalue("dx")
        ph = sdk.PacketHandler(2.0)
        mod, pos_len, fault = dxl, 4, dxl.HardwareError.OVERLOAD
    read_pos = ph.read2ByteTxRx if pos_len == 2 else ph.read4ByteTxRx
    write_pos = ph.write2ByteTxRx if pos_len == 2 else ph.write4ByteTxRx
    res = mod.RESOLUTION[model]
    ids = [1, 2, 3]
    start = [res // 4, res // 2, 3 * res // 4]
    goals = {1: res // 4 + res // 10, 2: res // 2 - res // 10, 3: 3 * res // 4 + res // 20}
    P, T, G = int(mod.Reg.PRESENT_POSITION), int(mod.Reg.TORQUE_ENABLE), int(mod.Reg.GOAL_POSITION)

    def word(v):  # group write data as the SDK's users build it (Feetech: in the SDK's byte order)
        if family == "feetech":
            return [sdk.SCS_LOBYTE(v), sdk.SCS_HIBYTE(v)]
        return [sdk.DXL_LOBYTE(sdk.DXL_LOWORD(v)), sdk.DXL_HIBYTE(sdk.DXL_LOWORD(v)),
                sdk.DXL_LOBYTE(sdk.DXL_HIWORD(v)), sdk.DXL_HIBYTE(sdk.DXL_HIWORD(v))]

    with ServoBusSim(family, ids, model, positions=[float(p) for p in start]) as sim:
        port = patient_port(sdk.PortHandler)(sim.port)
        assert port.openPort() and port.setBaudRate(1_000_000)
        try:
            for i in ids:
                assert ph.ping(port, i) == (mod.MODELS[model], sdk.COMM_SUCCESS, 0)
            port.floor_ms = 0.0  # nobody answers for ID 9: the SDK's own timeout
            assert ph.ping(port, 9)[1] == sdk.COMM_RX_TIMEOUT
            port.floor_ms = 3000.0
            for i, p in zip(ids, start, strict=True):
                assert read_pos(port, i, P) == (p, sdk.COMM_SUCCESS, 0)
            # one servo: torque on, a goal, and its position moves there
            assert ph.write1ByteTxRx(port, 1, T, 1) == (sdk.COMM_SUCCESS, 0)
            assert sim.torque() == {1: True, 2: False, 3: False}
            assert write_pos(port, 1, G, goals[1]) == (sdk.COMM_SUCCESS, 0)
            seen = []

            def arrived():
                v, result, error = read_pos(port, 1, P)
                assert (result, error) == (sdk.COMM_SUCCESS, 0)
                seen.append(v)
                return abs(v - goals[1]) <= 1

            poll(arrived, what="servo 1 at its goal")
            assert seen == sorted(seen) and start[0] <= seen[0] and len(set(seen)) >= 2  # on its way there
            # all of them: group sync writes of torque and goals, group sync reads until they arrive
            group = sdk.GroupSyncWrite(port, ph, T, 1)
            for i in ids:
                group.addParam(i, [1])
            assert group.txPacket() == sdk.COMM_SUCCESS
            group = sdk.GroupSyncWrite(port, ph, G, pos_len)
            for i in ids:
                group.addParam(i, word(goals[i]))
            assert group.txPacket() == sdk.COMM_SUCCESS
            reader = sdk.GroupSyncRead(port, ph, P, pos_len)
            for i in ids:
                assert reader.addParam(i)

            def all_arrived():
                assert reader.txRxPacket() == sdk.COMM_SUCCESS
                now = {i: reader.getData(i, P, pos_len) for i in ids}  # (in the SDK's byte order)
                return all(abs(now[i] - goals[i]) <= 1 for i in ids)

            poll(all_arrived, what="every servo at its goal")
            assert sim.torque() == {1: True, 2: True, 3: True}
            assert sim.goals() == pytest.approx({i: float(g) for i, g in goals.items()})
            # a fault: the error byte says so for that reply only
            sim.set_error(2, fault, n=1)
            v, result, error = read_pos(port, 2, P)
            assert result == sdk.COMM_SUCCESS and abs(v - goals[2]) <= 1
            if family == "feetech":
                assert error == fault and "Overload" in ph.getRxPacketError(error)
            else:
                assert error == dxl.ALERT and "Hardware error" in ph.getRxPacketError(error)
                sim.set_error(2, fault, n=1)
                assert ph.read1ByteTxRx(port, 2, dxl.Reg.HARDWARE_ERROR_STATUS) == (int(fault), sdk.COMM_SUCCESS,
                                                                                     dxl.ALERT)
            assert read_pos(port, 2, P)[1:] == (sdk.COMM_SUCCESS, 0)
            sim.corrupt_replies(3, 1)  # the SDK checks our checksum / CRC
            assert read_pos(port, 3, P)[1] == sdk.COMM_RX_CORRUPT
            assert read_pos(port, 3, P)[1:] == (sdk.COMM_SUCCESS, 0)
            if family == "dynamixel":  # Protocol 2.0 broadcast PING: every servo answers
                found, result = ph.broadcastPing(port)
                assert result == sdk.COMM_SUCCESS
                assert found == {i: [mod.MODELS[model], 45] for i in ids}
            # torque off for everyone with one broadcast WRITE (no reply): every servo executes it
            assert ph.write1ByteTxRx(port, mod.BROADCAST_ID, T, 0)[0] == sdk.COMM_SUCCESS
            poll(lambda: not any(sim.torque().values()), what="torque off on every servo")
            assert all(ph.read1ByteTxRx(port, i, T) == (0, sdk.COMM_SUCCESS, 0) for i in ids)
            assert sim.counters["replies_corrupted"] == 1
        finally:
            port.closePort()


# ---------------------------------------------------------------------------------------------- stop signals
def _poll_summary(path, pred, proc, timeout_s=120.0):
    """The periodic summary once it satisfies ``pred`` (each look is a read; fails if the run ended)."""
    t_end = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"kdp-edge run ended early: {proc.communicate()}")
        if path.exists():
            try:
                d = json.loads(path.read_text())
            except ValueError:
                d = None
            if d is not None and pred(d):
                return d
        assert time.monotonic() < t_end, f"{path} never satisfied the condition within {timeout_s} s"
        time.sleep(0.05)


@pytest.mark.parametrize("family,sig,code", [("feetech", "SIGINT", 130), ("dynamixel", "SIGINT", 130),
                                             ("feetech", "SIGTERM", 143)])
def test_run_on_the_virtual_bus_stops_with_torque_off(family, sig, code, tiny_bundle, tmp_path, cli_env):
    """The virtual bus lives in this process (its torque state is visible here; one started inside
    `kdp-edge run` by a sim-servo:// port shows only in the summary) and `kdp-edge run` opens its pty."""
    summary = tmp_path / "summary.json"
    torque = int(ft.Reg.TORQUE_ENABLE if family == "feetech" else dxl.Reg.TORQUE_ENABLE)
    with ServoBusSim(family, [1, 2], positions=[1800.0, 2300.0]) as sim:
        proc = subprocess.Popen(
            kdp_cmd("run", str(tiny_bundle), "--port", sim.port, "--bus", family, "--motors", "1,2", "--goal", "1,1",
                    "--rate", "50", "--duration", "600", "--on-stop", "torque-off", "--summary", str(summary),
                    "--summary-every", "0.2"),
            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **SIGINT_DEFAULT)
        try:
            running = _poll_summary(summary, lambda d: d["counts"]["cycles"] >= 10, proc)
            assert running["link"]["bus_torque_on"] == 1 and running["link"]["bus_sync_reads"] >= 10
            assert sim.torque() == {1: True, 2: True}  # the run switched torque on
            proc.send_signal(getattr(signal, sig))
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == code, err
        assert f"stopped by {sig}" in out
        poll(lambda: not any(sim.torque().values()), what="torque off on the virtual bus")
        assert sim.write_log[-1] == (f"sync_write@{torque}", {1: 0, 2: 0})  # the last thing the run wrote
    s = json.loads(summary.read_text())
    assert s["final"] is True and s["stopped_by"] == sig
    assert s["link"]["bus_torque_off"] == 1 and s["link"]["bus_stops"] == 1 and "bus_holds" not in s["link"]
    assert s["counts"]["cycles"] >= running["counts"]["cycles"]
