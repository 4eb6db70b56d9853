"""Third-party noise during export goes to a log file, our own lines and warnings stay on the terminal
(issue #23 item 5; export.quiet)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import ROOT

SNIPPET = textwrap.dedent("""
    import os, sys, warnings
    from pathlib import Path
    from export.quiet import third_party_output_to

    log_path = Path(sys.argv[1])
    with third_party_output_to(log_path, lambda m: print(m, file=sys.stderr), verbose=sys.argv[2] == "1") as log:
        os.write(2, b"W0000 absl: All log messages before absl::InitializeLog()\\n")  # C++ writing to fd 2
        os.write(1, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
        print("Failed to load torchao/_C_mxfp8.so", file=sys.stderr)
        warnings.warn_explicit("isinstance(treespec, LeafSpec) is deprecated", FutureWarning,
                               "/venv/site-packages/torch/utils/_pytree.py", 1)
        warnings.warn_explicit("our own warning", UserWarning, str(Path("kdp_edge/fileio.py").resolve()), 1)
        log("export: ONNX fp32 ...")
    print("after: back on the terminal", file=sys.stderr)
""")


def _run(tmp_path, verbose: bool):
    log = tmp_path / "export.log"
    r = subprocess.run([sys.executable, "-c", SNIPPET, str(log), "1" if verbose else "0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r, log


def test_third_party_output_goes_to_the_log_file(tmp_path):
    r, log = _run(tmp_path, verbose=False)
    shown = r.stdout + r.stderr
    for noise in ("absl", "XNNPACK", "torchao", "LeafSpec"):
        assert noise not in shown, shown
        assert noise in log.read_text()
    assert "export: ONNX fp32 ..." in r.stderr and "our own warning" in r.stderr  # ours stay visible
    assert "after: back on the terminal" in r.stderr  # descriptors restored
    assert "[kdp-edge] export: ONNX fp32 ..." in log.read_text()  # our lines give the log its context


def test_verbose_shows_everything(tmp_path):
    r, log = _run(tmp_path, verbose=True)
    shown = r.stdout + r.stderr
    assert all(x in shown for x in ("absl", "XNNPACK", "torchao", "LeafSpec", "export: ONNX fp32 ..."))
    assert not log.exists()
