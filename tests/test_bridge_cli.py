"""The bridge's click commands (registered on kdp-edge by the lead)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import click
from click.testing import CliRunner
from conftest import SIGINT_DEFAULT

from firmware_bridge.link import SerialLink
from firmware_bridge.plants import IntegratorPlant
from firmware_bridge.virtual_robot import start_virtual_robot
from kdp_edge.app.bridge_commands import cli, register


def test_register_adds_commands():
    group = click.Group()
    register(group)
    assert {"virtual-controller", "serial-probe"} <= set(group.commands)


def test_serial_probe_against_virtual_robot():
    with start_virtual_robot(IntegratorPlant(axes=3), rate_hz=100) as robot:
        res = CliRunner().invoke(cli, ["serial-probe", "--port", robot.port, "--states", "3", "--json"])
        assert res.exit_code == 0, res.output
        report = json.loads(res.output)
        assert report["caps"]["state_dim"] == 6 and report["caps"]["action_dim"] == 3
        assert len(report["states"]) == 3 and report["rtt_ms"] is not None
        res = CliRunner().invoke(cli, ["serial-probe", "--port", robot.port, "--states", "1"])
        assert res.exit_code == 0 and "state_dim" in res.output and "STATE seq=" in res.output


def test_serial_probe_clear_error_for_missing_port():
    res = CliRunner().invoke(cli, ["serial-probe", "--port", "/dev/ttyNOPE9"])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "not found" in res.output and "fix:" in res.output
    assert "Traceback" not in res.output


def test_virtual_controller_command_serves_a_host():
    # no --duration: it serves until the signal, so the SIGINT lands wherever the process happens to be
    # (start-up done, serving, or mid-shutdown would all be clean); nothing here waits on the clock
    proc = subprocess.Popen([sys.executable, "-m", "kdp_edge.app.bridge_commands", "virtual-controller", "--rate", "100",
                             "--axes", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **SIGINT_DEFAULT)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("PTY /"), line
        with SerialLink(line.split(" ", 1)[1]) as link:
            caps = link.hello(30.0)
            assert (caps.state_dim, caps.action_dim) == (2, 1)
            assert link.read_state(30.0) is not None
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Aborted" not in err and "Traceback" not in err
    stats = json.loads(next(ln for ln in err.splitlines() if ln.startswith("stats "))[len("stats "):])
    assert stats["hellos"] >= 1 and stats["tx_frames"] > 0


def test_virtual_controller_sigint_right_at_start_is_clean():
    """SIGINT as soon as the pty is announced (before the 'Ctrl-C to stop' line and the serving wait)."""
    proc = subprocess.Popen([sys.executable, "-m", "kdp_edge.app.bridge_commands", "virtual-controller", "--axes", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **SIGINT_DEFAULT)
    assert proc.stdout.readline().startswith("PTY /")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Aborted" not in err and "Traceback" not in err and "stats " in err
