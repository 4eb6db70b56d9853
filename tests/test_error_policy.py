"""One error policy for every `kdp-edge` command (issue #23 item 6): bad input prints `error: ...` with the
fix on stderr and exits 2, never a traceback; Ctrl-C anywhere exits 130 without click's "Aborted!"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import SIGINT_DEFAULT, kdp_cmd

from kdp_edge.cli import cli, main


@pytest.fixture(scope="module")
def runner():
    from kdp_edge.app.bridge_commands import register

    register(cli)  # what kdp_edge.cli.main does: the bridge, run and calibrate commands
    return CliRunner()


BAD = {
    "unknown command": ["nosuchcommand"],
    "usage: missing option": ["run", "some-bundle"],
    "usage: bad choice": ["bench", "some-bundle", "--backend", "banana"],
    "usage: out of range": ["data", "pointmaze", "--steps", "0", "--out", "x.hdf5"],
    "data: unwritable output": ["data", "pusht-synthetic", "--out", "/proc/nope/x.npz"],
    "train: missing dataset": ["train", "--data", "{tmp}/nope.hdf5", "--out", "{tmp}/run"],
    "eval: missing run": ["eval", "{tmp}/nope"],
    "export: missing run": ["export", "{tmp}/nope", "--out", "{tmp}/bundle"],
    "bench: missing bundle": ["bench", "{tmp}/nope"],
    "run: missing bundle": ["run", "{tmp}/nope", "--port", "sim://pointmaze-umaze"],
    "serial-probe: missing port": ["serial-probe", "--port", "/dev/ttyNOPE9"],
    "virtual-controller: bad combination": ["virtual-controller", "--impl", "c", "--plant", "pointmaze-umaze"],
    "calibrate io: no source": ["calibrate", "io", "--out", "{tmp}/robot.json"],
    "calibrate latency: missing port": ["calibrate", "latency", "--port", "/dev/ttyNOPE9", "--bundle", "{tmp}/b",
                                        "--out", "{tmp}/t.json"],
    "demo: not a demo folder": ["demo", "--fresh", "--out", "{tmp}/notdemo"],
}


@pytest.mark.parametrize("case", list(BAD))
def test_every_command_reports_bad_input_the_same_way(case, runner, tmp_path):
    (tmp_path / "notdemo").mkdir()
    (tmp_path / "notdemo" / "keep.txt").write_text("not a demo")
    args = [a.replace("{tmp}", str(tmp_path)) for a in BAD[case]]
    res = runner.invoke(cli, args, prog_name="kdp-edge")
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert res.exit_code == 2, f"{case}: exit {res.exit_code}\n{res.output}"
    assert err.startswith("error: "), f"{case}: {err!r}"
    assert "Traceback" not in res.output and "Aborted" not in res.output and "Error:" not in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    if case.startswith(("usage", "unknown", "serial-probe")):
        assert "fix:" in err, err  # usage errors point at --help; link errors name the remedy


def test_main_is_the_policy_entry_point(tmp_path):
    """`kdp-edge` (kdp_edge.cli:main) itself, in a subprocess: the same exit code and text."""
    r = subprocess.run(kdp_cmd("serial-probe", "--port", str(tmp_path / "ttyNOPE")), capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "fix:" in r.stderr, r.stderr
    assert main is not None


def test_ctrl_c_while_waiting_for_a_controller_exits_130_cleanly():
    """SIGINT lands in a command without its own handler (serial-probe waiting for HELLO): exit 130,
    no 'Aborted!', no traceback. The test waits for the probe's first bytes on the pty, not for time."""
    import pty
    import select

    master, slave = pty.openpty()
    path = os.ttyname(slave)
    proc = subprocess.Popen([sys.executable, "-m", "kdp_edge.cli", "serial-probe", "--port", path, "--timeout",
                             "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **SIGINT_DEFAULT)
    try:
        ready, _, _ = select.select([master], [], [], 120)  # the probe writes HELLO_REQ: it is now waiting
        assert ready, "the probe never wrote to the port"
        os.read(master, 4096)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        os.close(master)
        os.close(slave)
    assert proc.returncode == 130, err
    assert "Aborted" not in err and "Traceback" not in err and "interrupted" in err
